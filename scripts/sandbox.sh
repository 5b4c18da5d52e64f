#!/usr/bin/env bash
# A throwaway PostgreSQL 18 + pg_background 2.0 server for pgbg's demo and tests.
#
# The server comes from Debian sid packages installed with debootstrap into a root
# kept in a cache folder outside the work tree (PGBG_SANDBOX_CACHE, default
# ~/.cache/pgbg-sandbox), so only the first run downloads anything. The server runs
# chrooted, listens on 127.0.0.1 on a free port and is reached over TCP.
#
#   scripts/sandbox.sh build     make the root (idempotent, ~1 min the first time)
#   scripts/sandbox.sh start     build if needed, initdb once, start, create roles/db
#   scripts/sandbox.sh stop      stop the server (fast shutdown)
#   scripts/sandbox.sh restart   stop then start
#   scripts/sandbox.sh status    say whether it runs, and where
#   scripts/sandbox.sh dsn [ROLE]  print a conninfo URI (ROLE: admin | app | plain)
#   scripts/sandbox.sh env       print PG* export lines for the superuser
#   scripts/sandbox.sh destroy   stop and delete the cluster (the root is kept)
#
# PGBG_SANDBOX_INSTANCE (default "main") names a cluster: tests that crash or restart a
# server use their own instance so they never disturb the others.
# Needs root (debootstrap and chroot). Never writes a registry host into the repo:
# the Debian mirror is read from this machine's own apt sources.
set -euo pipefail

CACHE=${PGBG_SANDBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgbg-sandbox}
ROOT=$CACHE/sid-root
PGBIN=/usr/lib/postgresql/18/bin
INSTANCE=${PGBG_SANDBOX_INSTANCE:-main}
case "$INSTANCE" in *[!a-z0-9_-]*|"") echo "sandbox: bad instance name '$INSTANCE'" >&2; exit 2 ;; esac
BASE_IN_ROOT=/var/lib/pgbg-sandbox/$INSTANCE
DATA_IN_ROOT=$BASE_IN_ROOT/data
LOG_IN_ROOT=$BASE_IN_ROOT/server.log
DATA=$ROOT$DATA_IN_ROOT
PORTFILE=$CACHE/port-$INSTANCE
DB=${PGBG_SANDBOX_DB:-pgbg}
# Sandbox-only passwords: the server is bound to 127.0.0.1 and thrown away.
ADMIN_PW=${PGBG_SANDBOX_ADMIN_PASSWORD:-sandbox-admin-secret}
APP_PW=${PGBG_SANDBOX_APP_PASSWORD:-sandbox-app-secret}
PACKAGES=postgresql-18,postgresql-18-pg-background

log() { printf 'sandbox: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot); run it with sudo"; }

mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' \
          | grep -v -- '-security' | head -n1 || true)
  fi
  [ -n "$uri" ] || die "no Debian mirror found in this machine's apt sources"
  printf '%s\n' "$uri"
}

build() {
  if [ -x "$ROOT$PGBIN/postgres" ] && [ -f "$ROOT/.pgbg-sandbox-ready" ]; then
    return 0
  fi
  need_root
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  fi
  mkdir -p "$CACHE"
  local tmp=$CACHE/sid-root.partial
  rm -rf "$tmp"
  log "building Debian sid root with $PACKAGES into $ROOT (once per machine)"
  debootstrap --variant=minbase --include="$PACKAGES" sid "$tmp" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed; full log: $CACHE/debootstrap.log"; }
  [ -x "$tmp$PGBIN/postgres" ] || die "debootstrap finished but $PGBIN/postgres is missing"
  ls "$tmp"/usr/share/postgresql/18/extension/pg_background.control >/dev/null \
    || die "pg_background is missing from the root"
  touch "$tmp/.pgbg-sandbox-ready"
  rm -rf "$ROOT"
  mv "$tmp" "$ROOT"
  log "root ready"
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

port() {
  if [ ! -s "$PORTFILE" ]; then
    mkdir -p "$CACHE"
    free_port >"$PORTFILE"
  fi
  cat "$PORTFILE"
}

in_root() { chroot --userspec=postgres:postgres "$ROOT" "$@"; }

running() { [ -f "$DATA/postmaster.pid" ] && in_root "$PGBIN/pg_ctl" -D "$DATA_IN_ROOT" status >/dev/null 2>&1; }

psql_root() {
  # psql of the sid root, as the superuser over the chroot's own unix socket.
  in_root /usr/bin/env PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h /tmp -p "$(port)" -U postgres "$@"
}

init_cluster() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  log "initdb"
  mkdir -p "$(dirname "$DATA")"
  chroot "$ROOT" /bin/sh -c "mkdir -p $BASE_IN_ROOT && chown postgres:postgres /var/lib/pgbg-sandbox $BASE_IN_ROOT"
  local pwfile_in_root=$BASE_IN_ROOT/.pw
  printf '%s\n' "$ADMIN_PW" >"$ROOT$pwfile_in_root"
  chroot "$ROOT" chown postgres:postgres "$pwfile_in_root"
  in_root "$PGBIN/initdb" -D "$DATA_IN_ROOT" -U postgres --pwfile="$pwfile_in_root" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$CACHE/initdb-$INSTANCE.log" 2>&1 \
    || { cat "$CACHE/initdb-$INSTANCE.log" >&2; die "initdb failed"; }
  rm -f "$ROOT$pwfile_in_root"
  cat >>"$DATA/postgresql.conf" <<'CONF'
# pgbg sandbox
fsync = off
synchronous_commit = off
full_page_writes = off
max_worker_processes = 24
max_parallel_workers = 4
shared_buffers = 256MB
maintenance_work_mem = 256MB
log_min_messages = warning
CONF
}

