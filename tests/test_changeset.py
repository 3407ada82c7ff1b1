"""The native change set (alkey._native.ChangeSet) and invalidate_tokens()."""

from __future__ import annotations

import gc
import importlib.util
import itertools
import os
import textwrap

import pytest

import alkey
from alkey import _native
from alkey._native import ChangeSet
from alkey.cache import get_token, get_token_key
from alkey.client import parse_url
from alkey.constants import TOKEN_NAMESPACE
from tests.support import other_threads_run_while, rss_growth

NOT_AN_IDENTIFIER = "is not an alkey identifier such as 'alkey:users#1'"


def client_of(server, query: str = '') -> alkey.Client:
    return alkey.Client(**parse_url(server.url + query))


# --------------------------------------------------------------------------
# Recording


def test_records_identifiers_once_in_first_insertion_order():
    changes = ChangeSet()
    changes.add('alkey:users#2')
    changes.add('alkey:users#1')
    changes.add('alkey:users#2')
    changes.update(['alkey:users#*', 'alkey:users#1', 'alkey:*#*', 'alkey:users#*'])
    assert changes.oids() == ['alkey:users#2', 'alkey:users#1', 'alkey:users#*', 'alkey:*#*']
    assert list(changes) == changes.oids()
    assert len(changes) == 4
    assert 'alkey:users#1' in changes
    assert 'alkey:users#3' not in changes
    assert 42 not in changes and None not in changes


def test_new_change_set_is_empty_and_takes_no_arguments():
    changes = ChangeSet()
    assert len(changes) == 0 and not changes
    assert changes.oids() == [] and list(changes) == []
    assert changes.mark() == 0
    assert repr(changes) == '<ChangeSet 0 identifiers>'
    with pytest.raises(TypeError, match='no arguments'):
        ChangeSet(['alkey:users#1'])
    with pytest.raises(TypeError, match='no arguments'):
        ChangeSet(oids=[])


def test_repr_counts_identifiers():
    changes = ChangeSet()
    changes.add('alkey:users#1')
    assert repr(changes) == '<ChangeSet 1 identifier>'
    changes.update(['alkey:users#2', 'alkey:users#*'])
    assert repr(changes) == '<ChangeSet 3 identifiers>'


def test_instance_table_and_global_identifiers_are_accepted():
    changes = ChangeSet()
    oids = ['alkey:users#1', 'alkey:tags#s:abc', 'alkey:public.users#1,2',
            'alkey:users#*', 'alkey:public.users#*', 'alkey:*#*']
    for oid in oids:
        assert _native.valid_object_id(oid) or _native.valid_write_token(oid)
        changes.add(oid)
    assert changes.oids() == oids


@pytest.mark.parametrize('value', [
    '', 'users#1', 'alkey:', 'alkey:users', 'alkey:users#', 'alkey:users#1 ',
    'alkey:users#01', 'alkey:*#1', 'x' * 1000, 'alkey:users#\ud800',
])
def test_add_refuses_a_str_that_is_not_an_identifier_quoting_it(value):
    changes = ChangeSet()
    with pytest.raises(ValueError, match=NOT_AN_IDENTIFIER) as info:
        changes.add(value)
    assert str(info.value).startswith(repr(value)[:50])
    assert len(changes) == 0


@pytest.mark.parametrize('value', [b'alkey:users#1', 1, None, ('alkey:users#1',)])
def test_add_refuses_a_non_str_with_type_error(value):
    changes = ChangeSet()
    with pytest.raises(TypeError, match=f'must be a str, not {type(value).__name__}'):
        changes.add(value)
    assert len(changes) == 0


def test_str_subclass_is_recorded_as_a_plain_str():
    class Oid(str):
        def __hash__(self):
            raise AssertionError('hashed a subclass')

    changes = ChangeSet()
    changes.add(Oid('alkey:users#1'))
    changes.add('alkey:users#1')
    assert changes.oids() == ['alkey:users#1']
    assert type(changes.oids()[0]) is str


