"""The StoreSync edge agent as a Windows service (pywin32's service framework), kept thin.

Everything the service does is :class:`edge_agent.service.AgentService`, the same start/stop code
``edge-agent run`` uses under systemd; this class only maps the Service Control Manager's calls onto
it and reports to the Windows event log. Installed and registered by ``install.ps1``::

    python storesync_agent_service.py --startup auto install     # done by install.ps1
    python storesync_agent_service.py start | stop | remove

Settings: ``EDGE_AGENT_DATA`` (the data folder, default ``C:\\ProgramData\\StoreSync\\agent``) and the
``agent.toml`` in it. Not run in this repository's tests (no Windows machine); the shared
``AgentService`` is (tests/ops/test_service.py).
"""

from __future__ import annotations

import os
import sys
import threading

import servicemanager  # type: ignore[import-not-found]
import win32event  # type: ignore[import-not-found]
import win32service  # type: ignore[import-not-found]
import win32serviceutil  # type: ignore[import-not-found]

from edge_agent.config import AgentConfig
from edge_agent.service import AgentService

DEFAULT_DATA = r"C:\ProgramData\StoreSync\agent"


class StoreSyncAgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
    _svc_name_ = "StoreSyncAgent"
    _svc_display_name_ = "StoreSync edge agent"
    _svc_description_ = "Captures POS transactions on loopback and syncs them to the StoreSync hub."

    def __init__(self, args: list[str]) -> None:
        super().__init__(args)
        self.stop_event = win32event.CreateEvent(None, 0, 0, None)
        self.service: AgentService | None = None

    def SvcStop(self) -> None:  # noqa: N802 - pywin32's name
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        if self.service is not None:
            self.service.stop(timeout=30)
        win32event.SetEvent(self.stop_event)

    def SvcDoRun(self) -> None:  # noqa: N802 - pywin32's name
        data = os.environ.get("EDGE_AGENT_DATA", DEFAULT_DATA)
        self.service = AgentService(AgentConfig.load(data), announce=servicemanager.LogInfoMsg, command="StoreSyncAgent")
        runner = threading.Thread(target=self._run, name="agent", daemon=True)
        runner.start()
        if self.service.started.wait(60):
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
        win32event.WaitForSingleObject(self.stop_event, win32event.INFINITE)
        runner.join(30)

    def _run(self) -> None:
        assert self.service is not None
        try:
            self.service.run()
        except Exception as exc:  # noqa: BLE001 - reported to the event log; the recovery actions restart us
            servicemanager.LogErrorMsg(f"StoreSync agent stopped: {exc}")
            win32event.SetEvent(self.stop_event)


if __name__ == "__main__":
    if len(sys.argv) == 1:
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(StoreSyncAgentService)
        servicemanager.StartServiceCtrlDispatcher()
    else:
        win32serviceutil.HandleCommandLine(StoreSyncAgentService)
