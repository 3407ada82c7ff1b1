"""The readable key: container arguments (issue 6), where each element
nested in a tuple, list, set or dict is written as ``<len>:<enc>``, its
byte length and its own encoding, never escaped again, 64 levels deep at
most; and the tokens the key builder puts in (issue 5), escaped once."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest

from alkey import _native
from alkey.cache import CacheKeyGenerator, get_token, set_token
from alkey.constants import TOKEN_NAMESPACE


def key(*args: Any) -> str:
    return _native.encode_key(list(args), [])


def nested(depth: int, leaf: Any, wrap: Any = tuple) -> Any:
    for _ in range(depth):
        leaf = wrap([leaf]) if wrap is not dict else {'k': leaf}
    return leaf


@pytest.mark.parametrize(('value', 'expected'), [
    ((1, 'a'), '~t(3:~i1,1:a)'),
    (['a/b', '', None], '~l(5:a%2Fb,2:~E,2:~N)'),
    ((), '~t()'),
    ([()], '~l(4:~t())'),
    ((('a,b',),), '~t(9:~t(3:a,b))'),
    # Lengths count UTF-8 bytes; each leaf is escaped once, as at the top.
    (('é~',), '~t(5:é%7E)'),
    # Sorted bytewise as written, lengths first.
    (frozenset({1.5, b'\xff'}), '~s(5:~b%FF,5:~f1.5)'),
    ({10, 9}, '~s(3:~i9,4:~i10)'),
    ({'page': 2, 'q': ('x', None)}, '~d(1:q=12:~t(1:x,2:~N),4:page=3:~i2)'),
    ({(1, 2): {}}, '~d(15:~t(3:~i1,3:~i2)=4:~d())'),
    # An identifier inside a container is text: no token, no slot.
    (('alkey:users#1',), '~t(13:alkey:users#1)'),
])
def test_nested_elements_are_length_prefixed(value, expected):
    assert key(value) == expected


def test_top_level_strings_keep_their_readable_form():
    assert key('a/b', 'c~d', '100%', '', 'x,y:(z)') == \
        'a%2Fb/c%7Ed/100%25/~E/x,y:(z)'
    assert _native.encode_key(['alkey:users#1', ('a',)], ['tok']) == \
        'alkey:users#1~tok/~t(1:a)'


def test_strings_cannot_imitate_structure():
    tricky = [
        ('a', 'b'), ('a,b',), ('a,1:b',), ('1:a,1:b',), ('a,1:b', ''),
        (('a',), 'b'), (('a', 'b'),), ['a', 'b'], {'a', 'b'}, {'a': 'b'},
        {'a=1:b'}, {'a': '=1:b'}, {'a=1:': 'b'}, ('~t(1:a)',), '~t(1:a,1:b)',
        '~t(1:a)', ('3:~i1',), (1,), ('1',), ('~i1',), ((), ()), ('4:~t()',),
        (('',),), ('',), ((),), ([],), (frozenset(),), ({},), (None,),
        ('~N',), ('2:~N',), ('a)', 'b'), ('a', ')b'), ('a),1:(b',),
    ]
    keys = [key(value) for value in tricky]
    for (a, ka), (b, kb) in itertools.combinations(zip(tricky, keys), 2):
        assert ka != kb, (a, b, ka)


def test_equal_containers_give_equal_keys_whatever_their_order():
    assert key({'b': [1], 'a': {2, 3}}) == key({'a': {3, 2}, 'b': [1]})
    # Members whose text starts alike but whose lengths differ.
    assert key({'a': 1, 'a=1:': 2}) == key({'a=1:': 2, 'a': 1})
    assert key(frozenset({'a', 'a,', ',a'})) == key(frozenset({',a', 'a,', 'a'}))


def test_no_byte_is_escaped_twice():
    leaf = '%/~' * 100
    flat = key(leaf)
    assert len(flat) == 900
    for depth in (1, 10, 63):
        deep = key(nested(depth, leaf))
        assert deep.count('%') == flat.count('%') == 300
        assert len(deep) < len(flat) + 10 * depth


@pytest.mark.parametrize('wrap', [tuple, list, frozenset, dict])
def test_key_size_grows_linearly_with_nesting(wrap):
    sizes = [len(key(nested(depth, ',:()%' * 10, wrap))) for depth in range(64)]
    steps = [b - a for a, b in zip(sizes, sizes[1:])]
    # A level adds its tag, parentheses, the length's digits (and for a
    # dict the key's element): a few bytes, whatever is below it.
    assert max(steps) <= 14
    assert sizes[-1] < sizes[0] + 14 * 63


@pytest.mark.parametrize('wrap', [tuple, list, frozenset, dict])
def test_containers_nest_64_deep_at_most(wrap):
    assert key(nested(64, 'x', wrap))          # 64 levels
    with pytest.raises(ValueError) as info:
        key(nested(65, 'x', wrap))
    message = str(info.value)
    assert 'nested more than 64 deep' in message
    assert 'at level 65' in message
    assert 'flatten the value, or pass its parts as separate arguments' in message
    # However deep the value goes, and wherever the deep branch is.
    with pytest.raises(ValueError, match='nested more than 64 deep'):
        key('a', [1, (2, nested(100000, None))])


def test_the_nesting_limit_is_raised_through_the_key_generator(kg):
    with pytest.raises(ValueError, match='nested more than 64 deep'):
        kg('alkey:users#1', nested(70, ()))
    assert kg('alkey:users#1', nested(63, ())) == kg('alkey:users#1', nested(63, ()))


def test_a_self_referencing_list_is_refused_at_the_limit():
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match='nested more than 64 deep'):
        key(loop)


# --------------------------------------------------------------------------
# Tokens in the key (issue 5): escaped once, when read from Redis


def stored(server: Any, oid: str) -> str:
    return server.admin.get(f'{TOKEN_NAMESPACE}:{oid}')


def test_a_hand_set_token_is_escaped_once_in_the_key(server, client, kg):
    set_token(client, 'alkey:users#1', 'a%b/c~d.e f\x00\u00e9')
    key = kg('alkey:users#1')
    epochs = f"{stored(server, 'alkey:users#!')}.{stored(server, 'alkey:*#!')}"
    assert key == f'alkey:users#1~a%25b%2Fc%7Ed%2Ee%20f%00%C3%A9.{epochs}'
    # What get_token reads back is unchanged: only "%" and bytes outside
    # printable ASCII are escaped there.
    assert get_token(client, 'alkey:users#1') == 'a%25b/c~d.e%20f%00%C3%A9'


def test_each_slot_folds_in_its_own_tables_epoch(server, kg):
    args = ('alkey:users#1', 'alkey:tags#s:a', 'alkey:users#2', 'alkey:tags#*',
            'alkey:*#!', 'alkey:public.users#3', 'alkey:users#!')
    key = kg(*args)
    users, tags = stored(server, 'alkey:users#!'), stored(server, 'alkey:tags#!')
    public, world = stored(server, 'alkey:public.users#!'), stored(server, 'alkey:*#!')
    own = {oid: stored(server, oid) for oid in args}
    assert key.split('/') == [
        f"alkey:users#1~{own['alkey:users#1']}.{users}.{world}",
        f"alkey:tags#s:a~{own['alkey:tags#s:a']}.{tags}.{world}",
        f"alkey:users#2~{own['alkey:users#2']}.{users}.{world}",
        f"alkey:tags#*~{own['alkey:tags#*']}.{world}",
        f'alkey:*#!~{world}',
        f"alkey:public.users#3~{own['alkey:public.users#3']}.{public}.{world}",
        f'alkey:users#!~{users}',
    ]


@pytest.mark.parametrize('count', [1, 16, 17, 40, 300])
def test_calls_of_any_size_read_every_token_once(server, kg, count):
    # Small calls keep their arrays on the stack, large ones on the heap.
    args = [f'alkey:t{i % 7}#{i}' for i in range(count)]
    key = kg(*args, 'tail')
    server.reset_stats()
    assert kg(*args, 'tail') == key
    assert server.command_counts() == {'mget': 1}
    world = stored(server, 'alkey:*#!')
    for oid, segment in zip(args, key.split('/')):
        table = oid.split('#')[0]
        assert segment == f"{oid}~{stored(server, oid)}.{stored(server, table + '#!')}.{world}"
    assert key.endswith('/tail')


def test_keys_with_text_beyond_ascii_are_built_and_hashed_alike(client, kg):
    hashed = CacheKeyGenerator(client, hash_keys=True)
    for args in [('é', 'alkey:users#1'), ('alkey:users#1', ('\U0001f600',)),
                 ('x', 'alkey:users#1'), ('é',), ()]:
        key = kg(*args)
        assert hashed(*args) == hashlib.sha256(key.encode('utf-8')).hexdigest()
    assert kg('é', 'alkey:users#1').startswith('é/alkey:users#1~')
    assert kg('alkey:users#1', ('\U0001f600',)).endswith('/~t(4:\U0001f600)')
    assert kg() == ''
    assert _native.encode_key(['alkey:users#1', 'é'], ['t/é']) == 'alkey:users#1~t%2Fé/é'
