"""The C extension itself: module instances, memory, hostile input."""

from __future__ import annotations

import importlib.util
import os
import textwrap

import pytest

import alkey
from alkey import _native
from alkey.client import parse_url
from tests.support import rss_growth


def test_each_module_instance_has_its_own_state(redis_server_clean):
    spec = importlib.util.find_spec('alkey._native')
    second = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(second)
    assert second is not _native
    assert second.Error is not _native.Error
    assert second.Client is not _native.Client
    client = second.Client(**parse_url(redis_server_clean.url))
    assert client.ping() is True
    # No resolver or error handler installed in the second instance: it
    # keys plain values and identifiers without them.
    assert second.cache_key(client, ('alkey:users#1', 'x'), 'ns', 60, False)
    with pytest.raises(second.TimeoutError):
        redis_server_clean.pause()
        try:
            second.Client(**parse_url(redis_server_clean.url + '?socket_timeout=0.1')).ping()
        finally:
            redis_server_clean.resume()


def test_exception_hierarchy():
    assert issubclass(alkey.TimeoutError, alkey.ConnectionError)
    assert issubclass(alkey.AuthenticationError, alkey.ConnectionError)
    assert issubclass(alkey.ConnectionError, alkey.Error)
    assert issubclass(alkey.ReplyError, alkey.Error)
    assert issubclass(alkey.ConfigurationError, ValueError)
    assert alkey.Error.__module__ == 'alkey'


@pytest.mark.parametrize('value, kind', [
    ('alkey:users#1', 'instance'), ('alkey:tags#s:a%2Fb', 'instance'),
    ('alkey:users#1,s:admin', 'instance'), ('alkey:users#*', 'table'),
    ('alkey:public.users#*', 'table'), ('alkey:*#*', 'global'),
    ('alkey:users#!', 'epoch'), ('alkey:*#!', 'epoch'),
    ('alkey:users#', None), ('alkey:users#01', None), ('users', None), ('', None),
    ('alkey:users#!!', None), (b'alkey:users#1', None), (1, None), (None, None),
])
def test_oid_kind_names_what_an_identifier_stands_for(value, kind):
    assert _native.oid_kind(value) == kind
    assert _native.valid_object_id(value) is (kind == 'instance')
    assert _native.valid_write_token(value) is (kind in ('table', 'global'))


def test_random_tokens_are_unique_url_safe_strings():
    tokens = {_native.random_token() for _ in range(10000)}
    assert len(tokens) == 10000
    assert all(len(t) == 22 and t.isascii() and t.replace('-', '').replace('_', '').isalnum()
               for t in tokens)


def test_cache_key_argument_errors():
    with pytest.raises(TypeError, match='5 arguments'):
        _native.cache_key(None, ())
    with pytest.raises(ValueError, match='ttl'):
        _native.cache_key(None, ('alkey:users#1',), 'ns', 0, False)
    with pytest.raises(TypeError, match='source'):
        _native.cache_key(42, ('alkey:users#1',), 'ns', 60, False)


def test_a_failing_token_source_gives_fresh_keys_and_is_reported():
    def broken(keys):
        raise RuntimeError('redis-py said no')

    reported = []
    from alkey import cache  # noqa: F401 -- installs the hooks restored below
    _native._set_hooks(None, reported.append)
    try:
        first = _native.cache_key(broken, ('alkey:users#1',), 'ns', 60, False)
        again = _native.cache_key(broken, ('alkey:users#1',), 'ns', 60, False)
        short = _native.cache_key(lambda keys: [], ('alkey:users#1',), 'ns', 60, False)
    finally:
        from alkey.utils import resolve_identity
        _native._set_hooks(resolve_identity, cache._log_failure)
    assert first != again and short
    assert [type(e) for e in reported] == [RuntimeError, RuntimeError, ValueError]
    # One instance: its token key, its table's epoch and the global epoch.
    assert 'returned 0 tokens for 3 keys' in str(reported[2])


LEAK_CHECK = textwrap.dedent('''
    import gc, resource, sys
    import alkey
    from alkey import _native
    from alkey.cache import CacheKeyGenerator, get_token
    from alkey.client import parse_url

    client = alkey.Client(**parse_url(sys.argv[1]))
    dead = alkey.Client(host='127.0.0.1', port=int(sys.argv[2]))
    kg = CacheKeyGenerator(client)
    hashed = CacheKeyGenerator(client, hash_keys=True)
    args = ('alkey:users#1', 'alkey:users#*', 'x', 1, 2.5, b'\\xff', None,
            {'a': [1, (2, 3)], 'b': {4, 5}}, '\\ud800')

    def work(n):
        for i in range(n):
            kg(*args)
            hashed(*args)
            _native.cache_key(dead, args, 'ns', 60, False)
            _native.encode_key(args, ['t1', 't2'])
            client.set('k', 'v', ex=10)
            client.mget(['k', 'none'])
            client.execute_command('HSET', 'h', 'f', i)
            try:
                client.execute_command('LPUSH', 'k', 'x')
            except alkey.ReplyError:
                pass
            try:
                kg(object())
            except TypeError:
                pass
            get_token(client, 'alkey:users#1')

    def rss():
        gc.collect()
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * 4096

    work(2000)
    before = rss()
    work(20000)
    grown = rss() - before
    print(grown)
''')


@pytest.mark.skipif(bool(os.environ.get('ALKEY_SANITIZER')),
                    reason='ASan keeps freed memory in quarantine: RSS says nothing')
def test_no_memory_growth_over_many_calls(redis_server_clean, tmp_path):
    from tests.conftest import free_port
    grown = rss_growth(LEAK_CHECK, tmp_path, redis_server_clean.url, free_port())
    assert grown < 1024 * 1024, f'RSS grew by {grown} bytes over 20000 rounds'


def test_odd_tokens_and_epochs_from_a_source_still_give_injective_keys():
    def source(tokens):
        return lambda keys: tokens

    args = ('alkey:users#1',)
    tuples = [['a/b', 'e', 'g'], ['a%2Fb', 'e', 'g'], [b'\xff\x00 x', 'e', 'g'],
              ['a.b', 'e', 'g'], ['a', 'b.e', 'g'], ['a', 'b', 'e.g'], ['a.b.e', '', 'g']]
    keys = [_native.cache_key(source(t), args, 'ns', 60, False) for t in tuples]
    assert len(set(keys)) == len(tuples)
    assert all(k.isprintable() and k.count('.') == 2 for k in keys)


def test_cache_key_with_many_tables_and_epochs_in_one_call():
    seen = []

    def source(keys):
        seen.append(keys)
        return [str(i) for i in range(len(keys))]

    args = [f'alkey:t{i % 37}#{i}' for i in range(1000)] + ['alkey:*#!', 'alkey:t3#!']
    key = _native.cache_key(source, args, 'ns', 60, False)
    assert len(seen[0]) == 1000 + 37 + 1
    assert len(key.split('/')) == 1002
    for i in range(200):  # no state kept between calls
        assert _native.cache_key(source, args, 'ns', 60, i % 2 == 0)

