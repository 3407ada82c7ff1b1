"""alkey.stats(): what each counter counts, checked against what the
suite's redis-server saw (INFO commandstats), on the real failure modes."""

from __future__ import annotations

import json
import os
import time
import warnings

import pytest

import alkey
from alkey import _native, _pending, events
from alkey.cache import CacheKeyGenerator
from alkey.client import parse_url
from tests.models import User

COUNTERS = (
    'tokens_looked_up', 'tokens_found', 'tokens_created', 'tokens_fresh',
    'invalidations_sent', 'invalidations_failed', 'redis_round_trips',
    'redis_errors', 'redis_timeouts', 'redis_connections_opened',
)


def changes(before):
    """The counters that moved since ``before`` (a stats() dict), by how
    much; the pending gauge is left out."""
    after = alkey.stats()
    return {name: after[name] - before[name] for name in COUNTERS
            if after[name] != before[name]}


def wait_delivered(timeout=3.0):
    deadline = time.monotonic() + timeout
    while _pending.count() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _pending.count() == 0


def test_stats_are_the_native_counters_and_the_pending_gauge():
    stats = alkey.stats()
    assert tuple(stats) == COUNTERS + ('invalidations_pending',)
    assert tuple(_native.stats()) == COUNTERS
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    assert 'stats' in alkey.__all__


def test_a_key_with_one_existing_and_two_missing_tokens(server, client, kg):
    kg('alkey:users#1')  # users#1, its table's epoch and the global epoch
    server.reset_stats()
    before = alkey.stats()
    kg('alkey:users#1', 'alkey:users#2', 'alkey:users#3', 'plain')
    # Five tokens: users#1 and the two epochs exist, users#2 and #3 do not.
    # The first round trip is an MGET of all five; the second SET NX for
    # each missing one and an MGET of them, pipelined.
    assert server.command_counts() == {'mget': 2, 'set': 2}
    assert changes(before) == {
        'tokens_looked_up': 5, 'tokens_found': 3, 'tokens_created': 2,
        'redis_round_trips': 2,
    }


def test_a_key_whose_tokens_exist_is_one_round_trip(server, client, kg):
    kg('alkey:users#1', 'alkey:users#*', 'alkey:*#*')
    server.reset_stats()
    before = alkey.stats()
    kg('alkey:users#1', 'alkey:users#*', 'alkey:*#*')
    assert server.command_counts() == {'mget': 1}
    # users#1, users#!, *#!, users#*, *#* (each epoch read once).
    assert changes(before) == {
        'tokens_looked_up': 5, 'tokens_found': 5, 'redis_round_trips': 1,
    }


def test_get_token_and_client_commands_count(server, client):
    before = alkey.stats()
    alkey.cache.get_token(client, 'alkey:users#1')
    client.set('k', 'v')
    client.get('k')
    assert server.command_counts() == {'mget': 2, 'set': 2, 'get': 1}
    assert changes(before) == {
        'tokens_looked_up': 1, 'tokens_created': 1, 'redis_round_trips': 4,
        'redis_connections_opened': 1,  # the client's first command
    }


def test_an_error_reply_is_a_round_trip_and_an_error(server, client):
    client.set('text', 'not a number')
    before = alkey.stats()
    with pytest.raises(alkey.ReplyError):
        client.execute_command('INCR', 'text')
    assert changes(before) == {'redis_round_trips': 1, 'redis_errors': 1}


def test_connections_opened_and_their_handshake(server):
    before = alkey.stats()
    c = alkey.Client(**parse_url(server.url + '/1'))
    try:
        c.ping()
        c.ping()
    finally:
        c.close()
    assert server.command_counts() == {'select': 1, 'ping': 2}
    assert changes(before) == {'redis_connections_opened': 1,
                               'redis_round_trips': 3}


def test_a_redis_py_client_counts_one_round_trip_per_lookup(server):
    reference = server.client()
    try:
        kg = CacheKeyGenerator(reference)
        kg('alkey:users#1')
        before = alkey.stats()
        kg('alkey:users#1')
        kg('alkey:users#2')  # two round trips inside one call
        assert changes(before) == {'tokens_looked_up': 6, 'redis_round_trips': 2}
        server.kill()
        before = alkey.stats()
        kg('alkey:users#1')
        assert changes(before) == {'tokens_looked_up': 3, 'tokens_fresh': 3,
                                   'redis_errors': 1}
    finally:
        reference.close()


