"""``alkey.stats()``: counters for a metrics system.

The counters are kept by the C core, in its module state, for all clients
together: one integer increment each while the GIL is held anyway, so they
are always on.  They count from the start of the process; a forked child
starts again from zero (``os.register_at_fork`` below), being a new
process to whatever scrapes it.
"""

from __future__ import annotations

import os
from typing import Any

from . import _native, _pending

__all__ = ['execute_invalidation', 'stats']


def stats() -> dict[str, int]:
    """The counters since the process started (a forked child starts from
    zero), for every client of the process together, and one gauge.  Cheap:
    read it as often as a metrics system scrapes.

    Tokens, as cache keys (a key generator's call) and ``get_token()``
    with the native client use them; an instance's key also reads its
    table's epoch and the global epoch, which count as tokens too:

    ``tokens_looked_up``
        Tokens a key or ``get_token()`` needed.  With the native client each
        is exactly one of the three below
        (``tokens_found + tokens_created + tokens_fresh``), except that a
        ``get_token()`` that failed counts in none of them.  With a redis-py
        client the tokens a key got from it count here only (alkey cannot
        tell which it found and which it created), and ``get_token()``
        through it not at all.
    ``tokens_found``
        Already in Redis (hits).
    ``tokens_created``
        Missing, and stored by this process (``SET NX``).
    ``tokens_fresh``
        Made up and stored nowhere, so the key is new (a miss): Redis failed
        or timed out, the key names an invalidation still pending, or the
        token source is None.

    Invalidations, as a commit, ``invalidate()`` and the retries of pending
    ones send them:

    ``invalidations_sent``
        Identifiers whose token was replaced.
    ``invalidations_failed``
        Identifiers whose replacement failed (Redis down, timing out or
        refusing), counted at each attempt: a pending one retried four times
        counts four times.
    ``invalidations_pending``
        A gauge, not a counter: identifiers kept pending now, waiting for
        Redis.

    Redis:

    ``redis_round_trips``
        Requests or pipelines sent whose replies were all read, error replies
        included (connecting's ``AUTH`` and ``SELECT`` too).  Through a
        redis-py client, one per call alkey makes into it (a key's token
        lookup, an invalidation pipeline), whatever that call sends.
    ``redis_errors``
        Failures other than timeouts: a connection refused, closed or reset,
        an error reply (a refused ``AUTH``, a failed ``SET``), an exception
        from a redis-py client.
    ``redis_timeouts``
        Connecting, reading or writing that ran out of time
        (``socket_connect_timeout``, ``socket_timeout``), and waits for a
        free pooled connection (``max_connections``) that did.
    ``redis_connections_opened``
        Connections the native client opened (each reconnection included).
    """
    counts = _native.stats()
    counts['invalidations_pending'] = _pending.count()
    return counts


def execute_invalidation(pipe: Any, count: int) -> int:
    """Executes a redis-py pipeline of ``count`` token replacements and
    counts it; returns ``count``."""
    try:
        pipe.execute()
    except Exception as exc:
        _native._count_invalidation(0, count, exc)
        raise
    _native._count_invalidation(count, 0, None)
    return count


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_native._reset_stats)
