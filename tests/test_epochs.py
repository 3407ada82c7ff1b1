"""Epochs: the table and global tokens every instance key folds in, so that a
bulk write (rows not known one by one) changes every key of a table at once."""

from __future__ import annotations

import hashlib
import re

import pytest
import redis as redispy

import alkey
from alkey import _native
from alkey.cache import CacheKeyGenerator
from alkey.constants import TOKEN_NAMESPACE

TTL = 86400
TOKEN = r'[A-Za-z0-9_-]{22}'
USERS = [f'alkey:users#{i}' for i in range(1, 6)]
OTHERS = ['alkey:tags#s:x', 'alkey:public.users#1', 'alkey:users#*', 'alkey:*#*']


def keys_of(kg, oids):
    return {oid: kg(oid, 'fragment') for oid in oids}


def replace(client, *oids):
    assert _native.invalidate_tokens(client, list(oids), TOKEN_NAMESPACE, TTL) == len(oids)


def token_key(oid):
    return f'{TOKEN_NAMESPACE}:{oid}'


def test_instance_keys_fold_in_their_table_epoch_and_the_global_epoch(server, kg):
    key = kg('alkey:users#1', 'x')
    epoch = server.admin.get(token_key('alkey:users#!'))
    gepoch = server.admin.get(token_key('alkey:*#!'))
    own = server.admin.get(token_key('alkey:users#1'))
    assert key == f'alkey:users#1~{own}.{epoch}.{gepoch}/x'
    assert kg('alkey:users#*') == (
        f"alkey:users#*~{server.admin.get(token_key('alkey:users#*'))}.{gepoch}")
    assert kg('alkey:*#*') == f"alkey:*#*~{server.admin.get(token_key('alkey:*#*'))}"
    assert kg('alkey:public.users#7') == 'alkey:public.users#7~%s.%s.%s' % (
        server.admin.get(token_key('alkey:public.users#7')),
        server.admin.get(token_key('alkey:public.users#!')), gepoch)


def test_table_epoch_changes_every_instance_key_of_that_table_only(client, kg):
    before = keys_of(kg, USERS + OTHERS)
    replace(client, 'alkey:users#!')
    after = keys_of(kg, USERS + OTHERS)
    for oid in USERS:
        assert after[oid] != before[oid], oid
    for oid in OTHERS:  # other tables, a schema's table, the table key itself
        assert after[oid] == before[oid], oid
    assert len(set(after.values())) == len(after)


def test_global_epoch_changes_every_instance_and_table_key_but_not_the_global_token(
        client, kg):
    oids = USERS + ['alkey:tags#s:x', 'alkey:public.users#1', 'alkey:users#*',
                    'alkey:tags#*']
    before = keys_of(kg, oids + ['alkey:*#*'])
    replace(client, 'alkey:*#!')
    after = keys_of(kg, oids + ['alkey:*#*'])
    for oid in oids:
        assert after[oid] != before[oid], oid
    assert after['alkey:*#*'] == before['alkey:*#*']


def test_instance_token_still_changes_only_its_own_key(client, kg):
    before = keys_of(kg, USERS)
    replace(client, 'alkey:users#2')
    after = keys_of(kg, USERS)
    assert [oid for oid in USERS if after[oid] != before[oid]] == ['alkey:users#2']


def test_epoch_identifiers_are_keyed_by_their_own_token_only(server, client, kg):
    key = kg('alkey:users#!', 'alkey:*#!')
    epoch = server.admin.get(token_key('alkey:users#!'))
    gepoch = server.admin.get(token_key('alkey:*#!'))
    assert key == f'alkey:users#!~{epoch}/alkey:*#!~{gepoch}'
    replace(client, 'alkey:users#!')
    assert kg('alkey:users#!', 'alkey:*#!') != key


def test_a_hundred_instances_of_one_table_read_102_keys_in_one_mget(server, client, kg):
    oids = [f'alkey:users#{i}' for i in range(100)]
    server.reset_stats()
    first = kg(*oids)
    assert server.command_counts() == {'mget': 2, 'set': 102}
    assert server.admin.dbsize() == 102
    # Redis's slow log with no threshold shows the MGET's arguments (the first
    # 31, then how many more).
    server.config_set('slowlog-log-slower-than', 0)
    server.admin_command('SLOWLOG', 'RESET')
    server.reset_stats()
    assert kg(*oids) == first
    assert server.command_counts() == {'mget': 1}
    # Raw entries: [id, time, microseconds, arguments, client, name].
    mgets = [entry[3] for entry in server.admin_command('SLOWLOG', 'GET', 100)
             if str(entry[3][0]).lower() == 'mget']
    assert len(mgets) == 1
    shown, last = mgets[0][:-1], mgets[0][-1]
    more = re.fullmatch(r'\.\.\. \((\d+) more arguments\)', last)
    assert more is not None, last
    assert len(shown) + int(more.group(1)) == 1 + 102  # MGET and its 102 keys


def test_a_token_source_gets_each_epoch_key_once(kg):
    seen = []

    def source(keys):
        seen.append(list(keys))
        return [f't{i}' for i in range(len(keys))]

    oids = [f'alkey:users#{i}' for i in range(50)] + [
        f'alkey:tags#{i}' for i in range(50)] + ['alkey:users#*', 'alkey:*#*',
                                                 'alkey:users#!', 'alkey:*#!']
    key = _native.cache_key(source, oids, 'ns', 60, False)
    [keys] = seen
    assert len(keys) == len(set(keys)) == 100 + 2 + 3  # own keys, 2 tokens, 3 epochs
    assert {k for k in keys if k.endswith('#!')} == {
        'ns:alkey:users#!', 'ns:alkey:tags#!', 'ns:alkey:*#!'}
    tokens = dict(zip(keys, (f't{i}' for i in range(len(keys)))))
    parts = key.split('/')
    assert parts[0] == 'alkey:users#0~%s.%s.%s' % (
        tokens['ns:alkey:users#0'], tokens['ns:alkey:users#!'], tokens['ns:alkey:*#!'])
    assert parts[-2] == 'alkey:users#!~%s' % tokens['ns:alkey:users#!']
    assert parts[-1] == 'alkey:*#!~%s' % tokens['ns:alkey:*#!']


