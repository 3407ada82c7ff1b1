"""Write-ahead intents: no invalidation lost when a process dies between
its database commit and the pipeline that replaces the tokens.

A binding made with ``write_ahead=True``, just before the database commits a
transaction that changed rows, adds an *intent* to a sorted set in Redis::

    ZADD <namespace>:intents <due> "<random id>\\n<identifier>\\n..."

(``due`` is ``GRACE`` seconds from now).  The pipeline that replaces the
tokens after the commit also removes the intent (``ZREM``), so a process
that lives to deliver its invalidation leaves nothing behind.  If it dies
in between, every other process bound with ``write_ahead`` looks for
intents that are due every ``SWEEP_INTERVAL`` seconds, replaces their
tokens and removes them: the keys of the dead process's commit change at
most ``GRACE + SWEEP_INTERVAL`` seconds after it.

An intent whose transaction did not commit after all is swept too: an
extra invalidation, which is always safe.  Intents of more than
``MAX_IDENTIFIERS`` identifiers name the global epoch instead (everything).
Due times come from the writer's clock and are compared with the
sweeper's: keep the hosts' clocks in step (NTP), or a skew shortens or
lengthens the grace.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Any

from . import _native
from ._log import RateLimitedWarning
from .constants import GLOBAL_EPOCH, GLOBAL_WRITE_TOKEN

__all__ = ['GRACE', 'MAX_IDENTIFIERS', 'SWEEP_INTERVAL', 'addition', 'key', 'member',
           'removal', 'sweep', 'unwatch', 'watch', 'write']

logger = logging.getLogger('alkey')

#: Seconds after its writing that an intent is due for sweeping: longer
#: than a database commit takes.
GRACE = 5.0
#: Seconds between two sweeps in each process.
SWEEP_INTERVAL = 1.0
#: Most identifiers an intent names; more are replaced by the global epoch.
MAX_IDENTIFIERS = 1000
#: Intents one sweep handles at most (the next sweep takes the rest).
BATCH = 100

_warning = RateLimitedWarning()


def key(namespace: str) -> str:
    """The sorted set of a namespace's intents."""
    return f'{namespace}:intents'


def member(oids: list[str]) -> str:
    """The intent naming ``oids``: a random id and the identifiers, one a
    line."""
    if len(oids) > MAX_IDENTIFIERS:
        oids = [GLOBAL_EPOCH, GLOBAL_WRITE_TOKEN]
    return '\n'.join([_native.random_token(), *oids])


def addition(namespace: str, intent: str) -> tuple[str, ...]:
    """The command that adds ``intent``, due ``GRACE`` seconds from now."""
    return ('ZADD', key(namespace), repr(time.time() + GRACE), intent)


def removal(namespace: str, intent: str) -> tuple[str, ...]:
    """The command that removes ``intent`` (its commit delivered)."""
    return ('ZREM', key(namespace), intent)


def write(redis_client: Any, namespace: str, intent: str) -> None:
    """Add ``intent`` (one round trip; raises when Redis fails)."""
    redis_client.execute_command(*addition(namespace, intent))


def _identifiers(intent: str) -> list[str] | None:
    """The identifiers an intent names, or None when it is not one of ours
    (nothing is done with it but its removal)."""
    oids = intent.split('\n')[1:]
    if not oids or any(_native.oid_kind(oid) is None for oid in oids):
        return None
    return oids


def sweep(binding: Any) -> int:
    """Deliver the intents of ``binding``'s namespace that are due and
    remove them; returns how many.  Raises when Redis fails."""
    from .events import send

    client = binding.client()
    name = key(binding.namespace)
    due = client.execute_command('ZRANGEBYSCORE', name, '-inf', repr(time.time()),
                                 'LIMIT', '0', str(BATCH))
    done = 0
    for raw in due or ():
        intent = raw.decode('utf-8', 'replace') if isinstance(raw, bytes) else str(raw)
        oids = _identifiers(intent)
        if oids is None:
            logger.warning('alkey: removing a malformed write-ahead intent from %s', name)
            client.execute_command('ZREM', name, raw)
            continue
        # One transaction: the intent goes only with its tokens (a Redis
        # refusing writes keeps both), and a sweeper that dies first leaves
        # it for the next one (delivering twice is harmless).
        send(client, oids, binding.namespace, binding.duration,
             extra=[('ZREM', name, raw)])
        done += 1
    if done:
        logger.warning('alkey: delivered %d write-ahead intents still there %.0f s after '
                       'their commit (its process died, or could not reach Redis)',
                       done, GRACE)
    return done


# --------------------------------------------------------------------------
# The sweeper thread

_lock = threading.Lock()
_watched: list[Any] = []  # bindings
_worker: threading.Thread | None = None


def watch(binding: Any) -> None:
    """Sweep ``binding``'s namespace from now on."""
    with _lock:
        if binding not in _watched:
            _watched.append(binding)
        _start()


def unwatch(binding: Any) -> None:
    with _lock:
        if binding in _watched:
            _watched.remove(binding)


def _run() -> None:
    global _worker
    wake = threading.Event()
    while True:
        # A little jitter keeps many processes from sweeping in step.
        wake.wait(SWEEP_INTERVAL * random.uniform(0.8, 1.2))
        with _lock:
            bindings = list(_watched)
            if not bindings:
                _worker = None
                return
        for binding in bindings:
            try:
                sweep(binding)
            except Exception as exc:  # noqa: BLE001 -- tried again next time
                _warning.warn('alkey: could not sweep write-ahead intents: %s: %s',
                              type(exc).__name__, exc)


def _start() -> None:
    """Called with _lock held."""
    global _worker
    if _worker is None or not _worker.is_alive():
        _worker = threading.Thread(target=_run, name='alkey-intents', daemon=True)
        _worker.start()


def _after_fork_in_child() -> None:
    global _worker, _lock
    _lock = threading.Lock()
    _worker = None
    if _watched:
        with _lock:
            _start()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
