"""The original package's lower-level handlers, kept working.

alkey 0.7 kept each session's changed identifiers in a Redis set keyed by
``session.hash_key`` (a per-process counter, so worker processes clobbered
each other's sets).  These functions keep their names and arguments, but
the change sets now live in this process's memory:

- ``record_changed``, ``invalidate_tokens`` and ``clear_changed`` work on a
  change set named by ``session_id`` (any hashable value); the
  ``redis_client`` argument is used only by ``invalidate_tokens``, which
  replaces the recorded tokens in one round trip and forgets them.
- ``handle_flush``, ``handle_commit`` and ``handle_rollback`` are the
  listeners ``alkey.events.bind`` installs, for sessions bound by hand; they
  use the session's own change set and savepoint marks.  Prefer ``bind``.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from . import _native
from .constants import GLOBAL_WRITE_TOKEN
from .events import _default_binding, send
from .utils import get_object_id

__all__ = [
    'clear_changed',
    'handle_commit',
    'handle_flush',
    'handle_rollback',
    'invalidate_tokens',
    'record_changed',
]

_lock = threading.Lock()
_changes: dict[Any, Any] = {}


def record_changed(redis_client: Any, session_id: Any, instances: Iterable[Any],
                   relation_oids: Iterable[str] | None = None) -> None:
    """Record instances (with their tables and the global token) and extra
    identifiers as changed under ``session_id``."""
    oids: dict[str, None] = {}
    for instance in instances:
        oid = get_object_id(instance)
        if not isinstance(oid, str):
            raise TypeError(f'cannot record {instance!r}: not a mapped instance '
                            f'or identifier')
        oids[oid] = None
        if _native.valid_object_id(oid):
            oids[oid.split('#', 1)[0] + '#*'] = None
    for oid in relation_oids or ():
        oids[oid] = None
    if oids:
        oids[GLOBAL_WRITE_TOKEN] = None
    with _lock:
        changes = _changes.get(session_id)
        if changes is None:
            changes = _changes[session_id] = _native.ChangeSet()
    changes.update(oids)


def invalidate_tokens(redis_client: Any, session_id: Any) -> int:
    """Replace the tokens recorded under ``session_id`` (one round trip) and
    forget them; returns how many.  Raises when Redis fails (the records are
    then kept)."""
    with _lock:
        changes = _changes.get(session_id)
    if changes is None or not len(changes):
        return 0
    count = send(redis_client, changes.oids())
    with _lock:
        _changes.pop(session_id, None)
    return count


def clear_changed(redis_client: Any, session_id: Any) -> None:
    """Forget what was recorded under ``session_id``."""
    with _lock:
        _changes.pop(session_id, None)


def handle_flush(session: Any, flush_context: Any = None) -> None:
    """Record what a flush changed (an ``after_flush`` listener)."""
    _default_binding.after_flush(session, flush_context)


def handle_commit(session: Any) -> None:
    """Send what the outermost commit made (an ``after_commit`` listener)."""
    _default_binding.after_commit(session)


def handle_rollback(session: Any, previous_transaction: Any) -> None:
    """Forget what a rolled-back transaction or SAVEPOINT recorded (an
    ``after_soft_rollback`` listener)."""
    _default_binding.after_soft_rollback(session, previous_transaction)


