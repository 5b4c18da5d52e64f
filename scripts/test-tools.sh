#!/usr/bin/env bash
# Debian tools the test suite drives besides Python: tmux (watch views in a real terminal),
# zsh and fish (shell completion), psql (benchmarks' baseline). Installs what is missing;
# needs root for that (as CI and the sandbox do).
set -euo pipefail
missing=()
for pair in tmux:tmux zsh:zsh fish:fish psql:postgresql-client; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "test-tools: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
  exit 1
fi
echo "test-tools: installing ${missing[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
