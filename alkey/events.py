"""Binding to SQLAlchemy sessions: every committed write invalidates.

``bind(Session)`` (or a ``sessionmaker``, ``scoped_session``, session
instance, ``AsyncSession`` or ``async_sessionmaker``) listens to the
session's flushes and transactions:

- after each flush, the identifiers of the inserted, really updated and
  deleted rows, their tables, the rows they point to through foreign keys
  (old and new) and the global write token are recorded in the session's
  change set, in memory, without a Redis round trip;
- a SAVEPOINT that rolls back forgets what was recorded since it began; one
  that is released hands its records to its parent;
- the outermost commit replaces all the recorded tokens in one pipeline (one
  round trip) after the database has committed; a rollback forgets them;
- with ``write_ahead=True``, an intent naming them is written to Redis just
  before the database commits, removed by that pipeline, and swept by other
  processes if this one dies in between (see alkey._intents).
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import event, inspect
from sqlalchemy.orm import InstanceState, Mapper, Session, scoped_session, sessionmaker
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_CHANGE, PASSIVE_NO_INITIALIZE
from sqlalchemy.orm.interfaces import MANYTOONE, ONETOMANY

from . import _dml, _intents, _native, _pending, _stats
from .client import get_redis_client
from .constants import GLOBAL_WRITE_TOKEN, MAX_CACHE_DURATION, TOKEN_NAMESPACE
from .utils import _format_pk, _table_info, get_object_id, get_table_id

__all__ = [
    'bind',
    'changes_of',
    'invalidate',
    'send',
    'unbind',
]

logger = logging.getLogger('alkey')

_STATE = '_alkey_changes'


class _SessionChanges:
    """What one session has changed in its current transaction."""

    __slots__ = ('changes', 'marks', 'released', 'flushing', 'binding', 'intent')

    def __init__(self) -> None:
        self.changes = _native.ChangeSet()
        self.marks: dict[int, int] = {}    # id(SAVEPOINT transaction) -> mark
        self.released: set[int] = set()    # SAVEPOINTs committed, not yet ended
        self.flushing = False              # the unit of work's own statements
        self.binding: _Binding | None = None  # who delivers (set at begin)
        self.intent: str | None = None     # the write-ahead intent written


def changes_of(session: Any, create: bool = False) -> Any:
    """The change set (an ``alkey._native.ChangeSet``) of ``session``'s
    current transaction, or None when it has recorded nothing."""
    session = _sync_session(session)
    state = session.info.get(_STATE)
    if state is None:
        if not create:
            return None
        state = session.info[_STATE] = _SessionChanges()
    return state.changes


# --------------------------------------------------------------------------
# Sending


def send(redis_client: Any, oids: list[str], namespace: str = TOKEN_NAMESPACE,
         duration: int = MAX_CACHE_DURATION, extra: list[tuple[Any, ...]] | None = None) -> int:
    """Replace the tokens of ``oids`` in one round trip; returns how many.
    ``extra`` commands go in the same pipeline.  Raises when Redis fails."""
    if not oids:
        return 0
    if isinstance(redis_client, _native.Client):
        return _native.invalidate_tokens(redis_client, oids, namespace, duration, extra)
    # With extra commands, one MULTI/EXEC: they never run without the SETs.
    pipe = redis_client.pipeline(transaction=bool(extra))
    for oid in oids:
        pipe.set(f'{namespace}:{oid}', _native.random_token(), ex=duration)
    for command in extra or ():
        pipe.execute_command(*command)
    return _stats.execute_invalidation(pipe, len(oids))


# --------------------------------------------------------------------------
# What a flush changed


_MISSING = object()
# Mapper -> its parent links; emptied when mappers are (re)configured.
_parents_cache: 'weakref.WeakKeyDictionary[Mapper[Any], list[Any]]' = weakref.WeakKeyDictionary()


@event.listens_for(Mapper, 'after_configured')
def _forget_parent_links() -> None:
    _parents_cache.clear()
    _plans.clear()
    _dml.tables.reset()


def _parent_links(mapper: Mapper[Any]) -> list[tuple[Mapper[Any], list[Any], bool]]:
    """For a child mapper: (parent mapper, [(child attribute key, parent
    column)...], whether the parent columns are the parent's whole primary
    key) for each relationship through which its rows point to parents."""
    cached = _parents_cache.get(mapper)
    if cached is not None:
        return cached
    links = []
    seen = set()
    for other in mapper.registry.mappers:
        for rel in other.relationships:
            if rel.secondary is not None:
                continue
            if rel.direction is MANYTOONE and mapper.isa(rel.parent):
                parent_mapper = rel.mapper
            elif rel.direction is ONETOMANY and mapper.isa(rel.mapper):
                parent_mapper = rel.parent
            else:
                continue
            pairs = []
            for parent_col, child_col in rel.synchronize_pairs:
                try:
                    prop = mapper.get_property_by_column(child_col)
                except Exception:  # noqa: BLE001 -- column not mapped here
                    pairs = []
                    break
                pairs.append((prop.key, parent_col))
            if not pairs:
                continue
            signature = (parent_mapper.base_mapper,
                         tuple((k, c.key, c.table.fullname) for k, c in pairs))
            if signature in seen:
                continue
            seen.add(signature)
            pk = list(parent_mapper.primary_key)
            whole = (len(pairs) == len(pk)
                     and {id(c) for _, c in pairs} == {id(c) for c in pk})
            if whole:
                order = {id(c): i for i, c in enumerate(pk)}
                pairs.sort(key=lambda p: order[id(p[1])])
            links.append((parent_mapper, pairs, whole))
    _parents_cache[mapper] = links
    return links


class _Plan:
    """What a flush records for a row of one mapper, worked out once: the
    row's identifier prefix, its tables' identifiers, the attributes that
    hold its primary key, point to parent rows or are collections."""

    __slots__ = ('prefix', 'tables', 'pk_keys', 'links', 'm2o', 'm2m', 'collections')

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.prefix = _table_info(mapper).prefix         # 'alkey:<table>#'
        self.tables = dict.fromkeys(get_table_id(t) for t in mapper.tables)
        self.pk_keys = tuple(mapper.get_property_by_column(c).key
                             for c in mapper.primary_key)
        # (parent row prefix, child attribute keys) or (table token, None).
        self.links: list[tuple[str, tuple[str, ...] | None]] = [
            (_table_info(parent).prefix, tuple(k for k, _ in pairs)) if whole
            else (get_table_id(parent), None)
            for parent, pairs, whole in _parent_links(mapper)]
        self.m2o = tuple(rel.key for rel in mapper.relationships
                         if rel.direction is MANYTOONE)
        self.m2m = tuple((rel.key, get_table_id(rel.secondary))
                         for rel in mapper.relationships if rel.secondary is not None)
        self.collections = frozenset(
            attr.key for attr in mapper.class_manager.attributes
            if hasattr(attr.impl, 'get_collection'))


# Mapper -> its _Plan; emptied when mappers are (re)configured.
_plans: 'weakref.WeakKeyDictionary[Mapper[Any], _Plan]' = weakref.WeakKeyDictionary()


def _plan(mapper: Mapper[Any]) -> _Plan:
    plan = _plans.get(mapper)
    if plan is None:
        plan = _plans[mapper] = _Plan(mapper)
    return plan


def _row_oid(prefix: str, values: tuple[Any, ...]) -> str | None:
    if len(values) == 1 and type(values[0]) is int:  # the usual key
        return prefix + int.__repr__(values[0])
    if any(v is None for v in values):
        return None
    return prefix + _format_pk(values)


# Only an attribute with an entry in committed_state can have a change
# (SQLAlchemy's History.from_scalar_attribute and from_object_attribute
# report anything else as unchanged), so the recorder asks for the history
# of those alone: the answers are those of session.is_modified() and
# state.attrs[key].history, for a fraction of the calls.

def _modified(state: InstanceState[Any], plan: _Plan) -> bool:
    """session.is_modified(obj, include_collections=False), from the
    attributes this flush can have changed."""
    dict_ = state.dict
    manager = state.manager
    for key in state.committed_state:
        if key in plan.collections:
            continue
        added, _, deleted = manager[key].impl.get_history(state, dict_, NO_CHANGE)
        if added or deleted:
            return True
    return False


def _value(state: InstanceState[Any], key: str) -> tuple[Any, Any]:
    """(current value, old value) of an attribute, without loading it;
    _MISSING where there is none."""
    if key in state.committed_state:
        history = state.get_history(key, PASSIVE_NO_INITIALIZE)
        current = history.added or history.unchanged
        return (current[0] if current else _MISSING,
                history.deleted[0] if history.deleted else _MISSING)
    return state.dict.get(key, _MISSING), _MISSING


def _record_parents(state: InstanceState[Any], plan: _Plan, out: dict[str, None]) -> None:
    for target, keys in plan.links:
        if keys is None:
            out[target] = None  # an FK to a parent's non-key column
            continue
        news = []
        olds = []
        for key in keys:
            new, old = _value(state, key)
            if new is _MISSING and old is _MISSING:
                break  # not loaded: unknown
            news.append(new)
            olds.append(old)
        else:
            if _MISSING not in news:
                oid = _row_oid(target, tuple(news))
                if oid:
                    out[oid] = None
            if any(o is not _MISSING for o in olds):
                old_values = tuple(o if o is not _MISSING else n
                                   for o, n in zip(olds, news))
                if _MISSING not in old_values:
                    oid = _row_oid(target, old_values)
                    if oid:
                        out[oid] = None
    # Parents named by many-to-one relationship history (the objects).
    committed = state.committed_state
    for key in plan.m2o:
        if key not in committed:
            continue
        history = state.get_history(key, PASSIVE_NO_INITIALIZE)
        for obj in (*history.deleted, *history.added):
            if obj is not None:
                oid = get_object_id(obj)
                if isinstance(oid, str):
                    out[oid] = None


def _record_secondaries(state: InstanceState[Any], plan: _Plan, out: dict[str, None]) -> None:
    """Many-to-many collection changes: both ends and the association table."""
    for key, secondary in plan.m2m:
        history = state.get_history(key, PASSIVE_NO_INITIALIZE)
        changed = (*history.added, *history.deleted)
        if not changed:
            continue
        out[secondary] = None
        out[get_object_id(state.obj())] = None
        for obj in changed:
            oid = get_object_id(obj)
            if isinstance(oid, str):
                out[oid] = None


def _record_row(state: InstanceState[Any], plan: _Plan, out: dict[str, None],
                deleted: bool = False) -> None:
    key = state.key
    if key is not None:
        out[_row_oid(plan.prefix, key[1]) or plan.prefix + '*'] = None
    if not deleted:
        # A new row, or a primary key changed by this flush: its new key
        # too.  (Otherwise it is the identity's, recorded just above.)
        dict_ = state.dict
        pk = tuple(dict_.get(k) for k in plan.pk_keys)
        if key is None or pk != key[1]:
            oid = _row_oid(plan.prefix, pk)
            if oid:
                out[oid] = None
    out.update(plan.tables)
    _record_parents(state, plan, out)


def _flushed(session: Session) -> dict[str, None]:
    """The identifiers a flush changed (called in after_flush, when the
    session's lists and the attribute histories still show the flush)."""
    out: dict[str, None] = {}
    for obj in session.new:
        state = instance_state(obj)
        _record_row(state, _plan(state.mapper), out)
    for obj in session.deleted:
        state = instance_state(obj)
        _record_row(state, _plan(state.mapper), out, deleted=True)
    for obj in session.dirty:
        state = instance_state(obj)
        plan = _plan(state.mapper)
        if _modified(state, plan):
            _record_row(state, plan, out)
        if plan.m2m:
            _record_secondaries(state, plan, out)
    if out:
        out[GLOBAL_WRITE_TOKEN] = None
    return out


# --------------------------------------------------------------------------
# The listeners


def _sync_session(session: Any) -> Session:
    return getattr(session, 'sync_session', session)


def _boundary(transaction: Any) -> Any:
    """The SAVEPOINT or root transaction a (sub)transaction belongs to."""
    while transaction.parent is not None and not transaction.nested:
        transaction = transaction.parent
    return transaction


class _Binding:
    """The listeners of one ``bind()`` call and where they send."""

    def __init__(self, redis_client: Any = None, namespace: str | None = None,
                 duration: int | None = None, settle_delay: float | None = None,
                 write_ahead: bool = False) -> None:
        if settle_delay is not None and not settle_delay > 0:
            raise ValueError(f'settle_delay must be a number of seconds above 0, '
                             f'got {settle_delay!r}')
        if not isinstance(write_ahead, bool):
            raise TypeError(f'write_ahead must be True or False, got {write_ahead!r}')
        self.settle_delay = settle_delay
        self.write_ahead = write_ahead
        self.redis_client = redis_client
        self.namespace = namespace or TOKEN_NAMESPACE
        self.duration = int(duration or MAX_CACHE_DURATION)
        self.listeners: list[tuple[str, Callable[..., Any]]] = [
            ('before_flush', self.before_flush),
            ('after_flush', self.after_flush),
            ('after_flush_postexec', self.after_flush_postexec),
            ('after_begin', self.after_begin),
            ('after_transaction_create', self.after_transaction_create),
            ('after_commit', self.after_commit),
            ('after_transaction_end', self.after_transaction_end),
        ]

    def client(self) -> Any:
        return self.redis_client if self.redis_client is not None else get_redis_client()

    def state(self, session: Session) -> _SessionChanges:
        state = session.info.get(_STATE)
        if state is None:
            state = session.info[_STATE] = _SessionChanges()
        return state

    def before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        self.state(session).flushing = True

    def after_flush(self, session: Session, flush_context: Any) -> None:
        changed = _flushed(session)
        if changed:
            self.state(session).changes.update(changed)

    def after_flush_postexec(self, session: Session, flush_context: Any) -> None:
        self.state(session).flushing = False

    def after_begin(self, session: Session, transaction: Any, connection: Any) -> None:
        # Statements run on this connection belong to the session's
        # transaction (bulk, Core and text writes through session.execute()
        # or session.connection()).
        _install_engine_listeners()
        if connection not in _sessions:  # listeners installed just now
            _on_any_session_begin(session, transaction, connection)
        self.state(session).binding = self

    def after_transaction_create(self, session: Session, transaction: Any) -> None:
        if transaction.nested:
            state = self.state(session)
            state.marks.setdefault(id(transaction), state.changes.mark())

    def after_soft_rollback(self, session: Session, previous: Any) -> None:
        """Forget everything when the outermost transaction rolls back.
        (SAVEPOINTs are settled in after_transaction_end, which SQLAlchemy
        calls first.)  Only for sessions bound by hand with the seed's
        ``handle_rollback``."""
        state = session.info.get(_STATE)
        if state is not None and _boundary(previous).parent is None:
            state.changes.clear()
            state.marks.clear()
            state.released.clear()

    def after_commit(self, session: Session) -> None:
        nested = session.get_nested_transaction()
        if nested is not None:
            # A released SAVEPOINT: its records stay, now its parent's.
            state = session.info.get(_STATE)
            if state is not None:
                state.released.add(id(nested))
            return
        state = session.info.get(_STATE)
        if state is None or not len(state.changes):
            return
        oids = state.changes.oids()
        state.changes.clear()
        intent, state.intent = state.intent, None
        self.deliver(oids, 'a commit',
                     [_intents.removal(self.namespace, intent)] if intent else None)

    def sender(self, oids: list[str]) -> Any:
        return send(self.client(), oids, self.namespace, self.duration)

    def write_intent(self, oids: list[str]) -> str | None:
        """Before a database commit: the write-ahead intent naming
        ``oids``, written to Redis (None when this binding writes none or
        Redis fails: the commit goes on, its delivery unprotected)."""
        if not self.write_ahead or not oids:
            return None
        if _pending.has(self):
            # Redis failed a moment ago: do not hold the database
            # transaction's locks for a timeout (the commit's delivery is
            # kept pending, unprotected, as when no intent can be written).
            return None
        intent = _intents.member(oids)
        try:
            _intents.write(self.client(), self.namespace, intent)
        except Exception as exc:  # noqa: BLE001 -- commit() must not raise
            logger.warning('could not write the alkey write-ahead intent of %d '
                           'identifiers before a commit: %s: %s', len(oids),
                           type(exc).__name__, exc)
            return None
        return intent

    def deliver(self, oids: list[str], what: str,
                extra: list[tuple[str, ...]] | None = None) -> None:
        """Send ``oids`` with whatever is still pending for this binding, in
        one pipeline with the ``extra`` commands (an intent's); keep them
        pending when Redis fails (never raises)."""
        oids = list(dict.fromkeys(oids + _pending.take(self))) if _pending.waiting() else oids
        if self.settle_delay:
            _pending.schedule(self, self.sender, oids, self.settle_delay)
        try:
            if extra is None:
                self.sender(oids)
            else:
                send(self.client(), oids, self.namespace, self.duration, extra)
        except Exception as exc:  # noqa: BLE001 -- commit() must not raise
            _pending.add(self, self.sender, oids)
            logger.warning('could not invalidate %d alkey tokens after %s, kept '
                           'pending until Redis answers: %s: %s', len(oids), what,
                           type(exc).__name__, exc)

    def after_transaction_end(self, session: Session, transaction: Any) -> None:
        state = session.info.get(_STATE)
        if state is None:
            return
        # Any transaction ending, a flush's own included, ends a flush (one
        # that failed never reached after_flush_postexec).
        state.flushing = False
        if transaction.nested:
            mark = state.marks.pop(id(transaction), None)
            if id(transaction) in state.released:
                state.released.discard(id(transaction))
            elif mark is not None:
                # Ended without a release: rolled back (or abandoned), so
                # what it recorded never happened.
                state.changes.rollback_to(mark)
        elif transaction.parent is None:
            # Ended without a commit (close(), or a commit already sent):
            # nothing recorded in it may outlive it.
            state.changes.clear()
            state.marks.clear()
            state.released.clear()
            state.flushing = False
            state.intent = None


_default_binding = _Binding()
_bindings: dict[Any, _Binding] = {}
_lock = threading.Lock()


# --------------------------------------------------------------------------
# Statements: bulk ORM, Core and text writes, in sessions or on their own

# Connection (used without a session) -> what its transaction wrote.
_loose: 'weakref.WeakKeyDictionary[Any, _SessionChanges]' = weakref.WeakKeyDictionary()
_POST = '_alkey_after_commit'
_engine_listeners_installed = False
#: Sends what connections used without a session wrote (the last bind()
#: given a client, or the default).
_loose_binding: list[_Binding] = [_default_binding]


# Connection -> weak reference to the session, bound or not, whose
# transaction uses it (statements run on it belong to that transaction:
# bulk, Core and text writes through session.execute() or
# session.connection()).  Writes through a session alkey is not bound to
# are that session's business.
_sessions: 'weakref.WeakKeyDictionary[Any, Any]' = weakref.WeakKeyDictionary()
_SEEN = '_alkey_connections'


def _on_any_session_begin(session: Any, transaction: Any, connection: Any) -> None:
    _sessions[connection] = weakref.ref(session)
    session.info.setdefault(_SEEN, []).append(connection)


def _on_any_session_end(session: Any, transaction: Any) -> None:
    if transaction.parent is None:
        for connection in session.info.pop(_SEEN, ()):
            _sessions.pop(connection, None)
        state = session.info.get(_STATE)
        if state is not None:
            state.binding = None  # the next begin says whether it is still bound


_UNBOUND = object()


def _owner(conn: Any) -> Any:
    """The change state of the bound session whose transaction uses
    ``conn``; _UNBOUND for a session alkey is not bound to; None for a
    connection used without a session."""
    ref = _sessions.get(conn)
    session = ref() if ref is not None else None
    if session is None:
        return None
    state = session.info.get(_STATE)
    if state is None or state.binding is None:
        return _UNBOUND
    return state


def _autocommit(conn: Any) -> bool:
    try:
        return conn.get_execution_options().get('isolation_level') == 'AUTOCOMMIT' \
            or conn.default_isolation_level == 'AUTOCOMMIT'
    except Exception:  # noqa: BLE001 -- a closed or odd connection
        return False


def _send_loose(oids: list[str], extra: list[tuple[str, ...]] | None = None) -> None:
    _loose_binding[-1].deliver(oids, 'a write', extra)


def _on_after_execute(conn: Any, clauseelement: Any, multiparams: Any, params: Any,
                      execution_options: Any, result: Any) -> None:
    state = _owner(conn)
    if state is _UNBOUND:
        return  # a session alkey is not bound to
    if state is not None and state.flushing:
        return  # a flush's own INSERT/UPDATE/DELETE: after_flush names the rows
    out: dict[str, None] = {}
    _dml.statement_targets(clauseelement, out)
    if not out:
        return
    if state is not None:
        state.changes.update(out)
    elif _autocommit(conn) or not conn.in_transaction():
        _send_loose(list(out))
    else:
        loose = _loose.get(conn)
        if loose is None:
            loose = _loose[conn] = _SessionChanges()
        loose.changes.update(out)


def _on_commit(conn: Any) -> None:
    """A connection is about to commit.

    A session's (bound with ``write_ahead``): its intent is written now,
    when every flush is done.  One used without a session: SQLAlchemy has
    no event after the database commit, so the tokens are replaced now and
    once more when the connection begins again or goes back to the pool: a
    reader in between cannot keep old data under the new tokens.  (With
    ``write_ahead``, the first pipeline writes the intent and the second
    removes it.)"""
    state = _owner(conn)
    if state is not None:
        if (state is not _UNBOUND and state.intent is None
                and state.binding.write_ahead and len(state.changes)):
            state.intent = state.binding.write_intent(state.changes.oids())
        return
    loose = _loose.pop(conn, None)
    if loose is None or not len(loose.changes):
        return
    oids = loose.changes.oids()
    namespace = _loose_binding[-1].namespace
    if _loose_binding[-1].write_ahead:
        intent = _intents.member(oids)
        _send_loose(oids, [_intents.addition(namespace, intent)])
        conn.info[_POST] = (oids, [_intents.removal(namespace, intent)])
    else:
        _send_loose(oids)
        conn.info[_POST] = (oids, None)


def _deliver_post(info: Any) -> None:
    post = info.pop(_POST, None) if info is not None else None
    if post:
        _send_loose(*post)


def _on_begin(conn: Any) -> None:
    _deliver_post(conn.info)


def _on_checkin(dbapi_connection: Any, connection_record: Any) -> None:
    _deliver_post(getattr(connection_record, 'info', None))


def _on_rollback(conn: Any) -> None:
    _loose.pop(conn, None)


def _on_savepoint(conn: Any, name: str) -> None:
    loose = _loose.get(conn)
    if loose is None:
        loose = _loose[conn] = _SessionChanges()
    loose.marks[hash(name)] = loose.changes.mark()


def _on_rollback_savepoint(conn: Any, name: str, context: Any) -> None:
    loose = _loose.get(conn)
    if loose is not None:
        mark = loose.marks.pop(hash(name), None)
        if mark is not None:
            loose.changes.rollback_to(mark)


def _on_release_savepoint(conn: Any, name: str, context: Any) -> None:
    loose = _loose.get(conn)
    if loose is not None:
        loose.marks.pop(hash(name), None)


def _install_engine_listeners() -> None:
    global _engine_listeners_installed
    if _engine_listeners_installed:
        return
    with _lock:
        if _engine_listeners_installed:
            return
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool
        event.listen(Engine, 'after_execute', _on_after_execute)
        event.listen(Engine, 'commit', _on_commit)
        event.listen(Engine, 'rollback', _on_rollback)
        event.listen(Engine, 'begin', _on_begin)
        event.listen(Engine, 'savepoint', _on_savepoint)
        event.listen(Engine, 'rollback_savepoint', _on_rollback_savepoint)
        event.listen(Engine, 'release_savepoint', _on_release_savepoint)
        event.listen(Pool, 'checkin', _on_checkin)
        event.listen(Session, 'after_begin', _on_any_session_begin)
        event.listen(Session, 'after_transaction_end', _on_any_session_end)
        _engine_listeners_installed = True


_ENGINE_LISTENERS = (
    ('Engine', 'after_execute', _on_after_execute), ('Engine', 'commit', _on_commit),
    ('Engine', 'rollback', _on_rollback), ('Engine', 'begin', _on_begin),
    ('Engine', 'savepoint', _on_savepoint),
    ('Engine', 'rollback_savepoint', _on_rollback_savepoint),
    ('Engine', 'release_savepoint', _on_release_savepoint),
    ('Pool', 'checkin', _on_checkin),
    ('Session', 'after_begin', _on_any_session_begin),
    ('Session', 'after_transaction_end', _on_any_session_end),
)


def _remove_engine_listeners() -> None:
    """Called with _lock held when the last binding goes."""
    global _engine_listeners_installed
    if not _engine_listeners_installed:
        return
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool
    classes = {'Engine': Engine, 'Pool': Pool, 'Session': Session}
    for owner, name, fn in _ENGINE_LISTENERS:
        if event.contains(classes[owner], name, fn):
            event.remove(classes[owner], name, fn)
    _engine_listeners_installed = False


def _targets(target: Any) -> Iterator[Any]:
    """What to listen on for a session class, maker, scoped session,
    instance or their async forms."""
    try:
        from sqlalchemy.ext.asyncio import (
            AsyncSession,
            async_scoped_session,
            async_sessionmaker,
        )
    except ImportError:  # pragma: no cover - asyncio extras missing
        AsyncSession = async_sessionmaker = async_scoped_session = ()  # type: ignore
    if isinstance(target, type) and issubclass(target, Session):
        yield target
    elif isinstance(target, (sessionmaker, Session)):
        yield target
    elif isinstance(target, scoped_session):
        yield target.session_factory
    elif AsyncSession and isinstance(target, type) and issubclass(target, AsyncSession):
        yield target.sync_session_class
    elif AsyncSession and isinstance(target, AsyncSession):
        yield target.sync_session
    elif async_sessionmaker and isinstance(target, async_sessionmaker):
        cls = target.kw.get('sync_session_class') or target.class_.sync_session_class
        yield cls
    elif async_scoped_session and isinstance(target, async_scoped_session):
        yield from _targets(target.session_factory)
    else:
        raise TypeError(
            f'alkey.events.bind() needs a Session class, a sessionmaker, a '
            f'scoped_session, a Session or their async forms, not {target!r}')


def bind(target: Any, redis_client: Any = None, namespace: str | None = None,
         duration: int | None = None, settle_delay: float | None = None,
         write_ahead: bool = False) -> Any:
    """Invalidate the tokens of what ``target``'s sessions change, at each
    outermost commit.  Binding the same target again does nothing.
    ``redis_client`` defaults to ``get_redis_client()`` at commit time.

    ``settle_delay`` (seconds) replaces the same tokens once more that long
    after each commit: set it above your read replicas' lag, or the longest
    REPEATABLE READ / SERIALIZABLE reader transaction, so that data such a
    reader fetched from before the commit and cached under the new tokens
    is orphaned too.

    ``write_ahead=True`` closes the window in which a process that dies
    after its database commit and before its invalidation would leave
    other processes' keys stale: an intent is written to Redis before each
    commit (one more round trip), and other processes sweep the intents of
    the dead (alkey._intents)."""
    if not isinstance(write_ahead, bool):
        raise TypeError(f'write_ahead must be True or False, got {write_ahead!r}')
    _install_engine_listeners()
    with _lock:
        for listen_on in _targets(target):
            if listen_on in _bindings:
                continue
            binding = (_default_binding if redis_client is None and namespace is None
                       and duration is None and settle_delay is None and not write_ahead
                       else _Binding(redis_client, namespace, duration, settle_delay,
                                     write_ahead))
            for name, fn in binding.listeners:
                event.listen(listen_on, name, fn)
            _bindings[listen_on] = binding
            if binding is not _default_binding:
                _loose_binding.append(binding)
            if binding.write_ahead:
                _intents.watch(binding)
    return target


def unbind(target: Any) -> None:
    """Undo ``bind(target)``."""
    with _lock:
        for listen_on in _targets(target):
            binding = _bindings.pop(listen_on, None)
            if binding is None:
                continue
            if binding in _loose_binding[1:]:
                _loose_binding.remove(binding)
            if binding.write_ahead:
                _intents.unwatch(binding)
            for name, fn in binding.listeners:
                if event.contains(listen_on, name, fn):
                    event.remove(listen_on, name, fn)
        if not _bindings:
            _remove_engine_listeners()


def _expand(targets: Iterable[Any]) -> list[str]:
    """Identifiers for what invalidate() names: an instance or instance
    identifier (its row, its tables and the global token); a class, Table,
    table name or table identifier (the table's token and epoch, so every
    row's key changes too); the global token."""
    out: dict[str, None] = {}
    for target in targets:
        if isinstance(target, str) and _native.valid_object_id(target):
            out[target] = None
            out[target.rsplit('#', 1)[0] + '#*'] = None
            continue
        if target == GLOBAL_WRITE_TOKEN:
            out[GLOBAL_WRITE_TOKEN] = None
            continue
        if isinstance(target, str) and _native.valid_write_token(target):
            out[target] = None
            out[_dml.epoch_id(target)] = None
            continue
        state = inspect(target, raiseerr=False)
        if state is not None and hasattr(state, 'mapper') and hasattr(state, 'obj'):
            out[get_object_id(target)] = None
            for table in state.mapper.tables:
                out[get_table_id(table)] = None
            continue
        mapper = getattr(state, 'mapper', None) if state is not None else None
        if mapper is not None:
            for table in mapper.tables:
                _dml.table_targets(table, out)
        else:
            _dml.table_targets(target, out)  # a Table or a table name
    if out:
        out[GLOBAL_WRITE_TOKEN] = None
    return list(out)


def invalidate(*targets: Any, session: Any = None, redis_client: Any = None) -> None:
    """Invalidate by hand: instances, classes, tables, table names or
    identifiers.  With ``session``, at its outermost commit (forgotten if it
    rolls back); otherwise at once (raises when Redis fails)."""
    oids = _expand(targets)
    if session is not None:
        session = _sync_session(session)
        state = session.info.get(_STATE)
        if state is None:
            state = session.info[_STATE] = _SessionChanges()
        state.changes.update(oids)
        return
    send(redis_client if redis_client is not None else get_redis_client(), oids)
