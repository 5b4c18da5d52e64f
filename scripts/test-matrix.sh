#!/usr/bin/env bash
# The whole test suite on every sandbox server in turn (scripts/sandbox.sh servers), the
# default server first, then one summary line per server and a total. Exits non-zero when
# any server failed; a server that cannot be had here (the pg_background 1.8 source is not
# beside the repository) is skipped with one line saying why, and nothing else is.
#
#   bash scripts/test-matrix.sh [SERVER...]     (make test-matrix runs it with no argument)
#
# PY (default .venv/bin/python) runs pytest; PYTEST_ARGS is passed to each run. Each server
# runs its own clusters (instance PGBG_SANDBOX_INSTANCE, default main, of that server), and
# stays up afterwards as after `make test`. PGBG_TEST_DSN is ignored here: the matrix is the
# project's own servers.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
eval "PYTEST_ARGV=(${PYTEST_ARGS:-})"  # split as make test's shell splits them: -k 'a or b' stays one
if [ "$#" -gt 0 ]; then servers=("$@"); else read -r -a servers <<<"$(bash scripts/sandbox.sh servers)"; fi
unset PGBG_TEST_DSN

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
failed_servers=0 n_passed=0 n_failed=0 n_skipped=0

counts() {
  # passed failed skipped from pytest's JUnit XML (errors count as failed)
  "$PY" - "$1" <<'PY'
import sys
import xml.etree.ElementTree as ET

try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print(0, 0, 0)
    raise SystemExit
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
t = f = e = s = 0
for suite in suites:
    t += int(suite.get("tests", 0))
    f += int(suite.get("failures", 0))
    e += int(suite.get("errors", 0))
    s += int(suite.get("skipped", 0))
print(t - f - e - s, f + e, s)
PY
}

for server in "${servers[@]}"; do
  printf '\n==> %s\n' "$server"
  started=$(date +%s)
  PGBG_SANDBOX_SERVER=$server bash scripts/sandbox.sh start 2>"$work/start.err"
  rc=$?
  cat "$work/start.err" >&2
  if [ "$rc" -eq 4 ]; then
    summary+=("$server: skipped: $(sed -n "s/^sandbox: \($server skipped: \)\{0,1\}//p" "$work/start.err" | tail -n1)")
    continue
  fi
  if [ "$rc" -ne 0 ]; then
    summary+=("$server: FAILED: the server did not start (scripts/sandbox.sh start exit $rc)")
    failed_servers=$((failed_servers + 1))
    continue
  fi
  what=$(PGBG_SANDBOX_SERVER=$server bash scripts/sandbox.sh describe)
  PGBG_SANDBOX_SERVER=$server "$PY" -m pytest --junitxml="$work/$server.xml" "${PYTEST_ARGV[@]}"
  rc=$?
  read -r p f s <<<"$(counts "$work/$server.xml")"
  n_passed=$((n_passed + p)) n_failed=$((n_failed + f)) n_skipped=$((n_skipped + s))
  took="$(( $(date +%s) - started )) s"
  case "$rc" in
    0) verdict=passed ;;
    5) verdict="FAILED (no tests collected)" ;;
    *) verdict="FAILED (pytest exit $rc)" ;;
  esac
  [ "$rc" -eq 0 ] || failed_servers=$((failed_servers + 1))
  summary+=("$server ($what): $verdict: $p passed, $f failed, $s skipped in $took")
done

printf '\n==> test matrix\n'
printf '%s\n' "${summary[@]}"
printf 'matrix: %d passed, %d failed, %d skipped\n' "$n_passed" "$n_failed" "$n_skipped"
[ "$failed_servers" -eq 0 ]
