"""How StoreSync's programs run: the plumbing that the agent, the hub and the audit tool share.

Not the wire format (that is :mod:`sync_protocol`, which this package builds on), but what every
service process needs and neither side may take from the other, since the agent and the hub never
import each other:

* :mod:`.cli`: the one error path of every command (one line or JSON, documented exit codes).
* :mod:`.settings`: config files with environment overrides, validated by pydantic-settings.
* :mod:`.logfmt`: one log format per service, text or JSON.
* :mod:`.proclock`: the exclusive lock a running agent, import or SQLite hub holds on its data folder.
* :mod:`.sdnotify`: systemd readiness, watchdog and stopping messages.
* :mod:`.serving`: how the services serve (start-up heap out of the collector, keep-alive).
* :mod:`.audit_cli`: ``storesync verify-export``, the offline check of an audit export.
"""
