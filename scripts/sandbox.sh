#!/usr/bin/env bash
# Throwaway PostgreSQL + pg_background servers for pgbg's demo and tests.
#
# Each server comes from Debian packages installed with debootstrap into a root kept in a
# cache folder outside the work tree (PGBG_SANDBOX_CACHE, default ~/.cache/pgbg-sandbox), so
# only the first run downloads anything. It runs chrooted, listens on 127.0.0.1 on a free
# port and is reached over TCP.
#
#   scripts/sandbox.sh build     make the root (idempotent; 1-10 min the first time)
#   scripts/sandbox.sh start     build if needed, initdb once, start, create roles/db
#   scripts/sandbox.sh stop      stop the server (fast shutdown)
#   scripts/sandbox.sh restart   stop then start
#   scripts/sandbox.sh status    say whether it runs, and where
#   scripts/sandbox.sh dsn [ROLE]  print a conninfo URI (ROLE: admin | app | plain)
#   scripts/sandbox.sh env       print PG* export lines for the superuser
#   scripts/sandbox.sh destroy   stop and delete the cluster (the root is kept)
#   scripts/sandbox.sh servers   list the servers below
#   scripts/sandbox.sh describe  say which PostgreSQL and pg_background the server runs
#   scripts/sandbox.sh shop      start, then (re)make database shop and the README's sample
#                                tables in it (scripts/shop.sql; PGBG_SHOP_ROWS orders per status)
#   scripts/sandbox.sh messages  build if needed; exit 0 when pgbg_messages (ext/) is in the root
#
# PGBG_SANDBOX_SERVER picks the server (each has its own root, clusters and ports):
#   pg18-bg20  PostgreSQL 18 + pg_background 2.0.3, Debian sid packages, pg_cron (default)
#   pg18-bg18  PostgreSQL 18 (sid)      + pg_background 1.8 built from its source tarball
#   pg17-bg18  PostgreSQL 17 (trixie)   + pg_background 1.8 built from its source tarball
#   pg15-bg18  PostgreSQL 15 (bookworm) + pg_background 1.8 built from its source tarball
# The 1.8 source is ../shared/third_party/pg_background-1.8.tar.gz beside the repository
# (PGBG_BG18_TARBALL to point elsewhere); without it, and with no root built before, build
# and start of a 1.8 server say why in one line and exit 4 ("skipped").
# PGBG_SANDBOX_INSTANCE (default "main") names a cluster of the server: tests that crash or
# restart a server use their own instance so they never disturb the others.
# Needs root (debootstrap and chroot). Never writes a registry host into the repo:
# the Debian mirror is read from this machine's own apt sources.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PGBG_SANDBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgbg-sandbox}
SERVER=${PGBG_SANDBOX_SERVER:-pg18-bg20}
INSTANCE=${PGBG_SANDBOX_INSTANCE:-main}
case "$INSTANCE" in *[!a-z0-9_-]*|"") echo "sandbox: bad instance name '$INSTANCE'" >&2; exit 2 ;; esac
TARBALL=${PGBG_BG18_TARBALL:-$REPO/../shared/third_party/pg_background-1.8.tar.gz}
SKIPPED=4  # exit code: this server cannot be had here (the matrix reports it as skipped)
case "$SERVER" in
  pg18-bg20)
    # today's server: its root, clusters and port files keep their first paths
    SUITE=sid PGV=18 BG=2.0 ROOT=$CACHE/sid-root PORTFILE=$CACHE/port-$INSTANCE
    BUILDLOG=$CACHE/debootstrap.log
    PACKAGES=postgresql-18,postgresql-18-pg-background,postgresql-18-cron ;;
  pg18-bg18) SUITE=sid PGV=18 ;;
  pg17-bg18) SUITE=trixie PGV=17 ;;
  pg15-bg18) SUITE=bookworm PGV=15 ;;
  *) echo "sandbox: unknown server '$SERVER' (pg18-bg20, pg18-bg18, pg17-bg18 or pg15-bg18)" >&2; exit 2 ;;
