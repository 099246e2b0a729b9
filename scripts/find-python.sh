#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter, installing Debian's if none is found.
# Looks on PATH, then in pyenv's versions, then asks apt (Debian 13 / Ubuntu 24.10+ ship 3.13).
set -euo pipefail
is313() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }
candidates=()
for name in python3.13 python3; do
  p=$(command -v "$name" 2>/dev/null) && candidates+=("$p")
done
for root in "${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv /opt/pyenv /usr/local/pyenv; do
  [ -n "$root" ] && [ -d "$root/versions" ] || continue
  for d in $(ls -d "$root"/versions/3.13* 2>/dev/null | sort -rV); do
    candidates+=("$d/bin/python3.13")
  done
done
candidates+=(/usr/local/bin/python3.13 /usr/bin/python3.13)
for p in "${candidates[@]}"; do
  if [ -x "$p" ] && is313 "$p"; then echo "$p"; exit 0; fi
done
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "find-python: no Python 3.13 found; installing Debian's python3.13" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.13 python3.13-venv >&2 || true
  if [ -x /usr/bin/python3.13 ] && is313 /usr/bin/python3.13; then echo /usr/bin/python3.13; exit 0; fi
fi
echo "find-python: no Python 3.13 interpreter found (looked on PATH, in pyenv, and in apt); install Python 3.13" >&2
exit 1
