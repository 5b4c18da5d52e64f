#!/usr/bin/env bash
# pgbg demo: VACUUM a 3-million-row table full of dead tuples in a pg_background worker,
# launched by a role that is not a superuser, with live progress; then show worker capacity.
#
#   make demo                   (makes the venv and starts the sandbox first)
#   bash scripts/demo.sh        (the sandbox must run; pgbg on PATH or in .venv)
#
# Environment:
#   PGBG_DEMO_ADMIN_DSN   superuser conninfo (default: the sandbox's, scripts/sandbox.sh dsn admin)
#   PGBG_DEMO_APP_DSN     the application role's conninfo (default: scripts/sandbox.sh dsn app)
#   PGBG_DEMO_ROWS        rows in demo_events (default 3000000)
#   PGBG_DEMO_VACUUM_COST_DELAY  vacuum_cost_delay for the app role in this database, so the
#                         VACUUM lasts long enough to watch (default 2ms; 0 leaves it unthrottled)
#
# Idempotent: every run recreates demo_events (about ten seconds) and re-runs the VACUUM.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$ROOT/.venv/bin/pgbg" ]; then
  PATH="$ROOT/.venv/bin:$PATH"
fi
command -v pgbg >/dev/null || { echo "demo: pgbg is not installed: run make venv (or make demo)" >&2; exit 3; }
PY=$(dirname "$(command -v pgbg)")/python
[ -x "$PY" ] || PY=python3

ADMIN_DSN=${PGBG_DEMO_ADMIN_DSN:-$(bash "$ROOT/scripts/sandbox.sh" dsn admin)}
APP_DSN=${PGBG_DEMO_APP_DSN:-$(bash "$ROOT/scripts/sandbox.sh" dsn app)}
ROWS=${PGBG_DEMO_ROWS:-3000000}
COST_DELAY=${PGBG_DEMO_VACUUM_COST_DELAY:-2ms}
case "$ROWS" in ''|*[!0-9]*) echo "demo: PGBG_DEMO_ROWS must be a number" >&2; exit 2 ;; esac

redact() { sed -E -e 's#(://[^:/@]*:)[^@]*@#\1***@#' -e 's#(password=)[^ ]*#\1***#g'; }
headline() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
[ -t 2 ] || headline() { printf '\n== %s\n' "$*" >&2; }

# pgbg as a given role; the command is printed first (without the DSN, which is shown once above).
as() {
  local who=$1 dsn; shift
  case "$who" in admin) dsn=$ADMIN_DSN ;; app) dsn=$APP_DSN ;; esac
  printf '[%s]$ pgbg' "$who" >&2; printf ' %q' "$@" >&2; printf '\n' >&2
  PGBG_DSN=$dsn pgbg "$@"
}

# SQL as the superuser (psycopg, so no psql client is needed). Prints each statement.
admin_sql() {
  "$PY" - "$ADMIN_DSN" "$@" <<'PY'
import sys, time

import psycopg

dsn, *statements = sys.argv[1:]
with psycopg.connect(dsn, autocommit=True, application_name="pgbg-demo") as conn:
    conn.execute("SET client_min_messages = warning")
    for stmt in statements:
        print("[admin]=# " + " ".join(stmt.split()), file=sys.stderr, flush=True)
        t0 = time.monotonic()
        cur = conn.execute(stmt)
        took = time.monotonic() - t0
        tail = f" ({cur.rowcount} rows)" if cur.rowcount and cur.rowcount > 0 else ""
        print(f"    {cur.statusmessage}{tail} in {took:.1f}s", file=sys.stderr, flush=True)
PY
}

# One field of a conninfo (libpq defaults apply, so PGUSER etc. count too).
dsn_field() {
  "$PY" -c 'import sys, psycopg
with psycopg.connect(sys.argv[2]) as c: print(getattr(c.info, sys.argv[1]))' "$1" "$2"
}

APP_ROLE=$(dsn_field user "$APP_DSN")
APP_DB=$(dsn_field dbname "$APP_DSN")

headline "Connections (passwords hidden)"
echo "admin: $(printf '%s' "$ADMIN_DSN" | redact)" >&2
echo "app:   $(printf '%s' "$APP_DSN" | redact)   (role $APP_ROLE, not a superuser)" >&2

headline "1. Install pgbg's schema and let $APP_ROLE use it (as the superuser)"
as admin init
as admin grant "$APP_ROLE"

headline "2. A table of $ROWS rows with many dead tuples, autovacuum off"
# A VACUUM left running by an interrupted earlier run would block the DROP below.
as app cancel --label 'demo-vacuum' >/dev/null
admin_sql \
  "SET lock_timeout = '10s'" \
  "DROP TABLE IF EXISTS demo_events" \
  "CREATE TABLE demo_events (
     id bigint PRIMARY KEY, account integer NOT NULL, kind text NOT NULL,
     amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL)
   WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off)" \
  "INSERT INTO demo_events
   SELECT g, g % 50000, (ARRAY['view','click','cart','buy'])[1 + g % 4], (g % 10000) / 100.0,
          timestamptz '2026-01-01' + g * interval '1 second'
     FROM generate_series(1, $ROWS) AS g" \
  "CREATE INDEX demo_events_account_idx ON demo_events (account)" \
  "DELETE FROM demo_events WHERE id % 10 < 3" \
  "UPDATE demo_events SET amount = amount + 1 WHERE id % 10 = 3" \
  "ALTER TABLE demo_events OWNER TO \"$APP_ROLE\"" \
  "CHECKPOINT"
if [ "$COST_DELAY" != 0 ]; then
  echo "    (manual VACUUM by $APP_ROLE in $APP_DB is throttled with vacuum_cost_delay = $COST_DELAY," >&2
  echo "     as production VACUUMs often are, so that the progress bar has time to show)" >&2
  admin_sql "ALTER ROLE \"$APP_ROLE\" IN DATABASE \"$APP_DB\" SET vacuum_cost_delay = '$COST_DELAY'"
else
  admin_sql "ALTER ROLE \"$APP_ROLE\" IN DATABASE \"$APP_DB\" RESET vacuum_cost_delay"
fi

headline "3. VACUUM it in a background worker, as $APP_ROLE, and wait with live progress"
as app launch --wait --label demo-vacuum "VACUUM (VERBOSE) demo_events"

headline "4. Worker capacity as $APP_ROLE sees it"
as app capacity

headline "Done"
echo "Try: PGBG_DSN=\"\$(make -s dsn ROLE=app)\" .venv/bin/pgbg list" >&2
