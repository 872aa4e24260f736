#!/usr/bin/env bash
# Install StoreSync as a systemd service.
#
#   sudo installers/systemd/install.sh agent --hub https://hub.example.com --token sse_...
#   sudo installers/systemd/install.sh hub
#
# Creates the 'storesync' system user, a virtual environment in /opt/storesync, the data folder
# (mode 0700), and enables the unit. For the agent it also creates the signing key (mode 0600)
# and enrolls with the hub when --hub and --token are given. Safe to run again: existing keys and
# data are never overwritten.
set -euo pipefail

role="${1:-}"; shift || true
hub=""; token=""; prefix="/opt/storesync"; src="$(cd "$(dirname "$0")/../.." && pwd)"
while [ $# -gt 0 ]; do
  case "$1" in
    --hub) hub="$2"; shift 2 ;;
    --token) token="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$role" in agent|hub) ;; *) echo "usage: install.sh agent|hub [--hub URL --token TOKEN] [--prefix DIR]" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 2; }

id storesync >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin storesync
if [ ! -x "$prefix/bin/python" ]; then python3 -m venv "$prefix"; fi
"$prefix/bin/python" -m pip install -q --upgrade pip
"$prefix/bin/python" -m pip install -q "$src"
install -d -m 0755 "$prefix/share" /etc/storesync
install -m 0644 "$src/README.md" "$prefix/share/README.md"

if [ "$role" = agent ]; then
  data=/var/lib/storesync-agent
  install -d -m 0700 -o storesync -g storesync "$data"
  if [ ! -f "$data/agent.key" ]; then
    runuser -u storesync -- "$prefix/bin/edge-agent" init --data-dir "$data"
  fi
  if [ -n "$hub" ] && [ -n "$token" ]; then
    runuser -u storesync -- "$prefix/bin/edge-agent" enroll --data-dir "$data" --hub "$hub" --token "$token"
  fi
  [ -f /etc/storesync/agent.env ] || install -m 0640 -g storesync /dev/null /etc/storesync/agent.env
  unit=storesync-agent.service
else
  data=/var/lib/storesync-hub
  install -d -m 0700 -o storesync -g storesync "$data"
  [ -f /etc/storesync/hub.env ] || install -m 0640 -g storesync /dev/null /etc/storesync/hub.env
  unit=storesync-hub.service
fi

sed "s#/opt/storesync#$prefix#g" "$src/installers/systemd/$unit" > "/etc/systemd/system/$unit"
systemctl daemon-reload
systemctl enable --now "$unit"
systemctl --no-pager status "$unit" || true
