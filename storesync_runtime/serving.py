"""How the long-running HTTP services (``edge-agent run``, ``cloud-hub serve``) serve, written once.

Keep-alive: an idle connection is kept :data:`KEEP_ALIVE_S` seconds, longer than clients keep theirs
(httpx: 5 s). With uvicorn's default (also 5 s) both ends gave up on an idle connection at the same
moment, and a request sent on it as the server closed it met a closed socket (httpx ``ReadError``, not
retried for a POST). One fleet benchmark run (200 stores, two replicas) had 2 such errors in 1,000
bursts. The side that closes an idle connection first must be the client.

Garbage collector: Everything start-up makes (imported modules, pydantic schemas, the ASGI app) lives as long as the
process. Left in the cyclic collector's generations, it is walked again by every full collection:
40–58 ms for the agent's ~54,000 start-up objects on the development machine (load 2–3), a pause that lands
on whichever POS request is waiting. :func:`freeze_startup` moves it to the permanent generation once,
just before serving, so a full collection walks only what serving made (docs/performance.md §4c).
"""

from __future__ import annotations

import gc

KEEP_ALIVE_S = 75  # longer than any client's idle expiry (httpx: 5 s), as web servers do (nginx: 75 s)


def freeze_startup() -> int:
    """Collect once, then freeze every object alive now out of the cyclic collector.

    Returns:
        How many objects were frozen (``gc.get_freeze_count()``).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