def test_update_is_all_or_nothing():
    changes = ChangeSet()
    changes.update(['alkey:users#1', 'alkey:users#2'])
    with pytest.raises(ValueError, match="'nope' " + NOT_AN_IDENTIFIER):
        changes.update(['alkey:users#3', 'alkey:users#1', 'nope', 'alkey:users#4'])
    assert changes.oids() == ['alkey:users#1', 'alkey:users#2']
    with pytest.raises(TypeError, match='must be a str'):
        changes.update(['alkey:users#3', 7])
    assert changes.oids() == ['alkey:users#1', 'alkey:users#2']

    def failing():
        yield 'alkey:users#5'
        raise RuntimeError('the iterable failed')

    with pytest.raises(RuntimeError, match='the iterable failed'):
        changes.update(failing())
    assert changes.oids() == ['alkey:users#1', 'alkey:users#2']


def test_update_takes_any_iterable_but_not_a_str():
    changes = ChangeSet()
    changes.update(f'alkey:users#{i}' for i in range(3))
    changes.update({'alkey:users#*': None})
    changes.update(changes)
    assert changes.oids() == ['alkey:users#0', 'alkey:users#1', 'alkey:users#2',
                              'alkey:users#*']
    with pytest.raises(TypeError, match='not a str; use add'):
        changes.update('alkey:users#1')
    with pytest.raises(TypeError):
        changes.update(42)
    assert len(changes) == 4


def test_clear_forgets_everything():
    changes = ChangeSet()
    changes.update(f'alkey:users#{i}' for i in range(100))
    changes.clear()
    assert len(changes) == 0 and changes.oids() == []
    assert 'alkey:users#1' not in changes
    changes.add('alkey:users#1')
    assert changes.oids() == ['alkey:users#1']


def test_oids_is_a_new_list_each_time():
    changes = ChangeSet()
    changes.add('alkey:users#1')
    first = changes.oids()
    first.append('junk')
    assert changes.oids() == ['alkey:users#1']
    assert changes.oids() is not changes.oids()


def test_iteration_is_a_snapshot():
    changes = ChangeSet()
    changes.update(['alkey:users#1', 'alkey:users#2'])
    mark = changes.mark()
    changes.add('alkey:users#3')
    seen = []
    for oid in changes:
        seen.append(oid)
        changes.add(f'alkey:more#{len(seen)}')
        if len(seen) == 2:
            changes.rollback_to(mark)
    assert seen == ['alkey:users#1', 'alkey:users#2', 'alkey:users#3']
    assert changes.oids() == ['alkey:users#1', 'alkey:users#2', 'alkey:more#3']


def test_change_set_is_tracked_by_the_garbage_collector():
    changes = ChangeSet()
    changes.add('alkey:users#1')
    assert gc.is_tracked(changes)
    # A heap type's instances must show the collector their type.
    assert ChangeSet in gc.get_referents(changes)


def test_each_module_instance_has_its_own_change_set_type():
    spec = importlib.util.find_spec('alkey._native')
    second = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(second)
    assert second.ChangeSet is not ChangeSet
    changes = second.ChangeSet()
    changes.add('alkey:users#1')
    assert changes.oids() == ['alkey:users#1']
    assert not isinstance(changes, ChangeSet)


# --------------------------------------------------------------------------
# Savepoints


def test_mark_is_the_number_recorded():
    changes = ChangeSet()
    assert changes.mark() == 0
    changes.update(['alkey:users#1', 'alkey:users#2', 'alkey:users#1'])
    assert changes.mark() == 2


def test_rolled_back_savepoint_forgets_what_it_recorded():
    changes = ChangeSet()
    changes.add('alkey:users#1')
    mark = changes.mark()
    changes.update(['alkey:users#2', 'alkey:users#*'])
    changes.rollback_to(mark)
    assert changes.oids() == ['alkey:users#1']
    assert 'alkey:users#2' not in changes and 'alkey:users#*' not in changes
    changes.add('alkey:users#2')  # recorded again, at the end
    assert changes.oids() == ['alkey:users#1', 'alkey:users#2']


