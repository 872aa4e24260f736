# Install or upgrade the StoreSync edge agent as a Windows service. Run in an elevated PowerShell:
#
#   .\installers\windows\install.ps1 -Hub https://hub.example.com -Token sse_... [-DropDir D:\Drops]
#
# Creates the local user 'storesync' (no interactive logon), the group 'StoreSync' (staff who may run
# store-tui), a virtual environment in C:\Program Files\StoreSync with the versions pinned in
# installers\constraints.txt, the data folder C:\ProgramData\StoreSync\agent with an ACL that lets only
# the service user, SYSTEM and Administrators in (the StoreSync group may read), registers the
# 'StoreSyncAgent' service (pywin32, installers\windows\storesync_agent_service.py) running as that user,
# with recovery actions (restart after 5 s, 5 s, 60 s), and starts it. Safe to run again: keys, data and
# enrollment are kept; running it from a newer tree is the upgrade (reinstall, restart).
#
# NOT RUN in this repository's tests: there is no Windows machine here (README, "What was tested where").
param(
  [string]$Hub = "",
  [string]$Token = "",
  [string]$DropDir = "",
  [string]$Prefix = "C:\Program Files\StoreSync",
  [string]$Data = "C:\ProgramData\StoreSync\agent"
)
$ErrorActionPreference = "Stop"
$src = (Resolve-Path "$PSScriptRoot\..\..").Path
$user = "storesync"
$group = "StoreSync"

if (-not ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
    [Security.Principal.WindowsBuiltInRole]::Administrator)) { throw "install.ps1: run in an elevated PowerShell" }
if ($Token -and -not $Hub) { throw "install.ps1: -Token needs -Hub" }

# Service account and staff group.
if (-not (Get-LocalGroup -Name $group -ErrorAction SilentlyContinue)) { New-LocalGroup -Name $group -Description "StoreSync store staff (store-tui)" | Out-Null }
$pwFile = Join-Path $env:ProgramData "StoreSync\service.pw"
if (-not (Get-LocalUser -Name $user -ErrorAction SilentlyContinue)) {
  Add-Type -AssemblyName System.Web
  $plain = [System.Web.Security.Membership]::GeneratePassword(32, 6)
  $secure = ConvertTo-SecureString $plain -AsPlainText -Force
  New-LocalUser -Name $user -Password $secure -PasswordNeverExpires -UserMayNotChangePassword -Description "StoreSync agent service" | Out-Null
  New-Item -ItemType Directory -Force -Path (Split-Path $pwFile) | Out-Null
  $plain | Out-File -Encoding ascii $pwFile
  icacls $pwFile /inheritance:r /grant:r "SYSTEM:(F)" "Administrators:(F)" | Out-Null
}
$plain = (Get-Content $pwFile -Raw).Trim()

# Program, pinned.
if (-not (Test-Path "$Prefix\Scripts\python.exe")) { py -3 -m venv $Prefix }
& "$Prefix\Scripts\python.exe" -m pip install -q --disable-pip-version-check -c "$src\installers\constraints.txt" "$src" pywin32
Copy-Item "$src\installers\windows\storesync_agent_service.py" "$Prefix\storesync_agent_service.py" -Force

# Data folder: only the service user, SYSTEM and Administrators; the staff group may read (store-tui).
New-Item -ItemType Directory -Force -Path $Data | Out-Null
icacls $Data /inheritance:r /grant:r "SYSTEM:(OI)(CI)(F)" "Administrators:(OI)(CI)(F)" "${user}:(OI)(CI)(M)" "${group}:(OI)(CI)(RX)" | Out-Null
[Environment]::SetEnvironmentVariable("EDGE_AGENT_DATA", $Data, "Machine")
$env:EDGE_AGENT_DATA = $Data
if ($DropDir) {
  New-Item -ItemType Directory -Force -Path $DropDir | Out-Null
  icacls $DropDir /grant "${user}:(OI)(CI)(M)" "${group}:(OI)(CI)(M)" | Out-Null
  [Environment]::SetEnvironmentVariable("EDGE_AGENT_DROP_DIR", $DropDir, "Machine")
}
$agent = "$Prefix\Scripts\edge-agent.exe"
if (-not (Test-Path "$Data\agent.key")) { & $agent init --data-dir $Data }
# The key file: the service user and SYSTEM only (Windows has no 0600; the ACL is the check).
icacls "$Data\agent.key" /inheritance:r /grant:r "SYSTEM:(F)" "Administrators:(F)" "${user}:(R)" | Out-Null
if ($Hub -and $Token) {
  $status = & $agent status --data-dir $Data --json 2>$null | ConvertFrom-Json
  if ($status.enrolled) { Write-Host "install.ps1: agent already enrolled; not enrolling again" }
  else { & $agent enroll --data-dir $Data --hub $Hub --token $Token; if ($LASTEXITCODE -ne 0) { throw "enroll failed ($LASTEXITCODE)" } }
}

# Service registration, recovery actions, (re)start: an upgrade restarts on the new code.
$svc = Get-Service -Name StoreSyncAgent -ErrorAction SilentlyContinue
if ($svc) { Stop-Service StoreSyncAgent -ErrorAction SilentlyContinue }
& "$Prefix\Scripts\python.exe" "$Prefix\storesync_agent_service.py" --startup auto --username ".\$user" --password $plain $(if ($svc) { "update" } else { "install" })
sc.exe failure StoreSyncAgent reset= 86400 actions= restart/5000/restart/5000/restart/60000 | Out-Null
sc.exe failureflag StoreSyncAgent 1 | Out-Null
Start-Service StoreSyncAgent
Get-Service StoreSyncAgent
