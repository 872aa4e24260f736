#!/usr/bin/env bash
# Install or upgrade StoreSync as a systemd service.
#
#   sudo installers/systemd/install.sh hub   [--public-url https://hub.example.com] [--host 0.0.0.0] [--port 8700]
#   sudo installers/systemd/install.sh agent [--hub https://hub.example.com --token sse_...] [--drop-dir /srv/drops]
#
# Creates the 'storesync' system user and group (members of the group may run store-tui), a virtual
# environment in PREFIX (/opt/storesync) with the versions pinned in installers/constraints.txt, the data
# folder, /etc/storesync/{agent,hub}.env, the unit (and for the agent a drop-in making the drop folder
# writable), and enables and (re)starts it.
#
# Safe to run again: keys, data and env files are never overwritten, an enrolled agent is not enrolled
# again, an existing hub is not initialised again. Running it from a newer source tree is the upgrade:
# the package is reinstalled, and the restart runs the outbox/hub database migrations at start-up.
#
# DESTDIR=/scratch installs into a scratch root for tests and packaging: paths are prefixed, and no
# user is created, nothing is chowned, nothing runs as another user and systemctl is not called.
set -euo pipefail

role="${1:-}"; shift || true
hub=""; token=""; prefix="/opt/storesync"; drop_dir=""; public_url=""; host=""; port=""
src="$(cd "$(dirname "$0")/../.." && pwd)"
destdir="${DESTDIR:-}"
usage="usage: install.sh agent|hub [--prefix DIR] [--hub URL --token TOKEN] [--drop-dir DIR] [--public-url URL] [--host ADDR] [--port N]"
while [ $# -gt 0 ]; do
  case "$1" in
    --hub) hub="$2"; shift 2 ;;
    --token) token="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --drop-dir) drop_dir="$2"; shift 2 ;;
    --public-url) public_url="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
case "$role" in agent|hub) ;; *) echo "$usage" >&2; exit 2 ;; esac
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then echo "install.sh: run as root (or set DESTDIR)" >&2; exit 2; fi
if [ -n "$token" ] && [ -z "$hub" ]; then echo "install.sh: --token needs --hub" >&2; exit 2; fi

root="$destdir"
venv="$root$prefix"
etc="$root/etc/storesync"
units="$root/etc/systemd/system"
python="${PYTHON:-python3}"

as_service() {  # run a command as the service user (as ourselves in a scratch root)
  if [ -n "$destdir" ]; then "$@"; else runuser -u storesync -- "$@"; fi
}
own() {  # chown to the service user (not in a scratch root)
  if [ -z "$destdir" ]; then chown "$@"; fi
}

if [ -z "$destdir" ]; then
  getent group storesync >/dev/null || groupadd --system storesync
  id storesync >/dev/null 2>&1 || useradd --system --gid storesync --home-dir /nonexistent --shell /usr/sbin/nologin storesync
fi

# The package, with pinned dependencies. An upgrade reinstalls it over the same environment.
if [ ! -x "$venv/bin/python" ]; then "$python" -m venv "$venv"; fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$src/installers/constraints.txt" "$src"
install -d -m 0755 "$venv/share" "$etc" "$units"
install -m 0644 "$src/README.md" "$venv/share/README.md"
install -m 0644 "$src/installers/constraints.txt" "$venv/share/constraints.txt"

if [ "$role" = agent ]; then
  data="$root/var/lib/storesync-agent"
  install -d -m 0750 "$data"; own storesync:storesync "$data"
  if [ ! -f "$data/agent.key" ]; then
    as_service "$venv/bin/edge-agent" init --data-dir "$data"
  fi
  env_file="$etc/agent.env"
  if [ ! -f "$env_file" ]; then
    install -m 0640 /dev/null "$env_file"; own root:storesync "$env_file"
    echo "# StoreSync agent settings (EDGE_AGENT_*); see README 'Configuration'." >> "$env_file"
  fi
  if [ -n "$hub" ] && [ -n "$token" ]; then
    # Re-running with the same (used) token must not fail: enroll only when not enrolled yet.
    # (status exits 1 while records wait; read its JSON whole, no early-closing pipe under pipefail)
    status_json="$(as_service "$venv/bin/edge-agent" status --data-dir "$data" --json 2>/dev/null || true)"
    if [[ "$status_json" == *'"enrolled": true'* ]]; then
      echo "install.sh: agent already enrolled; not enrolling again (use 'edge-agent enroll --force' to re-enroll)"
    else
      as_service "$venv/bin/edge-agent" enroll --data-dir "$data" --hub "$hub" --token "$token"
    fi
  fi
  install -d -m 0755 "$units/storesync-agent.service.d"
  dropin="$units/storesync-agent.service.d/drop-dir.conf"
  if [ -n "$drop_dir" ]; then
    install -d -m 2770 "$root$drop_dir"; own storesync:storesync "$root$drop_dir"
    printf '[Service]\nReadWritePaths=%s\nEnvironment=EDGE_AGENT_DROP_DIR=%s\n' "$drop_dir" "$drop_dir" > "$dropin"
  elif [ ! -f "$dropin" ]; then
    printf '# install.sh --drop-dir DIR writes ReadWritePaths=DIR and EDGE_AGENT_DROP_DIR=DIR here.\n[Service]\n' > "$dropin"
  fi
  unit=storesync-agent.service
else
  data="$root/var/lib/storesync-hub"
  install -d -m 0700 "$data"; own storesync:storesync "$data"
  if [ ! -f "$data/.storesync-hub" ] && [ ! -f "$data/hub.key" ]; then
    as_service "$venv/bin/cloud-hub" init --data-dir "$data"
  fi
  env_file="$etc/hub.env"
  if [ ! -f "$env_file" ]; then
    install -m 0640 /dev/null "$env_file"; own root:storesync "$env_file"
    {
      echo "# StoreSync hub settings; see README 'Configuration'."
      echo "CLOUD_HUB_HOST=${host:-127.0.0.1}"
      echo "CLOUD_HUB_PORT=${port:-8700}"
      if [ -n "$public_url" ]; then echo "CLOUD_HUB_PUBLIC_URL=$public_url"; fi
    } >> "$env_file"
  fi
  unit=storesync-hub.service
fi

sed "s#/opt/storesync#$prefix#g" "$src/installers/systemd/$unit" > "$units/$unit"
chmod 0644 "$units/$unit"

if [ -z "$destdir" ]; then
  systemctl daemon-reload
  systemctl enable "$unit"
  # restart (not start): an upgrade picks up the new code; migrations run when the service opens its database
  systemctl restart "$unit"
  systemctl --no-pager status "$unit" || true
else
  echo "install.sh: installed into $destdir (systemctl not called)"
fi
