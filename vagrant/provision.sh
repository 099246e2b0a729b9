#!/usr/bin/env bash
# Provision a machine to run bbnet: the same install steps as `make demo` (Debian packages, a
# Python 3.13 venv with bbnet in it), then `bbnet install` (systemd unit, /etc/bbnet/settings.yml,
# /var/lib/bbnet) with the service started. Idempotent; runs as root.
#
#   BBNET_REPO          the repository [default: the parent of this script's folder]
#   BBNET_INSTALL_ROOT  install under this directory instead of / and start nothing (CI checks
#                       the script this way without touching the host's /etc)
set -euo pipefail

repo="${BBNET_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
install_root="${BBNET_INSTALL_ROOT:-/}"

if [ "$(id -u)" != 0 ]; then echo "provision: run as root" >&2; exit 1; fi
if [ ! -f "$repo/Makefile" ]; then echo "provision: no bbnet repository at $repo" >&2; exit 1; fi

if ! command -v make >/dev/null; then
  echo "provision: installing make" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make
fi

make -C "$repo" setup          # what `make demo` runs first: scripts/install-system.sh, then the venv
bbnet="$repo/.venv/bin/bbnet"

if [ "$install_root" = / ]; then
  "$bbnet" install             # writes the unit and settings, enables and starts bbnet.service
  if [ -d /run/systemd/system ]; then
    for _ in $(seq 60); do systemctl is-active --quiet bbnet && break; sleep 1; done
    systemctl is-active --quiet bbnet || { systemctl status --no-pager bbnet >&2; exit 1; }
    "$bbnet" doctor || echo "provision: bbnet doctor reported problems (above)" >&2
  fi
  echo "provision: bbnet is serving. The demo runs its own meter and controller, so stop the service" \
       "for it: sudo systemctl stop bbnet && sudo nft delete table netdev bbnet &&" \
       "sudo make -C $repo demo; sudo systemctl start bbnet" >&2
else
  "$bbnet" install --root "$install_root" --no-start
fi
