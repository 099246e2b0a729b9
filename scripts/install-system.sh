#!/usr/bin/env bash
# Install the Debian/Ubuntu packages bbnet needs, plus any named as arguments (the tests' tools).
# Idempotent: apt runs only when something is missing.
set -euo pipefail
pkgs=(nftables libnftables1 iproute2 ca-certificates procps postgresql "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "install-system: need root to install: ${missing[*]}" >&2; exit 1; fi
  echo "install-system: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
