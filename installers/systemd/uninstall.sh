#!/usr/bin/env bash
# Remove the StoreSync service(s), keeping the data unless --purge.
#
#   sudo installers/systemd/uninstall.sh agent|hub|all [--prefix DIR] [--purge]
#
# Without --purge the data folders (/var/lib/storesync-agent, /var/lib/storesync-hub: keys, outbox,
# ledger) and /etc/storesync stay, so installing again continues where it stopped. With --purge they
# are deleted too, and the 'storesync' user and group are removed. DESTDIR works as for install.sh.
set -euo pipefail

role="${1:-}"; shift || true
prefix="/opt/storesync"; purge=0; destdir="${DESTDIR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --purge) purge=1; shift ;;
    *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$role" in agent) roles=agent ;; hub) roles=hub ;; all) roles="agent hub" ;;
  *) echo "usage: uninstall.sh agent|hub|all [--prefix DIR] [--purge]" >&2; exit 2 ;; esac
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then echo "uninstall.sh: run as root (or set DESTDIR)" >&2; exit 2; fi
root="$destdir"

for r in $roles; do
  unit="storesync-$r.service"
  if [ -z "$destdir" ]; then systemctl disable --now "$unit" 2>/dev/null || true; fi
  rm -f "$root/etc/systemd/system/$unit"
  rm -rf "$root/etc/systemd/system/$unit.d"
  if [ "$purge" = 1 ]; then
    rm -rf "$root/var/lib/storesync-$r"
    rm -f "$root/etc/storesync/$r.env"
  else
    echo "uninstall.sh: kept $root/var/lib/storesync-$r (pass --purge to delete it)"
  fi
done
if [ -z "$destdir" ]; then systemctl daemon-reload || true; fi

# The program goes when no service is left.
if [ ! -f "$root/etc/systemd/system/storesync-agent.service" ] && [ ! -f "$root/etc/systemd/system/storesync-hub.service" ]; then
  rm -rf "${root}${prefix}"
  if [ "$purge" = 1 ]; then
    rmdir "$root/etc/storesync" 2>/dev/null || true
    if [ -z "$destdir" ]; then
      userdel storesync 2>/dev/null || true
      groupdel storesync 2>/dev/null || true
    fi
  fi
fi