def test_missing_epochs_are_created_in_the_second_round_trip(server, kg):
    first = kg(*USERS)
    server.admin.delete(token_key('alkey:users#!'))  # evicted, or Redis restarted
    server.reset_stats()
    second = kg(*USERS)
    assert server.command_counts() == {'mget': 2, 'set': 1}
    assert second != first
    assert kg(*USERS) == second


@pytest.mark.parametrize('oid', ['alkey:users#!', 'alkey:*#!', 'alkey:public.users#!',
                                 'alkey:us%2Fers#!', 'alkey:s.t%23x#!'])
def test_epoch_identifiers_are_identifiers_but_no_object_ids_or_write_tokens(oid):
    assert _native.valid_object_id(oid) is False
    assert _native.valid_write_token(oid) is False
    assert _native.encode_key((oid,), ['tok']) == f'{oid}~tok'
    changes = _native.ChangeSet()
    changes.add(oid)
    assert changes.oids() == [oid]


@pytest.mark.parametrize('text', ['alkey:users#!!', 'alkey:*#!x', 'alkey:#!', 'alkey:users#1!',
                                  'alkey:users#%21', 'alkey:users#!,1', 'alkey:*#', 'alkey:*#?',
                                  'alkey:users!', 'alkey:a.b.c#!', 'alkey:users#1,!'])
def test_near_epoch_forms_are_no_identifiers(text):
    assert _native.valid_object_id(text) is False
    assert _native.valid_write_token(text) is False
    assert _native.encode_key((text,), []) == text.replace('%', '%25')
    with pytest.raises(ValueError):
        _native.ChangeSet().add(text)


def test_invalidate_tokens_replaces_epochs(server, client):
    _native.fetch_tokens(client, [token_key('alkey:users#!'), token_key('alkey:*#!')], TTL)
    before = server.admin.mget([token_key('alkey:users#!'), token_key('alkey:*#!')])
    replace(client, 'alkey:users#!', 'alkey:*#!')
    after = server.admin.mget([token_key('alkey:users#!'), token_key('alkey:*#!')])
    assert all(re.fullmatch(TOKEN, t) for t in after)
    assert after[0] != before[0] and after[1] != before[1]
    assert TTL - 5 < server.admin.ttl(token_key('alkey:users#!')) <= TTL


def test_tokens_with_dots_cannot_make_two_token_tuples_collide(server, kg):
    server.admin.set(token_key('alkey:*#!'), 'g')
    seen = {}
    for own, epoch in [('a.b', 'c'), ('a', 'b.c'), ('a%2Eb', 'c'), ('a', 'b%2Ec'),
                       ('a.b.c', ''), ('', 'a.b.c')]:
        server.admin.set(token_key('alkey:users#1'), own)
        server.admin.set(token_key('alkey:users#!'), epoch)
        key = kg('alkey:users#1')
        assert key not in seen, (own, epoch, seen.get(key))
        seen[key] = (own, epoch)
        assert key.count('.') == 2  # only the joins: a token's dots are escaped
    # The same through a token source, and in the hashed form.
    def source(tokens):
        return lambda keys: tokens

    left = [_native.cache_key(source(['a.b', 'c', 'g']), ('alkey:users#1',), 'ns', 60, h)
            for h in (False, True)]
    right = [_native.cache_key(source(['a', 'b.c', 'g']), ('alkey:users#1',), 'ns', 60, h)
             for h in (False, True)]
    assert left[0] != right[0] and left[1] != right[1]
    assert left[1] == hashlib.sha256(left[0].encode()).hexdigest()


def test_get_token_of_a_dotted_token_is_unchanged(server, client):
    server.admin.set(token_key('alkey:users#1'), 'a.b')
    assert _native.fetch_tokens(client, [token_key('alkey:users#1')], TTL) == ['a.b']


def test_without_redis_every_part_is_fresh(server):
    keys = {_native.cache_key(None, ('alkey:users#1', 'alkey:users#*', 'alkey:*#*'),
                              'ns', 60, False) for _ in range(3)}
    assert len(keys) == 3
    for key in keys:
        assert re.fullmatch(rf'alkey:users#1~{TOKEN}\.{TOKEN}\.{TOKEN}'
                            rf'/alkey:users#\*~{TOKEN}\.{TOKEN}/alkey:\*#\*~{TOKEN}', key)
    from tests.conftest import free_port
    dead = alkey.Client(host='127.0.0.1', port=free_port())
    key = _native.cache_key(dead, ('alkey:users#1',), 'ns', 60, False)
    assert re.fullmatch(rf'alkey:users#1~{TOKEN}\.{TOKEN}\.{TOKEN}', key)
    assert server.admin.dbsize() == 0


def test_redis_py_clients_see_the_same_epochs(server, client, kg):
    reference = redispy.Redis.from_url(server.url)
    try:
        via_redis_py = CacheKeyGenerator(reference)
        args = ('alkey:users#1', 'alkey:users#2', 'alkey:tags#s:x', 'alkey:users#*', 'v')
        assert via_redis_py(*args) == kg(*args)
        before = kg(*args)
        replace(client, 'alkey:users#!')
        assert via_redis_py(*args) == kg(*args) != before
    finally:
        reference.close()