start() {
  build
  need_root
  init_cluster
  local p
  p=$(port)
  if ! running; then
    # a port taken by something else since last time: pick another
    # SO_REUSEADDR as the server uses it: a port left in TIME_WAIT by our own last run is free
    if ! python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $p))" 2>/dev/null; then
      free_port >"$PORTFILE"; p=$(port)
    fi
    log "starting PostgreSQL 18 on 127.0.0.1:$p"
    in_root "$PGBIN/pg_ctl" -D "$DATA_IN_ROOT" -l "$LOG_IN_ROOT" -w -t 60 \
      -o "-p $p -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp" start >/dev/null \
      || { tail -n 30 "$ROOT$LOG_IN_ROOT" >&2; die "server did not start; log: $ROOT$LOG_IN_ROOT"; }
  fi
  provision
  log "ready: $(dsn admin | sed -E 's#://([^:]+):[^@]*@#://\1:***@#')"
}

provision() {
  # Idempotent: database, extension, and two LOGIN roles that are not superusers.
  #   pgbg_app   member of pgbackground_role (may use pg_background)
  #   pgbg_plain no grant at all (for privilege tests)
  psql_root -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
    || psql_root -d postgres -c "CREATE DATABASE \"$DB\""
  psql_root -d "$DB" <<SQL
CREATE EXTENSION IF NOT EXISTS pg_background;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbg_app') THEN
    CREATE ROLE pgbg_app LOGIN PASSWORD '$APP_PW';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbg_plain') THEN
    CREATE ROLE pgbg_plain LOGIN PASSWORD '$APP_PW';
  END IF;
END
\$\$;
GRANT pgbackground_role TO pgbg_app;
GRANT CREATE, CONNECT ON DATABASE "$DB" TO pgbg_app;
GRANT CREATE ON SCHEMA public TO pgbg_app;
SQL
}

stop() {
  [ -d "$ROOT" ] || return 0
  if running; then
    log "stopping"
    in_root "$PGBIN/pg_ctl" -D "$DATA_IN_ROOT" -m fast -w -t 60 stop >/dev/null
  fi
}

status() {
  if running; then
    echo "running on 127.0.0.1:$(port) (data: $DATA)"
  elif [ -x "$ROOT$PGBIN/postgres" ]; then
    echo "stopped (root: $ROOT)"; return 3
  else
    echo "not built (cache: $CACHE)"; return 3
  fi
}

dsn() {
  local who=${1:-admin} user pw
  case "$who" in
    admin) user=postgres; pw=$ADMIN_PW ;;
    app) user=pgbg_app; pw=$APP_PW ;;
    plain) user=pgbg_plain; pw=$APP_PW ;;
    *) die "dsn: unknown role '$who' (admin, app or plain)" ;;
  esac
  printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' "$user" "$pw" "$(port)" "$DB"
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  dsn) dsn "${2:-admin}" ;;
  env) printf 'export PGHOST=127.0.0.1 PGPORT=%s PGDATABASE=%s PGUSER=postgres PGPASSWORD=%s\n' "$(port)" "$DB" "$ADMIN_PW" ;;
  logfile) echo "$ROOT$LOG_IN_ROOT" ;;
  destroy) stop; rm -rf "$ROOT$BASE_IN_ROOT" "$PORTFILE" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
