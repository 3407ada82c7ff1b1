"""Properties (hypothesis) of keys and identifiers.

- Injective keys: two argument tuples that differ (by value, type or
  structure, or by the tokens of their identifiers) never give the same
  key; equal ones (dicts and sets in any order) give the same key.  Checked
  on the encoder alone, and through CacheKeyGenerator over Redis with tokens
  set by hand to hostile values.
- The hashed form is the SHA-256 of the readable one.
- Identifiers round-trip: get_object_id() of an instance, whatever its
  primary key, unpacks to its table and key; different keys, different
  identifiers; the C and Python grammars agree.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import itertools
import math
import uuid
from typing import Any
from urllib.parse import unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from alkey import _native
from alkey.cache import CacheKeyGenerator, set_token
from alkey.utils import _OID_INSTANCE, _check_oid, get_object_id, unpack_object_id

FAST = settings(max_examples=150, deadline=None, database=None)
FEW = settings(max_examples=25, deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------
# Values and their meaning


def is_slot(value: Any) -> bool:
    """A top-level argument that names a token: a row, table or global
    identifier, or an epoch."""
    if type(value) is not str:
        return False
    return _native.oid_kind(value) is not None


def canon(value: Any) -> Any:
    """What a value means to a cache key: equal canon, equal key, and
    the other way round."""
    kind = type(value)
    if value is None:
        return ('N',)
    if kind is bool:
        return ('T', value)
    if kind is int:
        return ('i', value)
    if kind is float:
        return ('f', repr(value))  # -0.0 is not 0.0; every NaN is one
    if kind is str:
        return ('s', value)
    if kind is bytes:
        return ('b', value)
    if kind is tuple:
        return ('t', tuple(canon(v) for v in value))
    if kind is list:
        return ('l', tuple(canon(v) for v in value))
    if kind is dict:
        return ('d', frozenset((canon(k), canon(v)) for k, v in value.items()))
    if kind in (set, frozenset):
        return ('S', frozenset(canon(v) for v in value))
    raise TypeError(kind)


def canon_args(args: tuple, tokens: dict[str, str]) -> Any:
    return tuple(('slot', a, tokens[a]) if is_slot(a) else canon(a) for a in args)


IDENTIFIERS = [
    'alkey:users#1', 'alkey:users#2', 'alkey:users#-1', 'alkey:users#*',
    'alkey:*#*', 'alkey:users#!', 'alkey:*#!', 'alkey:tags#s:a%2Fb',
    'alkey:tags#s:a', 'alkey:tags#s:', 'alkey:public.users#1',
    'alkey:memberships#1,s:admin', 'alkey:memberships#1,s:admin,2',
    'alkey:docs#u:6f1c0d2e-8b7a-4c1e-9a55-0d5e4c3b2a10',
    # Not identifiers: plain text.
    'alkey:users#01', 'alkey:users#', 'alkey:users', 'alkey:users#s:a/b',
    'alkey:users#1~x', 'alkey:Users#1 ',
]

text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=8) | \
    st.text(alphabet='a/~%.:#*!,()_-\\ 0123456789ATFNsbtfx', max_size=8)
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(-3, 3)
    | st.floats(allow_nan=True) | text | st.binary(max_size=6)
    | st.sampled_from(IDENTIFIERS)
)
hashable = st.recursive(
    scalars,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.tuples(inner) | st.lists(inner, max_size=3).map(tuple)
        | st.lists(inner, max_size=3)
        | st.dictionaries(hashable, inner, max_size=3)
        | st.sets(hashable, max_size=3) | st.frozensets(hashable, max_size=3)
    ),
    max_leaves=10,
)


def wrap_in(value: Any, kinds: list[str]) -> Any:
    """value inside one container per kind, the first innermost; a set
    member or dict key that is unhashable goes in a tuple instead."""
    for kind in kinds:
        if kind == 'tuple':
            value = (value,)
        elif kind == 'list':
            value = [value, 'x,1:y']
        elif kind == 'dict':
            value = {'k,=1:': value}
        else:
            try:
                value = {value: None} if kind == 'dict key' else frozenset([value])
            except TypeError:
                value = (value,)
    return value


# Deep chains of containers of every kind (issue 6), within the nesting
# limit of 64 levels: values above are a few levels deep at most.
deep_values = st.builds(
    wrap_in, values,
    st.lists(st.sampled_from(['tuple', 'list', 'dict', 'dict key', 'frozenset']),
             min_size=2, max_size=40))
arg_tuples = st.lists(values | deep_values, max_size=4).map(tuple)


def token_of(oid: str, salt: str = '') -> str:
    """A fixed token per identifier, of the alphabet and shape Redis gives
    (22 base64url characters per part, parts joined by '.')."""
    import base64
    digest = hashlib.sha256((salt + oid).encode()).digest()
    part = base64.urlsafe_b64encode(digest).decode()[:22]
    return f'{part}.{part[::-1]}'


class FixedTokens(dict):
    """token_of() of every identifier, unless set otherwise."""

    def __missing__(self, oid: str) -> str:
        return token_of(oid)


def key_of(args: tuple, tokens: dict[str, str], hashed: bool = False) -> str:
    return _native.encode_key(list(args), [tokens[a] for a in args if is_slot(a)], hashed)


@st.composite
def near_variants(draw, args: tuple) -> tuple:
    """An argument tuple a small edit away from ``args``: the edits that
    would collide in a careless encoding."""
    args = list(args)
    edit = draw(st.sampled_from([
        'split', 'join', 'wrap', 'unwrap', 'retype', 'escape', 'drop', 'nest_id',
        'imitate',
    ]))
    strings = [i for i, a in enumerate(args) if type(a) is str]
    if edit == 'split' and strings:
        i = draw(st.sampled_from(strings))
        cut = draw(st.integers(0, len(args[i])))
        args[i:i + 1] = [args[i][:cut], args[i][cut:]]
    elif edit == 'join' and len(args) >= 2:
        i = draw(st.integers(0, len(args) - 2))
        sep = draw(st.sampled_from(['/', '', '~', '%2F', '.']))
        args[i:i + 2] = [f'{args[i]}{sep}{args[i + 1]}']
    elif edit == 'wrap' and args:
        i = draw(st.integers(0, len(args) - 1))
        wrap = draw(st.sampled_from([tuple, list, frozenset]))
        try:
            args[i] = wrap([args[i]])
        except TypeError:  # unhashable in a frozenset
            args[i] = (args[i],)
    elif edit == 'unwrap':
        for i, a in enumerate(args):
            if type(a) in (tuple, list, frozenset, set) and len(a) == 1:
                args[i] = next(iter(a))
                break
    elif edit == 'retype' and args:
        i = draw(st.integers(0, len(args) - 1))
        a = args[i]
        if type(a) in (int, bool, float):
            args[i] = draw(st.sampled_from([str(a), repr(a), float(a) if not
                                            isinstance(a, float) else int(a) if
                                            math.isfinite(a) else str(a),
                                            str(a).encode(), f'~i{a}', bool(a)]))
        elif type(a) is str:
            args[i] = draw(st.sampled_from([a.encode('utf-8', 'surrogatepass'),
                                            (a,), [a], None if a == '' else '']))
        elif type(a) is bytes:
            args[i] = a.decode('latin-1')
        elif a is None:
            args[i] = draw(st.sampled_from(['', (), [], 'None', '~N', 0, False]))
    elif edit == 'escape' and strings:
        i = draw(st.sampled_from(strings))
        args[i] = (args[i].replace('/', '%2F').replace('~', '%7E')
                   if '/' in args[i] or '~' in args[i] else args[i] + '%25')
    elif edit == 'drop' and args:
        del args[draw(st.integers(0, len(args) - 1))]
    elif edit == 'nest_id':
        args.append((draw(st.sampled_from(IDENTIFIERS)),))
    elif edit == 'imitate' and args:
        # A string spelling an argument's encoding, or a container whose
        # string spells the elements of the original.
        i = draw(st.integers(0, len(args) - 1))
        spelled = key_of((args[i],), FixedTokens())
        spelled = draw(st.sampled_from([spelled, unquote(spelled)]))
        if type(args[i]) in (tuple, list) and spelled.endswith(')'):
            inner = spelled[3:-1]
            spelled = draw(st.sampled_from([
                spelled, type(args[i])([inner]), type(args[i])(inner.split(',')),
            ]))
        args[i] = spelled
    return tuple(args)


def assert_injective(pairs: list[tuple[Any, str]]) -> None:
    """pairs of (meaning, key): equal meanings have equal keys, and only
    they do."""
    by_key: dict[str, Any] = {}
    by_meaning: dict[Any, str] = {}
    for meaning, key in pairs:
        if key in by_key:
            assert by_key[key] == meaning, f'collision on {key!r}'
        if meaning in by_meaning:
            assert by_meaning[meaning] == key, f'two keys for one meaning: {meaning!r}'
        by_key[key] = meaning
        by_meaning[meaning] = key


# --------------------------------------------------------------------------
# The encoder alone


@FAST
@given(st.lists(arg_tuples, min_size=2, max_size=6), st.data())
def test_different_arguments_never_share_a_key(tuples, data):
    tokens = FixedTokens()
    candidates = list(tuples)
    for args in tuples:
        candidates.append(data.draw(near_variants(args)))
    pairs = []
    for args in candidates:
        pairs.append((canon_args(args, tokens), key_of(args, tokens)))
    assert_injective(pairs)


@FAST
@given(arg_tuples, st.data())
def test_an_identifier_token_change_always_changes_the_key(args, data):
    slots = [a for a in args if is_slot(a)]
    if not slots:
        args = args + ('alkey:users#1',)
        slots = ['alkey:users#1']
    tokens = FixedTokens()
    changed = FixedTokens()
    oid = data.draw(st.sampled_from(slots))
    changed[oid] = data.draw(st.sampled_from([
        token_of(oid, 'other'), tokens[oid] + '.', tokens[oid][:-1],
        tokens[oid].replace('.', '%2E', 1), tokens[oid] + '/x',
    ]))
    assert key_of(args, tokens) != key_of(args, changed)


@FAST
@given(st.dictionaries(hashable, values, max_size=5),
       st.sets(st.integers() | text | st.binary(max_size=4), max_size=6),
       st.randoms(use_true_random=False))
def test_equal_dicts_and_sets_give_one_key_whatever_their_order(mapping, items, rnd):
    entries = list(mapping.items())
    rnd.shuffle(entries)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert (_native.encode_key([mapping, items], [])
            == _native.encode_key([dict(entries), frozenset(shuffled)], []))


@FAST
@given(arg_tuples)
def test_the_hashed_key_is_the_sha256_of_the_readable_one(args):
    tokens = FixedTokens()
    readable = key_of(args, tokens)
    hashed = key_of(args, tokens, hashed=True)
    assert hashed == hashlib.sha256(readable.encode('utf-8')).hexdigest()
    assert len(hashed) == 64 and hashed == hashed.lower()


# --------------------------------------------------------------------------
# Through CacheKeyGenerator over Redis


@FEW
@given(st.lists(arg_tuples, min_size=2, max_size=5))
def test_cache_keys_over_redis_are_injective_and_hash_to_sha256(kg, client, tuples):
    hashed_kg = CacheKeyGenerator(client, hash_keys=True)
    pairs = []
    for args in tuples:
        key = kg(*args)
        assert kg(*args) == key  # the tokens are stored: stable
        assert hashed_kg(*args) == hashlib.sha256(key.encode('utf-8')).hexdigest()
        # The meaning includes the stored tokens, read back from the key's
        # own slots; plain arguments have none.
        pairs.append((canon_args(args, _StoredTokens(client)), key))
    assert_injective(pairs)


class _StoredTokens:
    """tokens[oid]: what Redis holds for an identifier now."""

    def __init__(self, client):
        self.client = client

    def __getitem__(self, oid):
        return self.client.get(f'alkey.cache.TOKENS:{oid}')


hostile_tokens = st.text(alphabet=st.characters(blacklist_categories=('Cs',)),
                         min_size=1, max_size=10) | st.sampled_from(
    ['a/b', 'a~b', 'a.b', '%2F', '%', '.', '..', 'a/alkey:users#2~x', ' ', '\x00'])


@FEW
@given(st.lists(hostile_tokens, min_size=2, max_size=5, unique=True))
def test_hand_set_tokens_never_make_two_token_values_share_a_key(kg, client, tokens):
    """set_token() with any text: a token may hold '/', '~', '.' or '%',
    yet no value stands for another value or for another argument."""
    keys = {}
    for value in tokens:
        set_token(client, 'alkey:users#1', value)
        key = kg('alkey:users#1', 'tail')
        assert key not in keys, f'{value!r} and {keys.get(key)!r} share {key!r}'
        keys[key] = value
        # Nor may a token swallow the next argument.
        assert key != kg('alkey:users#1', 'tail', 'more')
    # Nor may one identifier's token spell out another's slot: a token
    # holding the text that follows it in a two-identifier key.
    for first, second in itertools.permutations(tokens, 2):
        set_token(client, 'alkey:users#1', first)
        set_token(client, 'alkey:users#2', second)
        pair = kg('alkey:users#1', 'alkey:users#2')
        _, rest = pair.split('~', 1)
        epochs = pair.split('/', 1)[0].split('.', 1)[1]
        forged = unquote(rest[:-len(epochs) - 1], errors='surrogateescape')
        set_token(client, 'alkey:users#1', forged)
        assert kg('alkey:users#1') != pair


# --------------------------------------------------------------------------
# Identifiers


class PropBase(DeclarativeBase):
    pass


class Everything(PropBase):
    """One primary key of every kind an identifier writes."""
    __tablename__ = 'every thing/#.%'
    __table_args__ = ({'schema': 'sché.ma'},)
    i: Mapped[int] = mapped_column(Integer, primary_key=True)
    s: Mapped[str] = mapped_column(String, primary_key=True)
    u: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    b: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    d: Mapped[datetime.date] = mapped_column(Date, primary_key=True)
    t: Mapped[datetime.datetime] = mapped_column(DateTime, primary_key=True)
    n: Mapped[decimal.Decimal] = mapped_column(Numeric, primary_key=True)
    f: Mapped[float] = mapped_column(Float, primary_key=True)


any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=12)
offsets = st.builds(
    lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes)),
    st.integers(-23 * 60, 23 * 60))
datetimes = st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc) | offsets)
decimals = st.decimals(allow_nan=False, allow_infinity=True)
floats = st.floats(allow_nan=False)
keys_of_everything = st.tuples(
    st.integers(), any_text, st.uuids(), st.binary(max_size=8), st.dates(),
    datetimes, decimals, floats)


def make_everything(values: tuple) -> Everything:
    return Everything(**dict(zip('isubdtnf', values)))


@FAST
@given(keys_of_everything)
def test_an_identifier_of_any_composite_key_round_trips(values):
    oid = get_object_id(make_everything(values))
    assert _native.valid_object_id(oid) and _check_oid(oid) == _OID_INSTANCE
    table, pk = unpack_object_id(oid)
    assert table == 'sché.ma.every thing/#.%'
    assert len(pk) == len(values)
    for got, want in zip(pk, values):
        assert type(got) is type(want)
        if isinstance(want, float):
            assert repr(got) == repr(want)  # -0.0 stays -0.0
        elif isinstance(want, decimal.Decimal):
            assert str(got) == str(want)
        elif isinstance(want, datetime.datetime):
            assert got == want and got.utcoffset() == want.utcoffset()
        else:
            assert got == want


@FAST
@given(keys_of_everything, keys_of_everything)
def test_different_primary_keys_give_different_identifiers(first, second):
    def meaning(values):
        return tuple(repr(v) if isinstance(v, float) else
                     str(v) if isinstance(v, decimal.Decimal) else
                     (v, v.utcoffset()) if isinstance(v, datetime.datetime) else v
                     for v in values)

    same = meaning(first) == meaning(second)
    assert (get_object_id(make_everything(first))
            == get_object_id(make_everything(second))) == same


@FAST
@given(st.one_of(st.integers(), any_text, st.uuids()), st.data())
def test_a_key_generator_resolves_an_instance_to_its_identifier(key, data):
    from tests.models import Document, Tag, User
    if isinstance(key, int):
        obj = User(id=key)
    elif isinstance(key, str):
        obj = Tag(name=key)
    else:
        obj = Document(id=key)
    oid = get_object_id(obj)
    token = token_of(oid)
    extra = data.draw(arg_tuples)
    assert _native.encode_key([obj, *extra], [token] + [token_of(a) for a in extra if is_slot(a)]) \
        == _native.encode_key([oid, *extra], [token] + [token_of(a) for a in extra if is_slot(a)])


@FAST
@given(st.text(alphabet=st.characters(blacklist_categories=()), min_size=1, max_size=10),
       st.none() | st.text(alphabet=st.characters(blacklist_categories=()),
                           min_size=1, max_size=6))
def test_a_table_identifier_round_trips(name, schema):
    oid = get_object_id(Table(name, MetaData(), Column('id', Integer), schema=schema))
    assert _native.valid_write_token(oid)
    assert unpack_object_id(oid) == (name if schema is None else f'{schema}.{name}', None)


oidish = st.text(alphabet='alkey:*#!.,%0123456789ABCDEFabsudtnfx-_ /~', max_size=24)


@settings(max_examples=1000, deadline=None, database=None)
@given(st.one_of(oidish, oidish.map(lambda s: 'alkey:' + s),
                 st.builds(lambda t, p: f'alkey:{t}#{p}', oidish, oidish)))
def test_the_c_and_python_grammars_agree(text_):
    kind = _check_oid(text_)
    assert _native.valid_object_id(text_) == (kind == 1)
    assert _native.valid_write_token(text_) == (kind in (2, 3))
