"""Redis failing under a commit: nothing raises, nothing is lost, and this
process serves no key a pending invalidation should have changed."""

from __future__ import annotations

import time

import pytest

from alkey import _pending
from tests.models import User
from tests.support import Watch


def wait_delivered(timeout=3.0):
    deadline = time.monotonic() + timeout
    while _pending.count() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _pending.count() == 0


def refuse_writes(server):
    server.config_set('maxmemory', '1')
    server.config_set('maxmemory-policy', 'noeviction')


def test_a_refused_invalidation_stays_pending_and_its_keys_stay_fresh(Maker, seeded, kg, server):
    one, two = kg('alkey:users#1'), kg('alkey:users#2')
    refuse_writes(server)
    with Maker() as s:
        s.get(User, 1).name = 'changed while Redis refuses writes'
        s.commit()  # does not raise
    assert _pending.count() >= 3
    # Reads still work, but user 1's key must not be the old one, nor any
    # key that could be cached and reused.
    first, second = kg('alkey:users#1'), kg('alkey:users#1')
    assert one not in (first, second) and first != second
    assert kg('alkey:users#2') == two
    server.config_set('maxmemory', '0')
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    settled = kg('alkey:users#1')
    assert settled == kg('alkey:users#1') and settled != one
    assert kg('alkey:users#2') == two


def test_a_commit_while_redis_is_down_is_delivered_after_restart(Maker, seeded, server):
    server.kill()
    start = time.monotonic()
    with Maker() as s:
        s.get(User, 2).name = 'changed while Redis is down'
        s.commit()
    assert time.monotonic() - start < 1.0
    assert _pending.count() >= 3
    server.restart()
    assert wait_delivered()
    assert server.admin.exists('alkey.cache.TOKENS:alkey:users#2') == 1


def test_the_next_commit_carries_pending_work_in_its_pipeline(Maker, seeded, kg, server):
    refuse_writes(server)
    with Maker() as s:
        s.get(User, 1).name = 'a'
        s.commit()
    server.config_set('maxmemory', '0')
    with _pending._lock:  # keep the retry thread out of the way
        server.reset_stats()
        with Maker() as s:
            s.get(User, 3).name = 'c'
            s.commit()
        counts = server.command_counts()
    assert _pending.count() == 0
    # users#1 (pending), users#3, users#* and the global token: one pipeline.
    assert counts == {'set': 4}


def test_past_the_limit_everything_is_invalidated(Maker, seeded, kg, server, monkeypatch):
    monkeypatch.setattr(_pending, 'LIMIT', 3)
    watch = Watch(kg, 'alkey:tags#s:plain', 'alkey:orders#10', 'alkey:users#3')
    refuse_writes(server)
    with Maker() as s:
        for i in (1, 2):
            s.get(User, i).name = f'many {i}'
        s.commit()
    assert _pending._all == {'alkey:*#!', 'alkey:*#*'}
    assert watch.changed() == set(watch.targets)  # every key is fresh meanwhile
    server.config_set('maxmemory', '0')
    assert wait_delivered()
    settled = Watch(kg, *watch.targets)
    assert settled.changed() == set()
    assert all(settled.before[t] != watch.before[t] for t in watch.targets)


def test_a_stopped_server_costs_one_timeout_per_commit(Maker, seeded, server):
    server.pause()
    try:
        start = time.monotonic()
        with Maker() as s:
            s.get(User, 1).name = 'paused'
            s.commit()
        assert time.monotonic() - start < 2.0
    finally:
        server.resume()
    assert wait_delivered()


@pytest.mark.parametrize('settle_delay', [None, 0.3])
def test_a_snapshot_reader_cannot_keep_old_data_under_new_tokens(
        engine, client, kg, settle_delay):
    """A REPEATABLE READ reader whose snapshot predates a commit reads old
    data after the tokens changed and caches it under the new key.  Only a
    second replacement after a settle delay orphans that entry."""
    if engine.dialect.name != 'postgresql':
        pytest.skip('needs snapshot isolation across connections (PostgreSQL)')
    from sqlalchemy.orm import sessionmaker

    from alkey import events
    maker = sessionmaker(engine)
    events.bind(maker, redis_client=client, settle_delay=settle_delay)
    cache = {}
    try:
        with maker() as s:
            s.add(User(id=1, name='old'))
            s.commit()
        reader = sessionmaker(engine.execution_options(isolation_level='REPEATABLE READ'))()
        reader.get(User, 1)  # the snapshot is taken here
        with maker() as w:
            w.get(User, 1).name = 'new'
            w.commit()
        key = kg('alkey:users#1')  # after the commit: the new tokens
        reader.expire_all()
        cache[key] = reader.get(User, 1).name  # still 'old': its snapshot
        reader.close()
        time.sleep(1.0)  # the settle delay, plus one retry interval
        assert wait_delivered()
        stale_hit = cache.get(kg('alkey:users#1'))
    finally:
        events.unbind(maker)
    if settle_delay is None:
        assert stale_hit == 'old'  # the window the settle delay closes
    else:
        assert stale_hit is None