def test_readded_oid_recorded_before_a_savepoint_survives_its_rollback():
    changes = ChangeSet()
    changes.update(['alkey:users#1', 'alkey:users#*'])
    outer = changes.mark()
    changes.add('alkey:users#2')
    inner = changes.mark()
    changes.update(['alkey:users#1', 'alkey:users#2', 'alkey:users#3', 'alkey:users#*'])
    changes.rollback_to(inner)
    assert changes.oids() == ['alkey:users#1', 'alkey:users#*', 'alkey:users#2']
    changes.add('alkey:users#1')
    changes.rollback_to(outer)
    assert changes.oids() == ['alkey:users#1', 'alkey:users#*']


@pytest.mark.parametrize('actions', list(itertools.product(('release', 'rollback'), repeat=3)),
                         ids='-'.join)
def test_three_nested_savepoints_in_every_mix_of_release_and_rollback(actions):
    """actions[d] ends the savepoint at depth d + 1 (the innermost last).
    What a savepoint recorded is kept when it and every savepoint around it
    were released; re-added outer identifiers are never lost."""
    changes = ChangeSet()
    changes.add('alkey:outer#0')
    marks = []
    for depth in (1, 2, 3):
        marks.append(changes.mark())
        changes.update([f'alkey:in#{depth}', 'alkey:outer#0'])
    for depth in (3, 2, 1):
        mark = marks.pop()
        if actions[depth - 1] == 'rollback':
            changes.rollback_to(mark)
        # Recorded at the enclosing depth, after this savepoint ended.
        changes.add(f'alkey:after#{depth}')

    def kept(depth: int) -> bool:
        return 'rollback' not in actions[:depth]

    expected = ['alkey:outer#0']
    expected += [f'alkey:in#{d}' for d in (1, 2, 3) if kept(d)]
    expected += [f'alkey:after#{d}' for d in (3, 2, 1) if kept(d - 1)]
    assert changes.oids() == expected
    assert len(changes) == len(expected)
    for oid in ['alkey:outer#0'] + [f'alkey:in#{d}' for d in (1, 2, 3)]:
        assert (oid in changes) == (oid in expected)


def test_rollback_to_the_current_mark_or_to_zero():
    changes = ChangeSet()
    changes.update(['alkey:users#1', 'alkey:users#2'])
    changes.rollback_to(changes.mark())
    assert changes.oids() == ['alkey:users#1', 'alkey:users#2']
    changes.rollback_to(0)
    assert changes.oids() == [] and 'alkey:users#1' not in changes


@pytest.mark.parametrize('mark', [-1, 3, 2**70, -2**70])
def test_rollback_to_refuses_a_mark_out_of_range(mark):
    changes = ChangeSet()
    changes.update(['alkey:users#1', 'alkey:users#2'])
    with pytest.raises(ValueError, match='out of range: the change set holds 2'):
        changes.rollback_to(mark)
    assert len(changes) == 2


@pytest.mark.parametrize('mark', ['1', 1.0, True, None])
def test_rollback_to_refuses_a_mark_that_is_not_an_int(mark):
    changes = ChangeSet()
    changes.add('alkey:users#1')
    with pytest.raises(TypeError, match='mark must be an int'):
        changes.rollback_to(mark)
    assert len(changes) == 1


# --------------------------------------------------------------------------
# invalidate_tokens()


def test_invalidate_tokens_replaces_tokens_with_the_ttl(redis_server_clean):
    client = client_of(redis_server_clean)
    oids = ['alkey:users#1', 'alkey:users#*', 'alkey:*#*']
    before = [get_token(client, oid) for oid in oids]
    assert _native.invalidate_tokens(client, oids, TOKEN_NAMESPACE, 600) == 3
    after = [get_token(client, oid) for oid in oids]
    for old, new in zip(before, after):
        assert new != old and len(new) == 22
    assert len(set(after)) == 3
    for oid in oids:
        assert 590 <= client.ttl(get_token_key(oid)) <= 600


