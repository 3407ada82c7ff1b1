"""Invalidations that could not reach Redis, kept until they do.

When a commit's invalidation fails (Redis down, timing out, refusing
writes), its identifiers are kept here, in this process, and:

- every key that names one of them (or its table's epoch, or the global
  epoch) is built from fresh tokens meanwhile, so this process never serves
  a key the change should have changed (the set is shared with the C key
  builder);
- they are sent again with the next commit through the same binding (in
  its one pipeline), and by a background thread that retries every
  ``RETRY_INTERVAL`` seconds, so they are delivered within about that long
  after Redis answers again;
- past ``LIMIT`` identifiers, a binding's pending work is replaced by the
  global epoch and global token: everything is invalidated rather than
  anything dropped.

If the process dies first, what it kept is lost: keys other processes build
can stay stale until the tokens expire (``MAX_CACHE_DURATION``).
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from typing import Any, Callable, Hashable

from . import _native
from .constants import GLOBAL_EPOCH, GLOBAL_WRITE_TOKEN

__all__ = ['LIMIT', 'RETRY_INTERVAL', 'add', 'clear', 'count', 'deliver', 'has', 'schedule',
           'take', 'waiting']

logger = logging.getLogger('alkey')

#: Most identifiers kept per binding before falling back to "everything".
LIMIT = 10000
#: Seconds between delivery attempts while anything is pending.
RETRY_INTERVAL = 0.25


_lock = threading.RLock()
# Binding key -> (sender, {identifier: generation}).  A sender is a callable
# taking a list of identifiers and raising when Redis fails.  The generation
# of an identifier changes each time it is added, so that a delivery removes
# only what it sent and nothing re-added meanwhile.
_by_binding: dict[Hashable, tuple[Callable[[list[str]], Any], dict[str, int]]] = {}
_generation = 0
# The union of every binding's identifiers: the set the C key builder reads.
_all: set[str] = set()
_native._set_pending(_all)
_worker: threading.Thread | None = None
# Second deliveries due later: (due time, key, sender, identifiers).
_scheduled: list[tuple[float, int, Hashable, Callable[[list[str]], Any], list[str]]] = []
_sequence = 0


def _rebuild() -> None:
    _all.clear()
    for _sender, oids in _by_binding.values():
        _all.update(oids)


def add(key: Hashable, sender: Callable[[list[str]], Any], oids: list[str]) -> None:
    """Keep ``oids`` for delivery through ``sender`` (one per ``key``)."""
    global _generation
    with _lock:
        _generation += 1
        _, kept = _by_binding.get(key, (sender, {}))
        for oid in oids:
            kept[oid] = _generation
        if len(kept) > LIMIT:
            logger.warning('more than %d alkey invalidations are pending: '
                           'invalidating everything instead', LIMIT)
            kept = {GLOBAL_EPOCH: _generation, GLOBAL_WRITE_TOKEN: _generation}
        _by_binding[key] = (sender, kept)
        _rebuild()
        _start_worker()


def take(key: Hashable) -> list[str]:
    """What is pending for ``key``, to send with a commit's own pipeline
    (given back with :func:`add` if that fails)."""
    with _lock:
        entry = _by_binding.pop(key, None)
        if entry is None:
            return []
        _rebuild()
        return list(entry[1])


def schedule(key: Hashable, sender: Callable[[list[str]], Any], oids: list[str],
             delay: float) -> None:
    """Send ``oids`` again ``delay`` seconds from now (a settle delay: keys a
    reader with an older snapshot or a lagging replica cached under the new
    tokens are orphaned too)."""
    global _sequence
    with _lock:
        _sequence += 1
        heapq.heappush(_scheduled, (time.monotonic() + delay, _sequence, key, sender,
                                    list(oids)))
        _start_worker()


def _due() -> None:
    """Send the scheduled deliveries that are due; failures become pending."""
    now = time.monotonic()
    while True:
        with _lock:
            if not _scheduled or _scheduled[0][0] > now:
                return
            _, _, key, sender, oids = heapq.heappop(_scheduled)
        try:
            sender(oids)
        except Exception:  # noqa: BLE001 -- kept pending instead
            add(key, sender, oids)


def clear() -> None:
    """Forget everything pending and scheduled (tests; an operator who has
    invalidated everything by hand)."""
    with _lock:
        _by_binding.clear()
        _scheduled.clear()
        _rebuild()


def has(key: Hashable) -> bool:
    """Whether anything is pending for ``key`` (read without the lock)."""
    return key in _by_binding


def waiting() -> bool:
    """Whether any binding has something pending (read without the lock:
    a commit that misses what is added meanwhile leaves it to the retry)."""
    return bool(_by_binding)


def count() -> int:
    """How many identifiers are pending."""
    return len(_all)


def deliver() -> bool:
    """Try to send everything pending; True when nothing is left."""
    with _lock:
        entries = [(key, sender, dict(oids)) for key, (sender, oids) in _by_binding.items()]
    for key, sender, snapshot in entries:
        batch = list(snapshot)
        try:
            sender(batch)
        except Exception as exc:  # noqa: BLE001 -- retried later
            logger.debug('pending alkey invalidations still undelivered: %s', exc)
            continue
        with _lock:
            current = _by_binding.get(key)
            if current is not None:
                kept = current[1]
                for oid, generation in snapshot.items():
                    # Re-added while we were sending: that change still needs
                    # its own delivery.
                    if kept.get(oid) == generation:
                        del kept[oid]
                if not kept:
                    del _by_binding[key]
            _rebuild()
        logger.warning('delivered %d pending alkey invalidations', len(batch))
    return not _all


def _run() -> None:
    global _worker
    event = threading.Event()
    while True:
        event.wait(RETRY_INTERVAL)
        _due()
        if deliver():
            with _lock:
                if not _all and not _scheduled:
                    _worker = None
                    return


def _start_worker() -> None:
    global _worker
    if _worker is None or not _worker.is_alive():
        _worker = threading.Thread(target=_run, name='alkey-pending', daemon=True)
        _worker.start()


def _after_fork_in_child() -> None:
    # The thread did not survive the fork; the child delivers what it
    # inherited (delivering twice is harmless).
    global _worker, _lock
    _lock = threading.RLock()
    _worker = None
    if _all or _scheduled:
        _start_worker()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