esac
if [ "$SERVER" != pg18-bg20 ]; then
  BG=1.8 ROOT=$CACHE/$SERVER-root PORTFILE=$CACHE/port-$SERVER-$INSTANCE BUILDLOG=$CACHE/build-$SERVER.log
  PACKAGES=postgresql-$PGV,postgresql-server-dev-$PGV,build-essential,libkrb5-dev
fi
PGBIN=/usr/lib/postgresql/$PGV/bin
BASE_IN_ROOT=/var/lib/pgbg-sandbox/$INSTANCE
DATA_IN_ROOT=$BASE_IN_ROOT/data
LOG_IN_ROOT=$BASE_IN_ROOT/server.log
DATA=$ROOT$DATA_IN_ROOT
INITLOG=$CACHE/initdb-$INSTANCE.log
[ "$SERVER" = pg18-bg20 ] || INITLOG=$CACHE/initdb-$SERVER-$INSTANCE.log
STAMP=$ROOT/.pgbg-sandbox-ready
MSG_SRC=$REPO/ext/pgbg_messages          # pgbg's own C module, built into every root
MSG_STAMP=$ROOT/.pgbg-messages-built     # the digest of the source it was built from
DB=${PGBG_SANDBOX_DB:-pgbg}
# Sandbox-only passwords: the server is bound to 127.0.0.1 and thrown away.
ADMIN_PW=${PGBG_SANDBOX_ADMIN_PASSWORD:-sandbox-admin-secret}
APP_PW=${PGBG_SANDBOX_APP_PASSWORD:-sandbox-app-secret}

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

ready() { [ -x "$ROOT$PGBIN/postgres" ] && [ -f "$STAMP" ]; }
have_cron() { [ -f "$ROOT/usr/lib/postgresql/$PGV/lib/pg_cron.so" ]; }
tarball_sum() { sha256sum "$TARBALL" | cut -d' ' -f1; }

build_lock() {
  # one build of a root at a time (the matrix and a developer may ask at once)
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build-$SERVER.lock"
  flock 9
}