def test_invalidate_tokens_creates_missing_tokens(redis_server_clean):
    client = client_of(redis_server_clean)
    assert _native.invalidate_tokens(client, ('alkey:users#1',), 'ns', 60) == 1
    stored = client.get('ns:alkey:users#1')
    assert stored is not None and len(stored) == 22
    assert client.get('alkey:users#1') is None


def test_invalidate_tokens_of_100_oids_is_100_sets_and_nothing_else(redis_server_clean):
    client = client_of(redis_server_clean)
    assert client.ping()  # the connection is open before counting
    oids = [f'alkey:users#{i}' for i in range(1, 101)]
    redis_server_clean.reset_stats()
    assert _native.invalidate_tokens(client, oids, TOKEN_NAMESPACE, 3600) == 100
    assert redis_server_clean.command_counts() == {'set': 100}
    assert client.connection_count == 1
    assert len(set(client.mget([get_token_key(oid) for oid in oids]))) == 100


def test_invalidate_tokens_takes_a_change_set(redis_server_clean):
    client = client_of(redis_server_clean)
    changes = ChangeSet()
    changes.update(['alkey:users#1', 'alkey:users#2', 'alkey:users#1'])
    redis_server_clean.reset_stats()
    assert _native.invalidate_tokens(client, changes, 'ns', 60) == 2
    assert redis_server_clean.command_counts() == {'set': 2}


def test_invalidate_tokens_of_nothing_sends_nothing(redis_server_clean):
    from tests.conftest import free_port
    client = client_of(redis_server_clean)
    redis_server_clean.reset_stats()
    assert _native.invalidate_tokens(client, [], TOKEN_NAMESPACE, 60) == 0
    assert _native.invalidate_tokens(client, ChangeSet(), TOKEN_NAMESPACE, 60) == 0
    assert redis_server_clean.command_counts() == {}
    assert client.connection_count == 0
    # Not even a connection is attempted.
    dead = alkey.Client(host='127.0.0.1', port=free_port())
    assert _native.invalidate_tokens(dead, (), TOKEN_NAMESPACE, 60) == 0


@pytest.mark.parametrize('bad', ['users#1', 'alkey:users#', '', 'alkey:users#1\ud800'])
def test_invalidate_tokens_refuses_a_bad_identifier_before_sending(redis_server_clean, bad):
    client = client_of(redis_server_clean)
    redis_server_clean.reset_stats()
    with pytest.raises(ValueError, match=NOT_AN_IDENTIFIER):
        _native.invalidate_tokens(client, ['alkey:users#1', bad], 'ns', 60)
    with pytest.raises(TypeError, match='must be a str'):
        _native.invalidate_tokens(client, ['alkey:users#1', b'alkey:users#2'], 'ns', 60)
    assert redis_server_clean.command_counts() == {}


def test_invalidate_tokens_needs_a_native_client(redis_server_clean):
    redis_py = redis_server_clean.client()
    try:
        with pytest.raises(TypeError, match='needs an alkey Client'):
            _native.invalidate_tokens(redis_py, ['alkey:users#1'], 'ns', 60)
    finally:
        redis_py.close()
    with pytest.raises(TypeError, match='needs an alkey Client'):
        _native.invalidate_tokens(None, [], 'ns', 60)


def test_invalidate_tokens_argument_errors():
    client = alkey.Client(host='127.0.0.1', port=1)
    with pytest.raises(TypeError, match='4 or 5 arguments'):
        _native.invalidate_tokens(client, [])
    with pytest.raises(TypeError, match='namespace must be a str'):
        _native.invalidate_tokens(client, [], b'ns', 60)
    with pytest.raises(ValueError, match='ttl'):
        _native.invalidate_tokens(client, [], 'ns', 0)
    with pytest.raises(TypeError, match='ttl'):
        _native.invalidate_tokens(client, [], 'ns', True)
    with pytest.raises(TypeError, match='not iterable'):
        _native.invalidate_tokens(client, 42, 'ns', 60)