def test_a_commit_counts_its_invalidations(Maker, server):
    before = alkey.stats()
    with Maker() as s:
        s.add(User(id=1, name='ann'))
        s.commit()
    sets = server.command_counts()['set']
    assert sets >= 3  # users#1, users#*, the global token
    assert changes(before) == {'invalidations_sent': sets, 'redis_round_trips': 1,
                               'redis_connections_opened': 1}
    assert alkey.stats()['invalidations_pending'] == 0


def test_a_redis_py_invalidation_counts_too(server):
    reference = server.client()
    try:
        before = alkey.stats()
        assert events.send(reference, ['alkey:users#1', 'alkey:*#*']) == 2
        assert changes(before) == {'invalidations_sent': 2, 'redis_round_trips': 1}
        server.kill()
        before = alkey.stats()
        with pytest.raises(Exception):
            events.send(reference, ['alkey:users#1', 'alkey:*#*'])
        assert changes(before) == {'invalidations_failed': 2, 'redis_errors': 1}
    finally:
        reference.close()


def test_a_killed_server_counts_errors_fresh_tokens_and_the_reconnection(
        server, client, kg):
    cached = kg('alkey:users#1', 'alkey:users#2')
    server.kill()
    before = alkey.stats()
    assert kg('alkey:users#1', 'alkey:users#2') != cached
    # The idle connection is seen closed and dropped; connecting is refused.
    assert changes(before) == {'tokens_looked_up': 4, 'tokens_fresh': 4,
                               'redis_errors': 1}
    server.restart()
    before = alkey.stats()
    kg('alkey:users#1', 'alkey:users#2')
    assert changes(before) == {
        'tokens_looked_up': 4, 'tokens_created': 4, 'redis_round_trips': 2,
        'redis_connections_opened': 1,
    }


def test_a_paused_server_counts_timeouts(server):
    c = alkey.Client(**parse_url(server.url + '?socket_timeout=0.2'))
    kg = CacheKeyGenerator(c)
    reference = server.client(socket_timeout=0.2)
    via_redis_py = CacheKeyGenerator(reference)
    kg('alkey:users#1')
    via_redis_py('alkey:users#1')
    server.pause()
    try:
        before = alkey.stats()
        kg('alkey:users#1')
        assert changes(before) == {'tokens_looked_up': 3, 'tokens_fresh': 3,
                                   'redis_timeouts': 1}
        before = alkey.stats()
        via_redis_py('alkey:users#1')  # redis.exceptions.TimeoutError
        assert changes(before) == {'tokens_looked_up': 3, 'tokens_fresh': 3,
                                   'redis_timeouts': 1}
    finally:
        server.resume()
        reference.close()
        c.close()


def test_the_pending_gauge_while_redis_is_down(Maker, client, kg, server):
    kg('alkey:users#1')
    server.kill()
    with _pending._lock:  # keep the retry thread from sending meanwhile
        before = alkey.stats()
        with Maker() as s:
            s.add(User(id=1, name='ann'))
            s.commit()  # does not raise
        pending = _pending.count()
        assert pending >= 3
        assert alkey.stats()['invalidations_pending'] == pending
        assert changes(before) == {'invalidations_failed': pending,
                                   'redis_errors': 1}
        # A key naming a pending identifier is fresh, without asking Redis.
        before = alkey.stats()
        kg('alkey:users#1')
        assert changes(before) == {'tokens_looked_up': 3, 'tokens_fresh': 3}
        server.restart()
    assert wait_delivered()
    stats = alkey.stats()
    assert stats['invalidations_pending'] == 0
    assert stats['invalidations_sent'] - before['invalidations_sent'] == pending


def test_a_forked_child_starts_from_zero(server, client, kg):
    kg('alkey:users#1')
    parent = alkey.stats()
    assert parent['tokens_looked_up'] >= 3
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns when threads exist
        warnings.simplefilter('ignore', DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            at_start = alkey.stats()
            kg('alkey:users#1')
            os.write(write, json.dumps([at_start, alkey.stats()]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, 'rb') as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    at_start, after_one_key = json.loads(report)
    assert set(at_start.values()) == {0}
    # The child's own connection, its own lookup; nothing of the parent's.
    assert after_one_key == dict(
        at_start, tokens_looked_up=3, tokens_found=3, redis_round_trips=1,
        redis_connections_opened=1)
    assert alkey.stats() == parent
