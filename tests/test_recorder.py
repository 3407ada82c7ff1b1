"""The flush recorder against an oracle.

alkey.events records what a flush changed from the attributes SQLAlchemy
holds committed state for (a per-mapper plan, a few history calls per row).
The oracle below asks the slow, public way: session.is_modified() for each
dirty object and the full attribute history of every foreign key and
many-to-one.  Random sequences of writes (touches, real changes, moved
children, primary-key changes, many-to-many edits, inserts, deletes) must
give both the same identifiers at every flush.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.interfaces import MANYTOONE

from alkey import events
from alkey.constants import GLOBAL_WRITE_TOKEN
from alkey.utils import _format_pk, get_object_id, get_table_id
from tests.models import (
    Base,
    Dog,
    Engineer,
    Group,
    Item,
    Membership,
    Order,
    Tag,
    User,
)

_MISSING = object()


def _oracle_values(state: Any, key: str) -> tuple[list[Any], list[Any]]:
    history = state.attrs[key].history
    return list(history.added) + list(history.unchanged), list(history.deleted)


def _oracle_parent(parent: Any, values: tuple[Any, ...]) -> str | None:
    if any(v is None for v in values):
        return None
    return get_table_id(parent.base_mapper.local_table)[:-1] + _format_pk(values)


def _oracle_row(obj: Any, out: dict[str, None], deleted: bool = False) -> None:
    state = inspect(obj)
    mapper = state.mapper
    if state.identity is not None:
        out[get_object_id(obj)] = None
    if not deleted:
        pk = tuple(mapper.primary_key_from_instance(obj))
        if pk != state.identity and all(v is not None for v in pk):
            out[_oracle_parent(mapper, pk)] = None
    for table in mapper.tables:
        out[get_table_id(table)] = None
    for parent, pairs, whole in events._parent_links(mapper):
        if not whole:
            out[get_table_id(parent)] = None
            continue
        news, olds = [], []
        for key, _col in pairs:
            current, old = _oracle_values(state, key)
            if not current and not old:
                break
            news.append(current[0] if current else _MISSING)
            olds.append(old[0] if old else _MISSING)
        else:
            if _MISSING not in news and _oracle_parent(parent, tuple(news)):
                out[_oracle_parent(parent, tuple(news))] = None
            if any(o is not _MISSING for o in olds):
                old_values = tuple(o if o is not _MISSING else n for o, n in zip(olds, news))
                if _MISSING not in old_values and _oracle_parent(parent, old_values):
                    out[_oracle_parent(parent, old_values)] = None
    for rel in mapper.relationships:
        if rel.direction is MANYTOONE:
            history = state.attrs[rel.key].history
            for other in list(history.deleted) + list(history.added):
                if other is not None:
                    out[get_object_id(other)] = None


def _oracle(session: Session) -> set[str]:
    out: dict[str, None] = {}
    for obj in session.new:
        _oracle_row(obj, out)
    for obj in session.deleted:
        _oracle_row(obj, out, deleted=True)
    for obj in session.dirty:
        state = inspect(obj)
        if session.is_modified(obj, include_collections=False):
            _oracle_row(obj, out)
        for rel in state.mapper.relationships:
            if rel.secondary is None:
                continue
            history = state.attrs[rel.key].history
            changed = list(history.added) + list(history.deleted)
            if changed:
                out[get_table_id(rel.secondary)] = None
                out[get_object_id(obj)] = None
                for other in changed:
                    out[get_object_id(other)] = None
    if out:
        out[GLOBAL_WRITE_TOKEN] = None
    return set(out)


def _seed(session: Session) -> None:
    users = [User(id=i, name=f'u{i}') for i in range(1, 4)]
    session.add_all(users)
    session.add_all([Order(id=i, user_id=1 + i % 3, note='n') for i in range(1, 5)])
    session.add_all([Tag(name=n, items=[Item(id=10 * k + j) for j in range(2)])
                     for k, n in enumerate(('a', 'b/c'))])
    session.add_all([Group(id=1, members=users[:2]), Group(id=2, members=[])])
    session.add_all([Membership(user_id=1, role='admin'), Membership(user_id=2, role='x')])
    session.add_all([Engineer(id=1, name='e', language='c'), Dog(id=1, name='rex')])
    session.commit()


def _apply(session: Session, op: tuple[Any, ...], serial: Any) -> None:
    kind, a, b = op
    users = session.query(User).order_by(User.id).all()
    orders = session.query(Order).order_by(Order.id).all()
    if kind == 'touch_user' and users:
        users[a % len(users)].name = users[a % len(users)].name
    elif kind == 'rename_user' and users:
        users[a % len(users)].name = f'v{b}'
    elif kind == 'order_fk' and orders:
        orders[a % len(orders)].user_id = b % 5 or None
    elif kind == 'order_rel' and orders:
        orders[a % len(orders)].user = users[b % len(users)] if users and b % 4 else None
    elif kind == 'order_note' and orders:
        orders[a % len(orders)].note = 'n' if b % 2 else f'm{b}'
    elif kind == 'new_order':
        session.add(Order(id=next(serial), user_id=a % 4 or None))
    elif kind == 'delete_order' and orders:
        session.delete(orders[a % len(orders)])
    elif kind == 'members':
        group = session.get(Group, 1 + a % 2)
        if b % 2 and users:
            user = users[b % len(users)]
            if user not in group.members:
                group.members.append(user)
        elif group.members:
            group.members.pop()
    elif kind == 'role':
        membership = session.query(Membership).order_by(Membership.role).first()
        if membership is not None:
            membership.role = f'r{next(serial)}'
    elif kind == 'item':
        tag = session.get(Tag, 'a' if a % 2 else 'b/c')
        if b % 2:
            tag.items.append(Item(id=next(serial)))
        elif tag.items:
            session.delete(tag.items[0])
    elif kind == 'engineer':
        engineer = session.get(Engineer, 1)
        if engineer is not None:
            engineer.language = f'l{b % 3}'
    elif kind == 'dog':
        dog = session.get(Dog, 1)
        if dog is not None:
            dog.name = 'rex' if b % 2 else f'd{b}'


_OPS = st.tuples(
    st.sampled_from(['touch_user', 'rename_user', 'order_fk', 'order_rel', 'order_note',
                     'new_order', 'delete_order', 'members', 'role', 'item', 'engineer',
                     'dog', 'flush']),
    st.integers(0, 7), st.integers(0, 400))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OPS, min_size=1, max_size=25))
def test_each_flush_records_what_the_oracle_finds(ops: list[tuple[Any, ...]]) -> None:
    engine = create_engine('sqlite://')
    Base.metadata.create_all(engine)
    serial = itertools.count(1000)

    def after_flush(session: Session, flush_context: Any) -> None:
        expected = _oracle(session)
        got = set(events._flushed(session))
        assert got == expected, (ops, got ^ expected)

    with Session(engine, autoflush=False) as session:
        _seed(session)
        event.listen(session, 'after_flush', after_flush)
        for op in ops:
            if op[0] == 'flush':
                session.flush()
            else:
                with session.no_autoflush:
                    _apply(session, op, serial)
        session.flush()
    engine.dispose()


def test_the_oracle_and_the_recorder_see_a_real_change_and_ignore_a_touch() -> None:
    engine = create_engine('sqlite://')
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        _seed(session)
        user = session.get(User, 1)
        user.name = user.name
        assert events._flushed(session) == {} and _oracle(session) == set()
        user.name = 'changed'
        assert set(events._flushed(session)) == _oracle(session) == {
            'alkey:users#1', 'alkey:users#*', GLOBAL_WRITE_TOKEN}
