"""Tokens and cache keys through the public API, against a real Redis."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid

import pytest
import redis as redispy

import alkey
from alkey.cache import (
    CacheKeyGenerator,
    get_cache_key_generator,
    get_token,
    get_token_key,
    set_token,
)
from alkey.client import parse_url
from alkey.constants import GLOBAL_WRITE_TOKEN, MAX_CACHE_DURATION, TOKEN_NAMESPACE
from alkey.utils import get_object_id
from tests.models import Document, Membership, Tag, User, sqlite_session

TOKEN = re.compile(r'^[A-Za-z0-9_-]{22}$')


@pytest.fixture
def rows():
    session = sqlite_session()
    user = User(id=1, name='ann')
    tag = Tag(name='a#b/c,d:e f')
    doc = Document(id=uuid.UUID('6f1c0d2e-8b7a-4c1e-9a55-0d5e4c3b2a10'))
    member = Membership(user_id=1, role='admin, owner')
    session.add_all([user, tag, doc, member])
    session.commit()
    yield {'user': user, 'tag': tag, 'doc': doc, 'member': member}
    session.close()


def test_instance_and_its_identifier_give_the_same_key(kg, rows):
    user = rows['user']
    assert kg(user) == kg('alkey:users#1')
    assert kg(User) == kg('alkey:users#*')
    for obj in rows.values():
        assert kg(obj) == kg(get_object_id(obj))
        assert kg(obj) != kg(type(obj))
    assert isinstance(kg(user), str)


def test_key_is_stable_until_the_token_changes(client, kg, rows):
    user = rows['user']
    first = kg(user, 'sidebar')
    assert kg(user, 'sidebar') == first
    other = kg('alkey:users#2', 'sidebar')
    set_token(client, user, 'replaced')  # what a commit does
    assert kg(user, 'sidebar') != first
    assert kg('alkey:users#2', 'sidebar') == other


def test_readable_form_shows_identifiers_tokens_and_values(server, client, kg):
    set_token(client, 'alkey:users#1', 'TOKEN1')
    key = kg('alkey:users#1', 'sidebar', 2)
    epoch = server.admin.get(f'{TOKEN_NAMESPACE}:alkey:users#!')
    gepoch = server.admin.get(f'{TOKEN_NAMESPACE}:alkey:*#!')
    assert TOKEN.match(epoch) and TOKEN.match(gepoch)
    assert key == f'alkey:users#1~TOKEN1.{epoch}.{gepoch}/sidebar/~i2'


def test_different_arguments_never_give_the_same_key(kg):
    pairs = [
        (('a/b',), ('a', 'b')),
        ((b'\xff',), (b'\xfe',)),
        ((1,), ('1',)),
        ((1,), (True,)),
        (('',), ()),
        (('', ''), ('/',)),
        ((None,), ('None',)),
        (([1, 2],), ((1, 2),)),
        ((['a,b'],), (['a', 'b'],)),
        (('x~y',), ('x', 'y')),
        ((1.0,), (1,)),
    ]
    for left, right in pairs:
        assert kg(*left) != kg(*right), (left, right)


def test_equal_dicts_and_sets_give_equal_keys(kg):
    assert kg({'a': 1, 'b': 2}) == kg({'b': 2, 'a': 1})
    assert kg({3, 1, 2}) == kg({2, 3, 1}) == kg(frozenset({1, 2, 3}))


def test_hashed_keys_are_short_memcached_safe_digests(client, kg, rows):
    hashed = CacheKeyGenerator(client, hash_keys=True)
    key = hashed(rows['user'], 'a b\n', b'\x00')
    assert re.fullmatch(r'[0-9a-f]{64}', key)
    assert key == hashlib.sha256(kg(rows['user'], 'a b\n', b'\x00').encode()).hexdigest()
    assert hashed('x' * 100000) != hashed('x' * 99999)
    assert get_cache_key_generator(hash_keys=True)('a') == hashed('a')


def test_tokens_are_random_strings_stored_with_a_ttl(server, client):
    token = get_token(client, 'alkey:users#1')
    assert TOKEN.match(token)
    assert get_token(client, 'alkey:users#1') == token
    assert get_token(client, 'alkey:users#2') != token
    key = get_token_key('alkey:users#1')
    assert key == f'{TOKEN_NAMESPACE}:alkey:users#1'
    assert MAX_CACHE_DURATION - 5 < server.admin.ttl(key) <= MAX_CACHE_DURATION
    assert MAX_CACHE_DURATION == 86400


def test_reading_never_overwrites_an_existing_token(client):
    set_token(client, 'alkey:users#1', 'written-by-a-commit')
    assert get_token(client, 'alkey:users#1') == 'written-by-a-commit'
    assert get_token(client, GLOBAL_WRITE_TOKEN)  # creatable too


def test_tokens_are_new_after_redis_restarts_empty(server, client):
    before = get_token(client, 'alkey:users#1')
    server.restart()
    after = get_token(client, 'alkey:users#1')
    assert TOKEN.match(after) and after != before


def test_one_round_trip_when_tokens_exist(server, kg, rows):
    args = [rows['user'], User, GLOBAL_WRITE_TOKEN] + [f'alkey:users#{i}' for i in range(7)]
    kg(*args)
    server.reset_stats()
    kg(*args, 'and', 'values', 3)
    assert server.command_counts() == {'mget': 1}


def test_missing_tokens_take_one_mget_and_set_nx_each(server, kg):
    server.reset_stats()
    kg(*[f'alkey:users#{i}' for i in range(5)])
    counts = server.command_counts()
    # 5 instance tokens, the users epoch and the global epoch.
    assert counts == {'mget': 2, 'set': 7}


def test_values_alone_need_no_redis(server, kg):
    server.reset_stats()
    kg('just', 'values', 1, None)
    assert server.command_counts() == {}


def test_unreachable_redis_gives_never_seen_keys_and_one_warning(caplog):
    from alkey import cache
    from tests.conftest import free_port
    cache._log_failure._last = float('-inf')
    dead = CacheKeyGenerator(alkey.Client(host='127.0.0.1', port=free_port()))
    with caplog.at_level(logging.WARNING, logger='alkey'):
        keys = {dead('alkey:users#1', 'x') for _ in range(5)}
        token = get_token(dead.redis, 'alkey:users#1')
    assert len(keys) == 5
    assert TOKEN.match(token)
    warnings = [r for r in caplog.records if r.name == 'alkey']
    assert len(warnings) == 1
    assert 'ConnectionError' in warnings[0].getMessage()


def test_stopped_redis_returns_fresh_keys_within_the_timeout(server):
    c = alkey.Client(**parse_url(server.url + '?socket_timeout=0.2'))
    kg = CacheKeyGenerator(c)
    cached = kg('alkey:users#1')
    server.pause()
    try:
        start = time.monotonic()
        key = kg('alkey:users#1')
        assert time.monotonic() - start < 0.6
    finally:
        server.resume()
    assert key != cached
    assert kg('alkey:users#1') == cached


def test_error_replies_fail_open(server, client, kg):
    server.config_set('maxmemory', '1')
    server.config_set('maxmemory-policy', 'noeviction')
    first = kg('alkey:users#1')
    assert first != kg('alkey:users#1')  # OOM on SET NX: fresh every time


def test_redis_py_clients_give_the_same_keys(server, client, kg, rows):
    reference = redispy.Redis.from_url(server.url)
    try:
        via_redis_py = CacheKeyGenerator(reference)
        args = (rows['user'], rows['tag'], Document, 'x', {'a': 1})
        assert via_redis_py(*args) == kg(*args)
        assert via_redis_py('alkey:users#9') == kg('alkey:users#9')  # created by redis-py
        assert get_token(reference, rows['doc']) == get_token(client, rows['doc'])
        set_token(reference, rows['user'], 'manual')
        assert get_token(client, rows['user']) == 'manual'
    finally:
        reference.close()


def test_redis_py_failures_fail_open(server):
    reference = redispy.Redis.from_url(server.url, socket_timeout=0.2)
    kg = CacheKeyGenerator(reference)
    cached = kg('alkey:users#1')
    server.kill()
    assert kg('alkey:users#1') != cached
    assert TOKEN.match(get_token(reference, 'alkey:users#1'))


def test_unkeyable_arguments_are_clear_type_errors(kg, rows):
    class Opaque:
        pass

    with pytest.raises(TypeError, match='Opaque'):
        kg(Opaque())
    with pytest.raises(TypeError, match='separate argument'):
        kg([rows['user']])
    with pytest.raises(TypeError, match='redis_client'):
        CacheKeyGenerator(object())
    with pytest.raises(ValueError, match='alkey:users#1'):
        get_token_key('users')


def test_objects_with_their_own_text_are_keyed_by_type_and_text(kg):
    import datetime
    import decimal
    assert kg(datetime.date(2024, 1, 2)) == kg(datetime.date(2024, 1, 2))
    assert kg(decimal.Decimal('1.5')) != kg('1.5')


def test_huge_and_odd_strings_are_keyed(kg):
    huge = 'x' * (8 * 1024 * 1024)
    assert len(kg(huge)) == len(huge)
    assert kg('\ud800') != kg('\ud801')
    assert kg('alkey:not an id') == 'alkey:not an id'


def test_key_generator_from_the_environment(server, monkeypatch):
    monkeypatch.setenv('REDIS_URL', server.url)
    from alkey.client import get_redis_client
    get_redis_client.reset()
    kg = get_cache_key_generator()
    assert kg.redis is get_redis_client()
    assert kg('alkey:users#1') == kg('alkey:users#1')