def test_invalidate_tokens_extra_commands_share_the_pipeline(redis_server_clean):
    client = client_of(redis_server_clean)
    client.execute_command('ZADD', 'ns:intents', '1', 'a', '2', 'b')
    redis_server_clean.reset_stats()
    extra = (('ZREM', 'ns:intents', b'a'), ['ZREM', 'ns:intents', 'missing'])
    assert _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60, extra) == 1
    # One transaction, in one round trip.
    assert redis_server_clean.command_counts() == {'multi': 1, 'set': 1, 'zrem': 2, 'exec': 1}
    assert client.execute_command('ZRANGE', 'ns:intents', '0', '-1') == [b'b']
    assert extra[0] == ('ZREM', 'ns:intents', b'a')  # the caller's tuples untouched
    # An extra command that fails when it runs: the SETs were applied.
    client.set('ns:text', 'not a sorted set')
    before = client.get('ns:alkey:users#1')
    with pytest.raises(alkey.ReplyError, match=r'extra command 0 \(ZREM\) failed: WRONGTYPE'
                                               r'.* \(the 1 SET commands were applied\)'):
        _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60, [('ZREM', 'ns:text', 'x')])
    assert client.get('ns:alkey:users#1') != before
    # One refused when queued: nothing is applied.
    before = client.get('ns:alkey:users#1')
    with pytest.raises(alkey.ReplyError, match=r'refused the transaction of 1 SET and 1 other '
                                               r'commands, nothing was applied: ERR wrong number'):
        _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60, [('ZREM',)])
    assert client.get('ns:alkey:users#1') == before
    assert client.connection_count == 1  # every reply read: the connection is reused


def test_invalidate_tokens_extra_commands_never_run_when_the_sets_are_refused(
        redis_server_clean):
    # Out of memory refuses SET but not ZREM: outside a transaction the
    # intent would go while the tokens it protects stay as they were.
    client = client_of(redis_server_clean)
    client.execute_command('ZADD', 'ns:intents', '1', 'a')
    before = client.get('ns:alkey:users#1')
    redis_server_clean.config_set('maxmemory-policy', 'noeviction')
    redis_server_clean.config_set('maxmemory', '1')
    try:
        with pytest.raises(alkey.ReplyError, match='nothing was applied: .*OOM'):
            _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60,
                                      [('ZREM', 'ns:intents', 'a')])
    finally:
        redis_server_clean.config_set('maxmemory', '0')
    assert client.execute_command('ZCARD', 'ns:intents') == 1
    assert client.get('ns:alkey:users#1') == before


def test_invalidate_tokens_refuses_malformed_extra_commands(redis_server_clean):
    client = client_of(redis_server_clean)
    redis_server_clean.reset_stats()
    with pytest.raises(ValueError, match='an extra command is empty'):
        _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60, [()])
    with pytest.raises(TypeError, match='must be str or bytes, not int'):
        _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60, [('ZREM', 1)])
    with pytest.raises(TypeError):
        _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60, 5)
    with pytest.raises(TypeError, match='sequence of arguments, not str'):
        _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60, ('ZREM', 'k', 'm'))
    assert redis_server_clean.command_counts() == {}  # nothing sent


def test_invalidate_tokens_on_a_refused_connection_raises_connection_error():
    from tests.conftest import free_port
    dead = alkey.Client(host='127.0.0.1', port=free_port())
    with pytest.raises(alkey.ConnectionError, match='127.0.0.1'):
        _native.invalidate_tokens(dead, ['alkey:users#1'], 'ns', 60)
    assert dead.connection_count == 0


