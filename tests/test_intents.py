"""Write-ahead intents (bind(..., write_ahead=True)): a process that dies
after its database commit and before its invalidation leaves an intent in
Redis, and another process delivers it.

The deaths are real: a forked child commits through a bound session and
calls os._exit() from an after_commit listener that runs before alkey's,
so its database commit is done and its pipeline never sent.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import pytest
from sqlalchemy import event, text, update
from sqlalchemy.orm import sessionmaker

from alkey import _intents, events
from alkey.cache import get_token
from alkey.constants import TOKEN_NAMESPACE
from tests.models import User
from tests.test_concurrency import fork, wait_children

INTENTS = _intents.key(TOKEN_NAMESPACE)


@pytest.fixture
def fast_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_intents, 'SWEEP_INTERVAL', 0.05)


@pytest.fixture
def AheadMaker(engine: Any, client: Any, fast_sweeps: None) -> Iterator[Any]:
    maker = sessionmaker(engine)
    events.bind(maker, redis_client=client, write_ahead=True)
    yield maker
    events.unbind(maker)


@pytest.fixture
def users(engine: Any) -> None:
    from sqlalchemy.orm import Session
    with Session(engine) as s:
        s.add_all([User(id=1, name='ann'), User(id=2, name='bob')])
        s.commit()


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_the_intent_is_in_redis_during_the_database_commit_and_gone_after(
        AheadMaker, users, client, server, engine):
    seen = []

    @event.listens_for(engine, 'commit')
    def during(conn):  # after alkey's own commit listener
        seen.append([m.decode() for m in client.execute_command('ZRANGE', INTENTS, '0', '-1')])

    try:
        server.reset_stats()
        with AheadMaker() as s:
            s.get(User, 1).name = 'changed'
            s.commit()
    finally:
        event.remove(engine, 'commit', during)
    # One ZADD before the commit; after it one MULTI/EXEC of the SETs and the ZREM
    # (and this test's ZRANGE; the sweeper's ZRANGEBYSCOREs left out).
    counts = server.command_counts()
    counts.pop('zrangebyscore', None)
    assert counts == {'zadd': 1, 'multi': 1, 'set': 3, 'zrem': 1, 'exec': 1, 'zrange': 1}
    assert len(seen) == 1 and len(seen[0]) == 1
    assert set(seen[0][0].split('\n')[1:]) == {'alkey:users#1', 'alkey:users#*', 'alkey:*#*'}
    assert client.execute_command('ZCARD', INTENTS) == 0


def test_a_read_only_commit_writes_no_intent(AheadMaker, users, server):
    server.reset_stats()
    with AheadMaker() as s:
        s.get(User, 1)
        s.commit()
    counts = server.command_counts()
    counts.pop('zrangebyscore', None)  # the sweeper's
    assert counts == {}


def _die_after_commit(maker: Any, engine: Any) -> None:
    """In a forked child: commit a change to user 1, then die before alkey
    sends anything."""
    engine.dispose(close=False)

    @event.listens_for(maker, 'after_commit', insert=True)  # before alkey's
    def die(_session):
        os._exit(0)

    session = maker()
    session.get(User, 1).name = 'changed by a dying process'
    session.commit()
    os._exit(3)  # not reached: the listener exits


@pytest.mark.parametrize('write_ahead', [True, False])
def test_a_process_dying_between_commit_and_invalidation(
        write_ahead, engine, client, users, monkeypatch, fast_sweeps, server):
    monkeypatch.setattr(_intents, 'GRACE', 1.0)  # inherited by the child
    maker = sessionmaker(engine)
    events.bind(maker, redis_client=client, write_ahead=write_ahead)
    try:
        before = get_token(client, 'alkey:users#1')
        server.reset_stats()
        engine.dispose()  # no database connection crosses the fork
        pid = fork()
        if pid == 0:
            _die_after_commit(maker, engine)
        assert wait_children([pid]) == {pid: 0}
        died = time.monotonic()
        with engine.connect() as conn:  # the commit happened
            assert conn.execute(text('SELECT name FROM users WHERE id = 1')).scalar() \
                == 'changed by a dying process'
        # Nothing invalidated after the commit: the gap the intent covers.
        if time.monotonic() - died < 0.5:
            assert get_token(client, 'alkey:users#1') == before
        if write_ahead:
            # This process's sweeper finds the dead one's intent.
            assert _wait_for(lambda: get_token(client, 'alkey:users#1') != before)
            assert _wait_for(lambda: client.execute_command('ZCARD', INTENTS) == 0)
        else:
            time.sleep(1.5)  # past the grace and a few sweeps
            assert get_token(client, 'alkey:users#1') == before  # stale: the gap
    finally:
        events.unbind(maker)


def test_an_intent_is_not_swept_before_it_is_due(AheadMaker, users, client, server, engine):
    # A commit in flight elsewhere: its intent is written, not yet due.
    intent = _intents.member(['alkey:users#2'])
    _intents.write(client, TOKEN_NAMESPACE, intent)
    before = get_token(client, 'alkey:users#2')
    time.sleep(0.3)  # several sweeps
    assert get_token(client, 'alkey:users#2') == before
    assert client.execute_command('ZCARD', INTENTS) == 1


def test_redis_refusing_writes_at_delivery_keeps_the_intent(
        AheadMaker, users, client, server, caplog):
    # The intent is written; then Redis runs out of memory: the pipeline's
    # SETs are refused, and so is the intent's removal (one transaction).
    before = get_token(client, 'alkey:users#1')
    session = AheadMaker()
    session.get(User, 1).name = 'changed'

    def out_of_memory(_session):
        server.config_set('maxmemory-policy', 'noeviction')
        server.config_set('maxmemory', '1')

    # On the maker, first: before alkey's own after_commit listener.
    event.listen(AheadMaker, 'after_commit', out_of_memory, insert=True)
    try:
        session.commit()  # does not raise
        assert client.execute_command('ZCARD', INTENTS) == 1
        assert get_token(client, 'alkey:users#1') == before
    finally:
        server.config_set('maxmemory', '0')
        event.remove(AheadMaker, 'after_commit', out_of_memory)
        session.close()
    from alkey import _pending
    assert _wait_for(lambda: _pending.count() == 0)  # the retry delivers it
    assert get_token(client, 'alkey:users#1') != before


def test_no_intent_is_attempted_while_the_binding_has_work_pending(
        AheadMaker, users, client, server):
    from alkey import _pending
    binding = events._bindings[AheadMaker]
    _pending.add(binding, binding.sender, ['alkey:users#2'])
    server.reset_stats()
    with AheadMaker() as s:
        s.get(User, 1).name = 'changed'
        s.commit()
    counts = server.command_counts()
    counts.pop('zrangebyscore', None)  # the sweeper's
    assert 'zadd' not in counts and counts['set'] == 4  # the pending one carried along


def test_a_malformed_intent_is_removed_and_delivers_nothing(AheadMaker, users, client, server):
    before = get_token(client, 'alkey:users#1')
    client.execute_command('ZADD', INTENTS, '0', 'id\nnot an identifier\nalkey:users#1')
    assert _wait_for(lambda: client.execute_command('ZCARD', INTENTS) == 0)
    assert get_token(client, 'alkey:users#1') == before


def test_a_huge_intent_names_everything():
    oids = [f'alkey:users#{i}' for i in range(_intents.MAX_IDENTIFIERS + 1)]
    assert _intents.member(oids).split('\n')[1:] == ['alkey:*#!', 'alkey:*#*']
    assert _intents.member(oids[:3]).split('\n')[1:] == oids[:3]


def test_core_writes_on_a_bare_connection_carry_the_intent_in_their_pipelines(
        AheadMaker, users, client, server, engine):
    server.reset_stats()
    with engine.begin() as conn:
        conn.execute(update(User.__table__).where(User.__table__.c.id == 2).values(name='x'))
    # Before the commit: the SETs and the ZADD in one pipeline; after it
    # (the connection's check-in): the SETs again and the ZREM.
    counts = server.command_counts()
    assert counts['zadd'] == 1 and counts['zrem'] == 1
    assert client.execute_command('ZCARD', INTENTS) == 0


def test_redis_down_before_the_commit_does_not_stop_it(AheadMaker, users, server, client, caplog):
    before = get_token(client, 'alkey:users#1')
    server.kill()
    with AheadMaker() as s:
        s.get(User, 1).name = 'written while Redis is down'
        s.commit()  # does not raise
    assert any('write-ahead intent' in r.getMessage() for r in caplog.records)
    server.restart()
    from alkey import _pending
    assert _wait_for(lambda: _pending.count() == 0)
    assert get_token(client, 'alkey:users#1') != before


def test_bind_refuses_a_write_ahead_that_is_not_a_bool(engine):
    with pytest.raises(TypeError, match='write_ahead must be True or False'):
        events.bind(sessionmaker(engine), write_ahead='yes')
