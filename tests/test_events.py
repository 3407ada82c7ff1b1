"""Change tracking through real SQLAlchemy sessions on SQLite and PostgreSQL.

Every test runs on both databases.  A key is taken before and after a
commit; "invalidated" means it changed.
"""

from __future__ import annotations

import itertools
import threading
import uuid

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import scoped_session, sessionmaker

import alkey
from alkey import events
from alkey.constants import GLOBAL_WRITE_TOKEN
from tests.models import (
    Animal,
    Base,
    Document,
    Dog,
    Employee,
    Engineer,
    Group,
    Item,
    Membership,
    Order,
    Tag,
    User,
)
from tests.support import Watch

ALL = ('alkey:users#1', 'alkey:users#2', 'alkey:users#3', 'alkey:users#*',
       'alkey:orders#10', 'alkey:orders#*', GLOBAL_WRITE_TOKEN)


def test_update_invalidates_the_row_its_table_and_the_global_token(Maker, seeded, kg):
    watch = Watch(kg, *ALL)
    with Maker() as s:
        s.get(User, 2).name = 'Bob'
        s.commit()
    assert watch.changed() == {'alkey:users#2', 'alkey:users#*', GLOBAL_WRITE_TOKEN}


def test_insert_invalidates_the_new_rows_key_and_table(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:users#4', 'alkey:users#1', 'alkey:users#*')
    with Maker() as s:
        s.add(User(id=4, name='dee'))
        s.commit()
    assert watch.changed() == {'alkey:users#4', 'alkey:users#*'}


def test_delete_invalidates(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:users#3', 'alkey:users#2')
    with Maker() as s:
        s.delete(s.get(User, 3))
        s.commit()
    assert watch.changed() == {'alkey:users#3'}


def test_a_touch_without_a_change_invalidates_nothing_and_sends_nothing(Maker, seeded, kg, server):
    watch = Watch(kg, *ALL)
    server.reset_stats()
    with Maker() as s:
        user = s.get(User, 1)
        user.name = 'ann'  # the same value
        s.flush()
        s.commit()
    assert server.command_counts() == {}
    assert watch.changed() == set()


def test_instances_with_any_kind_of_key_are_invalidated(Maker, seeded, kg):
    with Maker() as s:
        tag = s.get(Tag, 'a#b/c,d:e f')
        doc = s.get(Document, uuid.UUID(int=7))
        member = s.get(Membership, (1, 'admin'))
        watch = Watch(kg, tag, doc, member, s.get(Tag, 'plain'))
        s.delete(tag)
        doc.title = 'new'
        s.delete(member)
        s.commit()
        assert watch.changed() == {tag, doc, member}


def test_joined_inheritance_invalidates_the_shared_identifier_and_every_table(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:employees#20', 'alkey:employees#*', 'alkey:engineers#*')
    with Maker() as s:
        s.get(Engineer, 20).language = 'rust'
        s.commit()
    assert watch.changed() == {'alkey:employees#20', 'alkey:employees#*', 'alkey:engineers#*'}
    with Maker() as s:
        assert kg(s.get(Employee, 20)) == kg(s.get(Engineer, 20)) == kg('alkey:employees#20')


def test_single_table_inheritance(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:animals#30', 'alkey:animals#*', Dog, Animal)
    with Maker() as s:
        s.get(Dog, 30).name = 'max'
        s.commit()
    assert watch.changed() == {'alkey:animals#30', 'alkey:animals#*', Dog, Animal}


def test_many_to_one_by_foreign_key_invalidates_the_parent(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#2')
    with Maker() as s:
        s.add(Order(id=11, user_id=2))  # the relationship is never touched
        s.commit()
    assert watch.changed() == {'alkey:users#2'}


def test_moving_a_child_invalidates_old_and_new_parent(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#2', 'alkey:users#3')
    with Maker() as s:
        order = s.get(Order, 10)
        order.user = s.get(User, 3)  # by attribute
        s.commit()
    assert watch.changed() == {'alkey:users#1', 'alkey:users#3'}
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#2', 'alkey:users#3')
    with Maker() as s:
        s.get(Order, 10).user_id = 2  # by foreign key
        s.commit()
    assert watch.changed() == {'alkey:users#2', 'alkey:users#3'}


def test_deleting_a_child_invalidates_its_parent(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#2')
    with Maker() as s:
        s.delete(s.get(Order, 10))
        s.commit()
    assert watch.changed() == {'alkey:users#1'}


def test_one_to_many_only_parent_with_a_string_key(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:tags#s:plain')
    with Maker() as s:
        s.add(Item(id=1, tag_name='plain'))
        s.commit()
    assert watch.changed() == {'alkey:tags#s:plain'}


def test_many_to_many_changes_invalidate_both_ends(Maker, seeded, kg):
    watch = Watch(kg, 'alkey:groups#40', 'alkey:users#2', 'alkey:users#1',
                  'alkey:group_members#*')
    with Maker() as s:
        group = s.get(Group, 40)
        group.members.append(s.get(User, 2))
        s.commit()
    assert watch.changed() == {'alkey:groups#40', 'alkey:users#2', 'alkey:group_members#*'}


def test_rollback_invalidates_nothing(Maker, seeded, kg, server):
    watch = Watch(kg, *ALL)
    server.reset_stats()
    with Maker() as s:
        s.get(User, 1).name = 'x'
        s.add(Order(id=12, user_id=2))
        s.flush()
        s.rollback()
    assert server.command_counts() == {}
    assert watch.changed() == set()


def test_close_without_commit_invalidates_nothing(Maker, seeded, kg):
    watch = Watch(kg, *ALL)
    s = Maker()
    s.get(User, 1).name = 'x'
    s.flush()
    s.close()
    with Maker() as s2:
        s2.get(User, 2).name = 'y'
        s2.commit()
    assert 'alkey:users#1' not in watch.changed()


@pytest.mark.parametrize('outcomes', list(itertools.product(('release', 'rollback'), repeat=3)))
def test_savepoints_three_deep(Maker, seeded, kg, outcomes):
    """Row i is changed inside savepoint i (1 outermost); row 0 before any.
    A row's change survives iff every savepoint around it was released."""
    watch = Watch(kg, *(f'alkey:users#{i}' for i in (1, 2, 3)), 'alkey:orders#10')
    with Maker() as s:
        s.get(Order, 10).note = 'root'
        savepoints = []
        for i in (1, 2, 3):
            savepoints.append(s.begin_nested())
            s.get(User, i).name = f'level {i}'
            s.flush()
        for sp, outcome in reversed(list(zip(savepoints, outcomes))):
            if outcome == 'release':
                sp.commit()
            else:
                sp.rollback()
        s.commit()
    expected = {'alkey:orders#10'}
    for i in (1, 2, 3):
        if all(o == 'release' for o in outcomes[:i]):
            expected.add(f'alkey:users#{i}')
    # The orders row is the child of user 1: user 1 is invalidated by it too.
    expected.add('alkey:users#1')
    assert watch.changed() == expected


def test_releasing_a_savepoint_sends_nothing_until_the_outer_commit(Maker, seeded, kg, server):
    with Maker() as s:
        sp = s.begin_nested()
        s.get(User, 2).name = 'z'
        sp.commit()
        server.reset_stats()
        assert server.command_counts() == {}
        watch = Watch(kg, 'alkey:users#2')
        assert watch.changed() == set()
        s.rollback()
    assert Watch(kg, 'alkey:users#2').before['alkey:users#2'] == watch.before['alkey:users#2']


def test_two_sessions_never_see_each_others_records(Maker, seeded, kg, engine, client, tmp_path):
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#2')
    other = Maker
    if engine.dialect.name == 'sqlite':
        # One writer at a time in a SQLite file: the second session writes
        # to a second database with the same rows.
        second = create_engine(f'sqlite:///{tmp_path}/second.db')
        Base.metadata.create_all(second)
        other = sessionmaker(second)
        events.bind(other, redis_client=client)
        with other() as s:
            s.add(User(id=2, name='bob'))
            s.commit()
        watch = Watch(kg, 'alkey:users#1', 'alkey:users#2')
    s1, s2 = Maker(), other()
    s1.get(User, 1).name = 'one'
    s2.get(User, 2).name = 'two'
    s1.flush()
    s2.flush()
    s2.rollback()
    s1.commit()
    s1.close()
    s2.close()
    if other is not Maker:
        events.unbind(other)
    assert watch.changed() == {'alkey:users#1'}


def test_one_pipeline_per_commit_and_none_per_flush(Maker, seeded, server):
    with Maker() as s:
        for i in (1, 2, 3):
            s.get(User, i).name = f'n{i}'
        server.reset_stats()
        s.flush()
        assert server.command_counts() == {}
        s.commit()
    # users#1..3, users#*, the global token, and order 10 is untouched.
    assert server.command_counts() == {'set': 5}


def test_read_only_commit_sends_nothing(Maker, seeded, server):
    server.reset_stats()
    with Maker() as s:
        s.scalars(select(User)).all()
        s.commit()
    assert server.command_counts() == {}


def test_expire_on_commit_false(engine, client, seeded, kg):
    maker = sessionmaker(engine, expire_on_commit=False)
    events.bind(maker, redis_client=client)
    try:
        with maker() as s:
            user = s.get(User, 1)
            before = kg(user)
            user.name = 'kept'
            s.commit()
            assert kg(user) != before
    finally:
        events.unbind(maker)


def test_binding_twice_does_not_double_the_work_and_unbind_undoes(engine, client, seeded, kg, server):
    maker = sessionmaker(engine)
    events.bind(maker, redis_client=client)
    events.bind(maker, redis_client=client)
    with maker() as s:
        server.reset_stats()
        s.get(User, 1).name = 'twice'
        s.commit()
    assert server.command_counts() == {'set': 3}
    events.unbind(maker)
    watch = Watch(kg, 'alkey:users#1')
    server.reset_stats()
    with maker() as s:
        s.get(User, 1).name = 'unbound'
        s.commit()
    assert watch.changed() == set()


def test_scoped_sessions_from_several_threads(engine, client, seeded, kg):
    Scoped = scoped_session(sessionmaker(engine))
    events.bind(Scoped, redis_client=client)
    watch = Watch(kg, *(f'alkey:users#{i}' for i in (1, 2, 3)))
    errors = []

    def work(i):
        try:
            Scoped.get(User, i).name = f'thread {i}'
            if i == 3:
                Scoped.rollback()
            else:
                Scoped.commit()
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            Scoped.remove()

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in (1, 2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        events.unbind(Scoped)
    assert errors == []
    assert watch.changed() == {'alkey:users#1', 'alkey:users#2'}


def test_invalidate_at_once_and_at_commit(Maker, seeded, kg, client):
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#2', 'alkey:users#*', GLOBAL_WRITE_TOKEN)
    alkey.invalidate('alkey:users#1', redis_client=client)
    assert watch.changed() == {'alkey:users#1', 'alkey:users#*', GLOBAL_WRITE_TOKEN}
    watch = Watch(kg, 'alkey:users#2', 'alkey:orders#*')
    with Maker() as s:
        alkey.invalidate(s.get(User, 2), 'orders', session=s)
        assert watch.changed() == set()
        s.commit()
    assert watch.changed() == {'alkey:users#2', 'alkey:orders#*'}
    watch = Watch(kg, 'alkey:users#3')
    with Maker() as s:
        alkey.invalidate('alkey:users#3', session=s)
        s.rollback()
    assert watch.changed() == set()


def test_bind_rejects_what_is_not_a_session():
    with pytest.raises(TypeError, match='sessionmaker'):
        events.bind(object())
    assert alkey.bind_to_events is events.bind


def test_async_session(tmp_path, client, kg):
    pytest.importorskip('aiosqlite')
    import asyncio

    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    async def run():
        engine = create_async_engine(f'sqlite+aiosqlite:///{tmp_path}/async.db')
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        maker = async_sessionmaker(engine)
        events.bind(maker, redis_client=client)
        try:
            async with maker() as s:
                s.add(User(id=1, name='a'))
                await s.commit()
            before = kg('alkey:users#1')
            async with maker() as s:
                user = await s.get(User, 1)
                user.name = 'b'
                await s.commit()
            return before, kg('alkey:users#1')
        finally:
            events.unbind(maker)
            await engine.dispose()

    before, after = asyncio.run(run())
    assert before != after