def test_invalidate_tokens_timing_out_drops_the_connection(redis_server_clean):
    client = client_of(redis_server_clean, '?socket_timeout=0.2')
    assert client.ping() and client.connection_count == 1
    redis_server_clean.pause()
    try:
        with pytest.raises(alkey.TimeoutError):
            _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60)
    finally:
        redis_server_clean.resume()
    assert client.connection_count == 0
    assert _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60) == 1


def test_invalidate_tokens_error_reply_raises_reply_error(redis_server_clean):
    client = client_of(redis_server_clean)
    assert client.ping()
    redis_server_clean.config_set('maxmemory-policy', 'noeviction')
    redis_server_clean.config_set('maxmemory', '1')
    with pytest.raises(alkey.ReplyError, match=r'SET ns:alkey:users#1 failed: OOM .*'
                                               r'\(2 of 2 commands failed\)'):
        _native.invalidate_tokens(client, ['alkey:users#1', 'alkey:users#2'], 'ns', 60)
    # Every reply was read: the connection went back to the pool and works.
    assert client.connection_count == 1
    redis_server_clean.config_set('maxmemory', '0')
    assert _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60) == 1
    assert client.connection_count == 1


def test_invalidate_tokens_releases_the_gil(redis_server_clean):
    """While one thread waits on a stopped server, others keep running."""
    client = client_of(redis_server_clean, '?socket_timeout=0.5')
    assert client.ping()
    redis_server_clean.pause()
    raised, spins = other_threads_run_while(
        lambda: _native.invalidate_tokens(client, ['alkey:users#1'], 'ns', 60),
        redis_server_clean.resume)
    assert [type(e) for e in raised] == [alkey.TimeoutError] and spins > 10000


# --------------------------------------------------------------------------
# Memory


LEAK_CHECK = textwrap.dedent('''
    import gc, sys
    import alkey
    from alkey import _native
    from alkey.client import parse_url

    client = alkey.Client(**parse_url(sys.argv[1]))
    dead = alkey.Client(host='127.0.0.1', port=int(sys.argv[2]))
    changes = _native.ChangeSet()
    changes.update(f'alkey:base#{i}' for i in range(10))

    def work(n):
        for i in range(n):
            mark = changes.mark()
            changes.add(f'alkey:users#{i}')
            changes.update([f'alkey:users#{i}', f'alkey:tags#s:{i}', 'alkey:users#*'])
            'alkey:users#1' in changes
            repr(changes)
            for _ in changes:
                pass
            changes.oids()
            try:
                changes.add(f'bad{i}')
            except ValueError:
                pass
            try:
                changes.update([f'alkey:more#{i}', None])
            except TypeError:
                pass
            try:
                changes.rollback_to(-1)
            except ValueError:
                pass
            changes.rollback_to(mark)
            if i % 20 == 0:
                inner = _native.ChangeSet()
                inner.update(changes)
                inner.clear()
                _native.invalidate_tokens(client, changes, 'ns', 60)
                try:
                    _native.invalidate_tokens(dead, ['alkey:users#1'], 'ns', 60)
                except alkey.ConnectionError:
                    pass
                try:
                    _native.invalidate_tokens(client, ['alkey:users#1', 'x'], 'ns', 60)
                except ValueError:
                    pass

    def rss():
        gc.collect()
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * 4096

    work(10000)
    before = rss()
    work(100000)
    assert changes.mark() == 10
    print(rss() - before)
''')


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get('ALKEY_SANITIZER')),
                    reason='ASan keeps freed memory in quarantine: RSS says nothing')
def test_no_memory_growth_over_many_add_and_rollback_cycles(redis_server_clean, tmp_path):
    from tests.conftest import free_port
    grown = rss_growth(LEAK_CHECK, tmp_path, redis_server_clean.url, free_port())
    assert grown < 1024 * 1024, f'RSS grew by {grown} bytes over 100000 cycles'