unmount_under() {
  # what a killed debootstrap left mounted (proc, sys) in a partial root, deepest first,
  # so that removing the partial root never reaches into them
  local m
  awk -v d="$1" 'index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

build() {
  if ready; then
    if [ "$BG" = 2.0 ] && ! have_cron; then need_root; build_lock; add_cron; fi
    add_messages
    if [ "$BG" = 1.8 ] && [ -f "$TARBALL" ] && [ "$(cat "$STAMP")" != "$(tarball_sum)" ]; then
      need_root; build_lock
      log "the pg_background 1.8 tarball changed: building it again into $ROOT"
      install_bg18 "$ROOT"; tarball_sum >"$STAMP"
    fi
    return 0
  fi
  if [ "$BG" = 1.8 ] && [ ! -f "$TARBALL" ]; then
    log "$SERVER skipped: no $TARBALL (the pg_background 1.8 source, in the project's shared folder beside the clone)"
    exit "$SKIPPED"
  fi
  need_root
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  fi
  build_lock
  ready && { add_messages; return 0; }  # built by another run while this one waited
  local tmp=$ROOT.partial
  unmount_under "$tmp"
  rm -rf "$tmp"
  log "building Debian $SUITE root with $PACKAGES into $ROOT (once per machine)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$(mirror)" >"$BUILDLOG" 2>&1 \
    || { unmount_under "$tmp"; tail -n 30 "$BUILDLOG" >&2; die "debootstrap failed; full log: $BUILDLOG"; }
  [ -x "$tmp$PGBIN/postgres" ] || die "debootstrap finished but $PGBIN/postgres is missing"
  if [ "$BG" = 1.8 ]; then
    install_bg18 "$tmp"
    tarball_sum >"$tmp/.pgbg-sandbox-ready"
  else
    touch "$tmp/.pgbg-sandbox-ready"
  fi
  ls "$tmp"/usr/share/postgresql/$PGV/extension/pg_background.control >/dev/null \
    || die "pg_background is missing from the root"
  rm -rf "$ROOT"
  mv "$tmp" "$ROOT"
  log "root ready"
  add_messages
}

messages_sum() { cat "$MSG_SRC/Makefile" "$MSG_SRC"/*.c | sha256sum | cut -d' ' -f1; }
messages_built() {
  [ -f "$MSG_STAMP" ] && [ "$(cat "$MSG_STAMP")" = "$(messages_sum)" ] \
    && [ -f "$ROOT/usr/lib/postgresql/$PGV/lib/pgbg_messages.so" ]
}

add_messages() {
  # ext/pgbg_messages (pgbg's C module that keeps a job's messages) built with the root's own
  # pg_config and compiler, and installed into it; again only when its source changed. A
  # root without server headers (the sid root of pg18-bg20) gets them first, if that adds
  # packages and changes none. Without the module the server runs, and pgbg says that it
  # keeps no messages there.
  [ -f "$MSG_SRC/Makefile" ] || return 0
  messages_built && return 0
  need_root; build_lock
  messages_built && return 0  # built by another run while this one waited
  local src=/usr/src/pgbg_messages mlog=$CACHE/pgbg_messages-$SERVER.log lib=/usr/lib/postgresql/$PGV/lib
  if [ ! -f "$ROOT/usr/include/postgresql/$PGV/server/postgres.h" ] || [ ! -x "$ROOT/usr/bin/make" ]; then
    local pkgs=(postgresql-server-dev-$PGV make gcc libc6-dev) opt=(-o Acquire::Check-Valid-Until=false -q) plan
    log "adding ${pkgs[*]} to $ROOT (to build pgbg_messages)"
    [ -s "$ROOT/etc/apt/sources.list" ] || printf 'deb %s %s main\n' "$(mirror)" "$SUITE" >"$ROOT/etc/apt/sources.list"
    if ! chroot "$ROOT" apt-get "${opt[@]}" update >"$mlog" 2>&1; then
      log "pgbg_messages not built (apt-get update failed, log: $mlog): this server keeps no job messages"; return 0
    fi
    plan=$(chroot "$ROOT" apt-get "${opt[@]}" -s install --no-install-recommends "${pkgs[@]}" 2>>"$mlog" | grep -E '^(Inst|Remv) ' || true)
    if printf '%s\n' "$plan" | grep -qE '^Remv |^Inst [^ ]+ \['; then
      printf '%s\n' "$plan" >>"$mlog"
      log "pgbg_messages not built: its build tools would change packages of the root (log: $mlog)"; return 0
    fi
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get "${opt[@]}" install -y --no-install-recommends "${pkgs[@]}" >>"$mlog" 2>&1 \
      || { log "pgbg_messages not built (apt-get install failed, log: $mlog): this server keeps no job messages"; return 0; }
    chroot "$ROOT" apt-get clean >/dev/null 2>&1 || true
  fi
  rm -rf "${ROOT:?}$src"
  mkdir -p "$ROOT$src"
  cp "$MSG_SRC/Makefile" "$MSG_SRC"/*.c "$ROOT$src/"
  log "building pgbg_messages against PostgreSQL $PGV"
  # installed beside, then renamed: servers of the root may have the old library loaded
  if chroot "$ROOT" /bin/sh -c "cd $src && make with_llvm=no PG_CONFIG=$PGBIN/pg_config && install -m 755 pgbg_messages.so $lib/pgbg_messages.so.new && mv -f $lib/pgbg_messages.so.new $lib/pgbg_messages.so" >>"$mlog" 2>&1; then
    messages_sum >"$MSG_STAMP"
  else
    tail -n 20 "$mlog" >&2
    log "pgbg_messages did not build (log: $mlog): this server keeps no job messages"
  fi
  rm -rf "${ROOT:?}$src"
}

install_bg18() {
  # Build pg_background 1.8 from the tarball inside root $1 with that root's own PostgreSQL
  # and compiler. The source is unpacked there and removed after the install.
  local dir=$1 src=/usr/src/pg_background-1.8
  rm -rf "${dir:?}$src"
  mkdir -p "$dir$src"
  tar -xzf "$TARBALL" -C "$dir$src" --strip-components=1
  log "building pg_background 1.8 against PostgreSQL $PGV"
  chroot "$dir" /bin/sh -c "cd $src && make PG_CONFIG=$PGBIN/pg_config install" >>"$BUILDLOG" 2>&1 \
    || { tail -n 30 "$BUILDLOG" >&2; die "pg_background 1.8 did not build; full log: $BUILDLOG"; }
  rm -rf "${dir:?}$src"
}

add_cron() {
  # pg_cron into the existing sid root, without rebuilding it (servers may be running from it):
  # one package, and only when nothing already installed would change.
  have_cron && return 0
  local pkg=postgresql-$PGV-cron opt=(-o Acquire::Check-Valid-Until=false -q) plan
  local clog=$CACHE/pg_cron-install.log
  log "adding $pkg to $ROOT"
  [ -s "$ROOT/etc/apt/sources.list" ] || printf 'deb %s %s main\n' "$(mirror)" "$SUITE" >"$ROOT/etc/apt/sources.list"
  if ! chroot "$ROOT" apt-get "${opt[@]}" update >"$clog" 2>&1; then
    log "could not add pg_cron (apt-get update failed, log: $clog); the server runs without it"; return 0
  fi
  plan=$(chroot "$ROOT" apt-get "${opt[@]}" -s install --no-install-recommends "$pkg" 2>>"$clog" | grep -E '^(Inst|Remv) ' || true)
  if [ -z "$plan" ] || printf '%s\n' "$plan" | grep -qvE "^Inst $pkg "; then
    printf '%s\n' "$plan" >>"$clog"
    log "could not add pg_cron without changing other packages of the root (log: $clog); the server runs without it"
    return 0
  fi
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get "${opt[@]}" install -y --no-install-recommends "$pkg" >>"$clog" 2>&1 \
    || { log "could not add pg_cron (log: $clog); the server runs without it"; return 0; }
  chroot "$ROOT" apt-get clean >/dev/null 2>&1 || true
}

bg_version() {
  if [ "$BG" = 2.0 ]; then
    dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Version}' "postgresql-$PGV-pg-background" 2>/dev/null | sed 's/-[^-]*$//'
  else
    sed -nE "s/^default_version *= *'([^']*)'.*/\1/p" "$ROOT/usr/share/postgresql/$PGV/extension/pg_background.control" 2>/dev/null
  fi
}

versions() { echo "PostgreSQL $PGV + pg_background $(bg_version)"; }
describe() { echo "$(versions) ($SERVER, instance $INSTANCE)"; }

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

# A server whose processes were killed without a shutdown (kill -9, a machine whose processes
# are all killed) leaves its postmaster.pid, and the socket's lock file, behind. The pid in
# them may since belong to another process, even a backend of another sandbox server that
# runs as the same uid: pg_ctl status then says "running", and the server itself refuses to
# start. So a pid counts only when that process is a postmaster: it works in a data
# directory whose postmaster.pid names it.
postmaster_at() {  # PID [DATA_DIR]: PID is a live postmaster (of DATA_DIR when given)
  local pid=$1 dir
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  dir=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  [ -z "${2:-}" ] || [ "$dir" = "$(cd "$2" 2>/dev/null && pwd -P)" ] || return 1
  [ "$(head -n1 "$dir/postmaster.pid" 2>/dev/null)" = "$pid" ]
}

running() {
  [ -f "$DATA/postmaster.pid" ] && postmaster_at "$(head -n1 "$DATA/postmaster.pid")" "$DATA" \
    && in_root "$PGBIN/pg_ctl" -D "$DATA_IN_ROOT" status >/dev/null 2>&1
}

clear_stale_locks() {  # PORT: lock files of a server that is not running (see postmaster_at)
  local lock=$ROOT/tmp/.s.PGSQL.$1.lock
  if [ -f "$DATA/postmaster.pid" ] && ! postmaster_at "$(head -n1 "$DATA/postmaster.pid")" "$DATA"; then
    log "removing the postmaster.pid of a server that no longer runs (pid $(head -n1 "$DATA/postmaster.pid"))"
    rm -f "$DATA/postmaster.pid"
  fi
  # the socket's lock names the postmaster and, on its second line, its data directory
  if [ -f "$lock" ] && ! postmaster_at "$(head -n1 "$lock")" "$ROOT$(sed -n 2p "$lock")"; then
    rm -f "$lock"
  fi
}

psql_root() {
  # psql of the server's root, as the superuser over the chroot's own unix socket.
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
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$INITLOG" 2>&1 \
    || { cat "$INITLOG" >&2; die "initdb failed"; }
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

server_conf() {
  # What differs between servers, in a file of its own that every start writes again, so a
  # cluster made before a change gets it at its next start.
  local conf=pgbg-sandbox-server.conf
  grep -qF "include_if_exists = '$conf'" "$DATA/postgresql.conf" \
    || printf "include_if_exists = '%s'\n" "$conf" >>"$DATA/postgresql.conf"
  {
    echo "# written by scripts/sandbox.sh at each start: $(describe)"
    if [ "$BG" = 2.0 ] && have_cron; then
      echo "shared_preload_libraries = 'pg_cron'"
      echo "cron.database_name = 'postgres'"
      echo "cron.use_background_workers = on"
    fi
  } | in_root /bin/sh -c "cat >$DATA_IN_ROOT/$conf"
}

start() {
  build
  need_root
  init_cluster
  local p
  p=$(port)
  if ! running; then
    server_conf
    # a port taken by something else since last time: pick another
    # SO_REUSEADDR as the server uses it: a port left in TIME_WAIT by our own last run is free
    if ! python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $p))" 2>/dev/null; then
      free_port >"$PORTFILE"; p=$(port)
    fi
    clear_stale_locks "$p"
    log "starting $(describe) on 127.0.0.1:$p"
    in_root "$PGBIN/pg_ctl" -D "$DATA_IN_ROOT" -l "$LOG_IN_ROOT" -w -t 60 \
      -o "-p $p -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp" start >/dev/null \
      || { tail -n 30 "$ROOT$LOG_IN_ROOT" >&2; die "server did not start; log: $ROOT$LOG_IN_ROOT"; }
  fi
  provision
  log "ready: $(describe): $(dsn admin | sed -E 's#://([^:]+):[^@]*@#://\1:***@#')"
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
  [ "$BG" = 2.0 ] || return 0
  # pg_cron (the default server only) runs its jobs from database postgres
  if [ "$(psql_root -d postgres -tA -c "SELECT current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron(\$|[ ,])'")" = t ]; then
    psql_root -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_cron"
  elif have_cron; then
    log "pg_cron comes at this server's next restart (it was started without it)"
  fi
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
    echo "running on 127.0.0.1:$(port): $(describe) (data: $DATA)"
  elif [ -x "$ROOT$PGBIN/postgres" ]; then
    echo "stopped: $(describe) (root: $ROOT)"; return 3
  else
    echo "not built: $SERVER (cache: $CACHE)"; return 3
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
  extdir) echo "$ROOT/usr/share/postgresql/$PGV/extension" ;;
  messages) build; messages_built ;;
  servers) echo "pg18-bg20 pg18-bg18 pg17-bg18 pg15-bg18" ;;
  describe) versions ;;
  shop)
    DB=shop; start
    psql_root -d shop -c "SET shop.rows = ${PGBG_SHOP_ROWS:-500000}" -f - <"$REPO/scripts/shop.sql"
    log "database shop: $(psql_root -d shop -tA -c 'SELECT count(*) FROM orders') orders" ;;
  destroy) stop; rm -rf "$ROOT$BASE_IN_ROOT" "$PORTFILE" ;;
  *) sed -n '2,30p' "$0" >&2; exit 2 ;;
esac
