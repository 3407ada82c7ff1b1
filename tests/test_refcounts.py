"""Reference counts of every entry point of alkey._native, on a debug
interpreter (`make test-refcount`).

A debug build of CPython counts every reference it hands out and takes back
(sys.gettotalrefcount()).  Each case below calls one entry point, or one of
its error paths, many times after a warm-up and checks that the total did
not move: a missing Py_DECREF on any path shows up as at least one
reference per call, so as thousands of them.  The server is the suite's own
redis-server (paused, ACL-restricted or absent for the error paths), never
a mock.

Skipped on a release interpreter, which has no sys.gettotalrefcount().
ALKEY_REFCOUNT_SCALE multiplies every number of rounds (0.1 for a quick
look, 10 for a longer hunt).
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import gc
import importlib.util
import itertools
import os
import sys
import sysconfig
import types
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest

if not hasattr(sys, 'gettotalrefcount'):
    pytest.skip('needs a debug interpreter (sys.gettotalrefcount); '
                'make test-refcount', allow_module_level=True)

import alkey
import alkey._pending
import alkey.cache
import alkey.utils
from alkey import _native
from alkey.client import parse_url
from tests.conftest import RedisServer, free_port

SCALE = float(os.environ.get('ALKEY_REFCOUNT_SCALE', '1'))
# Calls that stay in the process, calls that make Redis round trips, and
# calls that wait for a timeout (one new connection each: a paused server
# queues them in its listen backlog).
LOCAL = max(100, int(100_000 * SCALE))
NETWORK = max(100, int(10_000 * SCALE))
SLOW = max(50, int(300 * SCALE))

# The most the total may move over a whole measurement, whatever the number
# of calls: the interpreter may still fill a cache once during the measured
# calls after the warm-up (a type's attribute cache entry, a specialised
# bytecode's inline cache, an interned string, a free list).  None of these
# grows with the number of calls; a leak of one reference per call moves
# the total by at least SLOW (50 or more).  What the measuring itself holds
# (the int read first) is measured once and taken off (see growth()).
TOLERANCE = 10

TIMEOUT = 0.002  # seconds: socket timeouts of the clients of a paused server


def measure(call: Callable[[], object], rounds: int) -> int:
    """How much sys.gettotalrefcount() moved over `rounds` calls, after
    rounds / 10 calls of warm-up (at least 20)."""
    for _ in itertools.repeat(None, max(20, rounds // 10)):
        call()
    gc.collect()
    before = sys.gettotalrefcount()
    for _ in itertools.repeat(None, rounds):
        call()
    gc.collect()
    return sys.gettotalrefcount() - before


def nothing() -> None:
    pass


# What measure() itself adds: the int it read first is still alive when
# it reads the total again.
MEASURING = measure(nothing, 1000)


def growth(call: Callable[[], object], rounds: int) -> int:
    """How much `rounds` calls moved sys.gettotalrefcount() (after a
    warm-up)."""
    return measure(call, rounds) - MEASURING


def raises(exc: type[BaseException] | tuple, func: Callable[..., object],
           *args: Any, match: str = '', **kwargs: Any) -> Callable[[], None]:
    """A call of func(*args, **kwargs) that must raise exc (whose message
    holds `match`): the error path under test, and nothing else."""

    def call() -> None:
        try:
            func(*args, **kwargs)
        except exc as e:
            if match and match not in str(e):
                raise AssertionError(f'{type(e).__name__}: {e} does not say {match!r}')
            return
        raise AssertionError(f'{func!r}{args!r} did not raise {exc}')

    return call


def returns(expected: object, func: Callable[..., object], *args: Any,
            **kwargs: Any) -> Callable[[], None]:
    """A call of func(*args, **kwargs) that must return `expected`."""

    def call() -> None:
        got = func(*args, **kwargs)
        if got != expected:
            raise AssertionError(f'{func!r}{args!r} returned {got!r}, not {expected!r}')

    return call


def calls(*funcs: Callable[[], object]) -> Callable[[], None]:
    """One round that makes several calls."""

    def call() -> None:
        for f in funcs:
            f()

    return call


# --------------------------------------------------------------------------
# Objects the cases key and hooks they install


class Row:
    """Stands for a model instance: the test resolver maps it to its oid."""

    def __init__(self, oid: object) -> None:
        self.oid = oid


class Broken:
    """A row whose identity cannot be computed."""


def resolver(obj: object) -> object:
    if isinstance(obj, Row):
        return obj.oid
    if isinstance(obj, Broken):
        raise RuntimeError('no identity')
    return None


class Handler:
    """The error handler: counts the failures cache_key() recovered from."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, exc: BaseException) -> None:
        self.count += 1


def failing_handler(exc: BaseException) -> None:
    raise RuntimeError('the error handler fails too')


class Text:
    def __str__(self) -> str:
        return 'a text/with~escapes%'


class BadText:
    def __str__(self) -> str:
        raise RuntimeError('no text')


class Colour(enum.IntEnum):
    RED = 1


class Half(float):
    def __repr__(self) -> str:
        return 'never used'


class Oid(str):
    """A str subclass: ChangeSet copies it into an exact str."""


class Stop(BaseException):
    """Not an Exception: cache_key() must let it through."""


class Seconds:
    """Anything with total_seconds(), as set(ex=...) accepts."""

    def __init__(self, value: object) -> None:
        self.value = value

    def total_seconds(self) -> object:
        if isinstance(self.value, type):  # a new exception each time: one
            raise self.value('x')         # raised again grows its traceback
        return self.value


class Falsy:
    def __bool__(self) -> bool:
        raise RuntimeError('no truth value')


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


DEEP = nested(100_000)  # beyond any recursion limit
SURROGATE = '\ud800'
ARGS = ('alkey:users#1', 'alkey:users#*', 'alkey:*#*', 'alkey:users#!', 'x/y~z%',
        '', 1, -2**70, Colour.RED, 2.5, Half(0.5), b'\xff\x00', bytearray(b'ab'),
        None, True, (1, 'a', (2.0,)), [None], {'a': [1, (2, 3)], 'b': {4, 5}},
        frozenset({'z', 'y'}), Text(), SURROGATE, Row('alkey:users#2'),
        Row('alkey:tags#s:a%2Fb'))
TOKENS = ['t1', 'a/b%c', 'tok\u00e9', 'x.y', 't5', 't6']


# --------------------------------------------------------------------------
# The cases


@dataclass
class Env:
    """What the cases run against: the suite's redis-server and clients."""

    server: RedisServer
    client: Any          # TCP
    unix: Any            # over the server's unix socket
    dead: Any            # a port nobody listens on
    handler: Handler


@dataclass
class Case:
    name: str
    covers: tuple[str, ...]
    rounds: int
    setup: Callable[[Env], contextlib.AbstractContextManager[Callable[[], object]]]


CASES: dict[str, Case] = {}


def case(name: str, covers: str, rounds: int = LOCAL):
    """Registers a case: a function of the Env returning the call to repeat
    (or a generator yielding it, for a case with set-up and clean-up).
    `covers` names the entry points it reaches, space-separated."""

    def register(func: Callable[[Env], Any]) -> Callable[[Env], Any]:
        if func.__code__.co_flags & 0x20:  # a generator: set-up and clean-up
            setup = contextlib.contextmanager(func)
        else:
            @contextlib.contextmanager
            def setup(env: Env) -> Iterator[Callable[[], object]]:
                yield func(env)
        assert name not in CASES, name
        CASES[name] = Case(name, tuple(covers.split()), rounds, setup)
        return func

    return register


def new_client(server: RedisServer, **options: Any) -> Any:
    return alkey.Client(**{**parse_url(server.url), **options})


@contextlib.contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    server.pause()
    try:
        yield
    finally:
        server.resume()


@contextlib.contextmanager
def quiet_unraisable() -> Iterator[None]:
    """The failing error handler is reported through sys.unraisablehook:
    keep the thousands of reports out of the output."""
    saved = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        sys.unraisablehook = saved


def limited_user(server: RedisServer) -> Any:
    """A client of an ACL user that may not run MGET or SET: token lookups
    and invalidations get error replies (NOPERM).  The user goes with the
    next test's server cleaning."""
    server.admin_command('ACL', 'SETUSER', 'limited', 'on', '>secret', '~*', '&*',
                         '+@all', '-mget', '-set')
    return new_client(server, username='limited', password='secret', db=1)


# ---- module functions: keys ------------------------------------------------


@case('random_token', 'random_token')
def _(env):
    return _native.random_token


@case('valid_object_id / valid_write_token / oid_kind',
      'valid_object_id valid_write_token oid_kind')
def _(env):
    values = ('alkey:users#1', 'alkey:users#*', 'alkey:*#*', 'alkey:*#!', 'alkey:users#!',
              'nope', SURROGATE, 1, None, Oid('alkey:users#1'))
    funcs = (_native.valid_object_id, _native.valid_write_token, _native.oid_kind)
    return calls(*(lambda f=f, v=v: f(v) for f in funcs for v in values))


@case('encode_key', 'encode_key')
def _(env):
    return calls(lambda: _native.encode_key(ARGS, TOKENS),
                 lambda: _native.encode_key(list(ARGS), tuple(TOKENS), True),
                 lambda: _native.encode_key((), []),
                 lambda: _native.encode_key(('plain', 1), [], False))


@case('encode_key: bad arguments', 'encode_key')
def _(env):
    return calls(
        raises(TypeError, _native.encode_key, ARGS),
        raises(TypeError, _native.encode_key, ARGS, TOKENS, False, 1),
        raises(TypeError, _native.encode_key, 'args', TOKENS),
        raises(TypeError, _native.encode_key, ARGS, 'tokens'),
        raises(ValueError, _native.encode_key, ARGS, TOKENS[:2], match='expected 6'),
        raises(TypeError, _native.encode_key, ('alkey:users#1',), [1]),
        raises(UnicodeEncodeError, _native.encode_key, ('alkey:users#1',), [SURROGATE]),
        raises(RuntimeError, _native.encode_key, ARGS, TOKENS, Falsy()),
    )


@case('encode_key: values that cannot be keyed', 'encode_key')
def _(env):
    return calls(
        raises(TypeError, _native.encode_key, (object(),), [], match='memory address'),
        raises(RuntimeError, _native.encode_key, (BadText(),), [], match='no text'),
        raises(RuntimeError, _native.encode_key, ([1, BadText()],), []),
        raises(RuntimeError, _native.encode_key, ({'k': BadText()},), []),
        raises(RuntimeError, _native.encode_key, ({BadText()},), []),
        raises(TypeError, _native.encode_key, ((Row('alkey:users#1'),),), [],
               match='inside a tuple'),
        raises(TypeError, _native.encode_key, ({'k': Row('alkey:users#1')},), []),
        raises(RuntimeError, _native.encode_key, (Broken(),), [], match='no identity'),
        raises(ValueError, _native.encode_key, (Row('users#1'),), [],
               match='not a valid identifier'),
        raises(ValueError, _native.encode_key, (Row(SURROGATE),), []),
        raises(TypeError, _native.encode_key, (Row(1),), [], match='must return a str'),
    )


@case('encode_key: too deep', 'encode_key', rounds=LOCAL // 100)
def _(env):
    return raises(ValueError, _native.encode_key, (DEEP,), [], match='64 deep')


# ---- module functions: hooks ------------------------------------------------


@case('_set_hooks / _set_pending', '_set_hooks _set_pending')
def _(env):
    pending = {'alkey:users#1'}

    def call():
        _native._set_hooks(None, None)
        _native._set_hooks(resolver, env.handler)
        _native._set_pending(pending)
        _native._set_pending(None)

    yield call
    _native._set_hooks(resolver, env.handler)


@case('_set_hooks / _set_pending: bad arguments', '_set_hooks _set_pending')
def _(env):
    return calls(raises(TypeError, _native._set_hooks, 1, None),
                 raises(TypeError, _native._set_hooks, None, 'x'),
                 raises(TypeError, _native._set_hooks, None),
                 raises(TypeError, _native._set_pending, ['alkey:users#1']),
                 raises(TypeError, _native._set_pending, frozenset()))


# ---- module functions: cache_key ---------------------------------------------


@case('cache_key: tokens in Redis', 'cache_key', rounds=NETWORK)
def _(env):
    return calls(lambda: _native.cache_key(env.client, ARGS, 'ns', 60, False),
                 lambda: _native.cache_key(env.unix, list(ARGS), 'ns', 60, True))


@case('cache_key: tokens missing (SET NX)', 'cache_key', rounds=NETWORK)
def _(env):
    args = ('alkey:users#1', Row('alkey:tags#s:x'), 'page')
    return calls(env.client.flushdb,
                 lambda: _native.cache_key(env.client, args, 'ns', 60, False))


@case('cache_key: no identifiers, no source', 'cache_key')
def _(env):
    return calls(lambda: _native.cache_key(env.client, ('plain', 1, None), 'ns', 60, False),
                 lambda: _native.cache_key(None, ARGS, 'ns', 60, False),
                 lambda: _native.cache_key(None, ARGS, 'ns', 60, True))


@case('cache_key: pending invalidation', 'cache_key')
def _(env):
    _native._set_pending({'alkey:users#1', 'other'})
    yield lambda: _native.cache_key(env.client, ARGS, 'ns', 60, False)
    _native._set_pending(alkey._pending._all)


@case('cache_key: callable source', 'cache_key')
def _(env):
    def source(keys):
        return [b'\xff.%' if i % 2 else f'tok/{i}' for i in range(len(keys))]

    return calls(lambda: _native.cache_key(source, ARGS, 'ns', 60, False),
                 lambda: _native.cache_key(source, ARGS, 'ns', 60, True))


@case('cache_key: failing callable sources (absorbed)', 'cache_key')
def _(env):
    def raising(keys):
        raise RuntimeError('redis-py said no')

    sources = (raising, lambda keys: [], lambda keys: 42, lambda keys: [1] * len(keys),
               lambda keys: [SURROGATE] * len(keys), 'not callable')
    before = env.handler.count
    yield calls(*(lambda s=s: _native.cache_key(s, ARGS, 'ns', 60, False)
                  for s in sources[:-1]),
                raises(TypeError, _native.cache_key, sources[-1], ARGS, 'ns', 60, False,
                       match='source must be'))
    assert env.handler.count > before


@case('cache_key: failing error handler (unraisable)', 'cache_key')
def _(env):
    def raising(keys):
        raise RuntimeError('redis-py said no')

    _native._set_hooks(resolver, failing_handler)
    with quiet_unraisable():
        yield lambda: _native.cache_key(raising, ARGS, 'ns', 60, False)
    _native._set_hooks(resolver, env.handler)


@case('cache_key: errors that propagate', 'cache_key')
def _(env):
    def stop(keys):
        raise Stop()

    def no_memory(keys):
        raise MemoryError()

    return calls(raises(Stop, _native.cache_key, stop, ARGS, 'ns', 60, False),
                 raises(MemoryError, _native.cache_key, no_memory, ARGS, 'ns', 60, False))


@case('cache_key: bad arguments', 'cache_key')
def _(env):
    ck = _native.cache_key
    return calls(
        raises(TypeError, ck, None, ()),
        raises(TypeError, ck, None, ARGS, 1, 60, False, match='namespace'),
        raises(UnicodeEncodeError, ck, None, ARGS, SURROGATE, 60, False),
        raises(ValueError, ck, None, ARGS, 'ns', 0, False, match='ttl'),
        raises(TypeError, ck, None, ARGS, 'ns', '60', False, match='ttl'),
        raises(TypeError, ck, None, ARGS, 'ns', True, False, match='ttl'),
        raises(OverflowError, ck, None, ARGS, 'ns', 2**70, False),
        raises(RuntimeError, ck, None, ARGS, 'ns', 60, Falsy()),
        raises(TypeError, ck, None, 'args', 'ns', 60, False, match='tuple or list'),
        raises(TypeError, ck, None, (object(),), 'ns', 60, False),
        raises(RuntimeError, ck, None, (Broken(),), 'ns', 60, False),
    )


@case('cache_key: dead server (absorbed)', 'cache_key', rounds=NETWORK)
def _(env):
    before = env.handler.count
    yield lambda: _native.cache_key(env.dead, ARGS, 'ns', 60, False)
    assert env.handler.count > before


@case('cache_key: MGET refused (absorbed)', 'cache_key', rounds=NETWORK)
def _(env):
    limited = limited_user(env.server)
    before = env.handler.count
    yield lambda: _native.cache_key(limited, ARGS, 'ns', 60, False)
    assert env.handler.count > before
    limited.close()


@case('cache_key: timeout (absorbed)', 'cache_key', rounds=SLOW)
def _(env):
    slow = new_client(env.server, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    before = env.handler.count
    with paused(env.server):
        yield lambda: _native.cache_key(slow, ARGS, 'ns', 60, False)
    assert env.handler.count > before


# ---- module functions: fetch_tokens ----------------------------------------


@case('fetch_tokens', 'fetch_tokens', rounds=NETWORK)
def _(env):
    keys = ['ns:alkey:users#1', 'ns:alkey:users#2']
    return calls(lambda: _native.fetch_tokens(env.client, keys, 60),
                 lambda: _native.fetch_tokens(env.client, (), 60),
                 lambda: env.client.delete(keys[1]),
                 lambda: _native.fetch_tokens(env.unix, tuple(keys), 60))


@case('fetch_tokens: bad arguments', 'fetch_tokens')
def _(env):
    ft = _native.fetch_tokens
    return calls(raises(TypeError, ft, env.client, ['k']),
                 raises(TypeError, ft, lambda keys: keys, ['k'], 60, match='Client'),
                 raises(ValueError, ft, env.client, ['k'], -1),
                 raises(TypeError, ft, env.client, 42, 60),
                 raises(TypeError, ft, env.client, ['k', b'k'], 60, match='str'),
                 raises(UnicodeEncodeError, ft, env.client, ['k', SURROGATE], 60))


@case('fetch_tokens: dead server', 'fetch_tokens', rounds=NETWORK)
def _(env):
    return raises(alkey.ConnectionError, _native.fetch_tokens, env.dead, ['k'], 60)


@case('fetch_tokens: MGET refused', 'fetch_tokens', rounds=NETWORK)
def _(env):
    limited = limited_user(env.server)
    yield raises(alkey.ReplyError, _native.fetch_tokens, limited, ['k'], 60,
                 match='NOPERM')
    limited.close()


@case('fetch_tokens: timeout', 'fetch_tokens', rounds=SLOW)
def _(env):
    slow = new_client(env.server, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    with paused(env.server):
        yield raises(alkey.TimeoutError, _native.fetch_tokens, slow, ['k'], 60)


# ---- module functions: invalidate_tokens -------------------------------------


@case('invalidate_tokens', 'invalidate_tokens', rounds=NETWORK)
def _(env):
    changes = _native.ChangeSet()
    changes.update(['alkey:users#1', 'alkey:users#*', 'alkey:*#*'])
    it = _native.invalidate_tokens
    return calls(returns(3, it, env.client, changes, 'ns', 60),
                 returns(2, it, env.unix, ['alkey:users#1', 'alkey:users#!'], 'ns', 60),
                 lambda: returns(1, it, env.client, (o for o in ('alkey:*#!',)), 'ns', 60)(),
                 returns(0, it, env.client, [], 'ns', 60))


@case('invalidate_tokens: extra commands', 'invalidate_tokens', rounds=NETWORK)
def _(env):
    it = _native.invalidate_tokens
    extra = [('ZADD', 'ns:intents', '1', 'x'), ['ZREM', 'ns:intents', b'x']]
    return calls(returns(1, it, env.client, ['alkey:users#1'], 'ns', 60, extra),
                 returns(1, it, env.client, ['alkey:users#1'], 'ns', 60, None),
                 raises(alkey.ReplyError, it, env.client, ['alkey:users#1'], 'ns', 60,
                        [('ZREM',)], match='nothing was applied'),
                 raises(TypeError, it, env.client, ['alkey:users#1'], 'ns', 60, ('ZREM', 'k')),
                 raises(ValueError, it, env.client, ['alkey:users#1'], 'ns', 60, [()]),
                 raises(TypeError, it, env.client, ['alkey:users#1'], 'ns', 60, [('ZREM', 1)]),
                 raises(TypeError, it, env.client, ['alkey:users#1'], 'ns', 60, 5),
                 raises(UnicodeEncodeError, it, env.client, ['alkey:users#1'], 'ns', 60,
                        [('ZREM', SURROGATE)]))


@case('stats / _count_invalidation / _reset_stats', 'stats _count_invalidation _reset_stats')
def _(env):
    error = ConnectionRefusedError('refused')
    return calls(lambda: _native.stats(),
                 lambda: _native._count_invalidation(2, 0, None),
                 lambda: _native._count_invalidation(0, 1, error),
                 raises(TypeError, _native._count_invalidation, 'x', 0, None),
                 lambda: _native._reset_stats())


@case('invalidate_tokens: bad arguments', 'invalidate_tokens')
def _(env):
    it = _native.invalidate_tokens
    return calls(raises(TypeError, it, env.client, [], 'ns'),
                 raises(TypeError, it, None, [], 'ns', 60, match='Client'),
                 raises(TypeError, it, env.client, [], b'ns', 60, match='namespace'),
                 raises(TypeError, it, env.client, [], 'ns', 1.5, match='ttl'),
                 raises(TypeError, it, env.client, 42, 'ns', 60),
                 raises(UnicodeEncodeError, it, env.client, ['alkey:users#1'], SURROGATE, 60),
                 raises(ValueError, it, env.client, ['alkey:users#1', 'users#2'], 'ns', 60),
                 raises(TypeError, it, env.client, ['alkey:users#1', 2], 'ns', 60),
                 raises(ValueError, it, env.client, [SURROGATE], 'ns', 60))


@case('invalidate_tokens: dead server', 'invalidate_tokens', rounds=NETWORK)
def _(env):
    return raises(alkey.ConnectionError, _native.invalidate_tokens, env.dead,
                  ['alkey:users#1'], 'ns', 60)


@case('invalidate_tokens: SET refused', 'invalidate_tokens', rounds=NETWORK)
def _(env):
    limited = limited_user(env.server)
    yield raises(alkey.ReplyError, _native.invalidate_tokens, limited,
                 ['alkey:users#1', 'alkey:users#2'], 'ns', 60, match='2 of 2')
    limited.close()


@case('invalidate_tokens: timeout', 'invalidate_tokens', rounds=SLOW)
def _(env):
    slow = new_client(env.server, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    with paused(env.server):
        yield raises(alkey.TimeoutError, _native.invalidate_tokens, slow,
                     ['alkey:users#1'], 'ns', 60)


# ---- the module itself -----------------------------------------------------


@case('module: a new instance (exec, traverse, clear, free)', 'module',
      rounds=LOCAL // 100)
def _(env):
    spec = importlib.util.find_spec('alkey._native')

    def call():
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

    return call


# ---- Client: construction ----------------------------------------------------


@case('Client(): construction and deallocation', 'Client.__new__ Client.__init__',
      rounds=LOCAL)
def _(env):
    return calls(lambda: alkey.Client(),
                 lambda: alkey.Client('127.0.0.1', 1, 2, 'pw', 'user', socket_timeout=1,
                                      socket_connect_timeout=0.5, max_connections=3),
                 lambda: alkey.Client(path='/tmp/x.sock', password='pw', db=1),
                 lambda: weakref.ref(alkey.Client()))


@case('Client(): bad arguments', 'Client.__init__')
def _(env):
    C = alkey.Client
    twice = C()
    return calls(
        raises(alkey.ConfigurationError, C, port=0),
        raises(alkey.ConfigurationError, C, db=-1),
        raises(OverflowError, C, db=2**70),
        raises(TypeError, C, host=1),
        raises(ValueError, C, host='a\0b', match='NUL'),
        raises(UnicodeEncodeError, C, password=SURROGATE),
        raises(alkey.ConfigurationError, C, username='u', match='needs a password'),
        raises(TypeError, C, socket_timeout='1'),
        raises(ValueError, C, socket_connect_timeout=-1),
        raises(TypeError, C, max_connections=True),
        raises(alkey.ConfigurationError, C, max_connections=0),
        raises(OverflowError, C, max_connections=2**70),
        raises(alkey.ConfigurationError, C, 'localhost', ssl=True,
               ssl_ca_certs='/nonexistent/ca.pem'),
        raises(alkey.ConfigurationError, C, path='/tmp/x.sock', ssl=True),
        raises(TypeError, C, 'h', 1, 2, 3, 4, 5),
        raises(TypeError, C, nonsense=1),
        raises(TypeError, twice.__init__, match='twice'),
    )


@case('Client: properties and repr', 'Client.host Client.port Client.path '
      'Client.username Client.db Client.max_connections Client.connection_count '
      'Client.ssl Client.socket_timeout Client.socket_connect_timeout Client.__repr__')
def _(env):
    names = ('host', 'port', 'path', 'username', 'db', 'max_connections',
             'connection_count', 'ssl', 'socket_timeout', 'socket_connect_timeout')
    clients = (env.client, env.unix, alkey.Client(username='u', password='p', db=3,
                                                   max_connections=2),
               alkey.Client(path='/tmp/x.sock', username='u', password='p'),
               alkey.Client.__new__(alkey.Client))
    return calls(*(lambda c=c, n=n: getattr(c, n) for c in clients for n in names),
                 *(lambda c=c: repr(c) for c in clients))


@case('Client, ChangeSet: gc traversal, weak references',
      'Client.tp_traverse ChangeSet.tp_traverse Client.weakref')
def _(env):
    changes = _native.ChangeSet()
    changes.add('alkey:users#1')

    def call():
        gc.get_referents(env.client)
        gc.get_referents(changes)
        ref = weakref.ref(env.client)
        ref()

    return call


# ---- Client: commands ----------------------------------------------------------


@case('Client.get / ttl / exists / delete', 'Client.get Client.ttl Client.exists '
      'Client.delete', rounds=NETWORK)
def _(env):
    c = env.client
    env.client.set('k', 'v')
    return calls(returns(b'v', c.get, 'k'), returns(None, c.get, b'missing'),
                 returns(None, c.get, 12), returns(None, env.unix.get, memoryview(b'x')),
                 returns(-1, c.ttl, 'k'), returns(-2, c.ttl, 'missing'),
                 returns(1, c.exists, 'k', 'missing'), returns(0, c.delete, 'missing', 2.5))


@case('Client.get / ttl / exists / delete: bad arguments', 'Client.get Client.ttl '
      'Client.exists Client.delete')
def _(env):
    c = env.client
    return calls(raises(TypeError, c.get, object(), match='invalid input'),
                 raises(TypeError, c.get, True), raises(TypeError, c.ttl, None),
                 raises(UnicodeEncodeError, c.get, SURROGATE),
                 raises(TypeError, c.exists), raises(TypeError, c.delete),
                 raises(TypeError, c.delete, 'a', [1]))


@case('Client.set / setex', 'Client.set Client.setex', rounds=NETWORK)
def _(env):
    c = env.client
    return calls(returns(True, c.set, 'k', 'v'),
                 returns(True, c.set, b'k', 1.5, ex=10),
                 returns(True, c.set, 'k', bytearray(b'v'), px=datetime.timedelta(seconds=9)),
                 returns(None, c.set, 'k', 'v', nx=True),
                 returns(True, c.set, 'k', 'v', xx=True, ex=Seconds(5.5)),
                 returns(True, c.setex, 'e', 10, 'v'),
                 returns(True, env.unix.setex, 'e', datetime.timedelta(hours=1), 2))


@case('Client.set / setex: bad arguments', 'Client.set Client.setex')
def _(env):
    c = env.client
    return calls(raises(ValueError, c.set, 'k', 'v', nx=True, xx=True),
                 raises(ValueError, c.set, 'k', 'v', ex=1, px=1),
                 raises(TypeError, c.set, 'k'),
                 raises(TypeError, c.set, 'k', 'v', bad=1),
                 raises(TypeError, c.set, 'k', object()),
                 raises(TypeError, c.set, 'k', 'v', ex='10', match='timedelta'),
                 raises(TypeError, c.set, 'k', 'v', ex=1.5),
                 raises(TypeError, c.set, 'k', 'v', px=True),
                 raises(ValueError, c.set, 'k', 'v', ex=0, match='above 0'),
                 raises(ValueError, c.set, 'k', 'v', px=Seconds(-1.0)),
                 raises(OverflowError, c.set, 'k', 'v', ex=2**70),
                 raises(OverflowError, c.set, 'k', 'v', ex=Seconds(float('inf'))),
                 raises(TypeError, c.set, 'k', 'v', ex=Seconds('1')),
                 raises(LookupError, c.set, 'k', 'v', ex=Seconds(LookupError)),
                 raises(TypeError, c.setex, 'k', 10),
                 raises(ValueError, c.setex, 'k', -1, 'v'),
                 raises(TypeError, c.setex, 'k', 10, None))


@case('Client.mget', 'Client.mget', rounds=NETWORK)
def _(env):
    c = env.client
    c.set('k', 'v')
    return calls(returns([b'v', None], c.mget, ['k', 'missing']),
                 returns([b'v'], c.mget, ('k',)),
                 returns([b'v', None, b'v'], c.mget, 'k', 'missing', b'k'),
                 returns([None, b'v', b'v'], c.mget, ['missing', 'k'], 'k'))


@case('Client.mget: bad arguments', 'Client.mget')
def _(env):
    c = env.client
    return calls(raises(TypeError, c.mget), raises(ValueError, c.mget, []),
                 raises(TypeError, c.mget, ['k', object()]),
                 raises(TypeError, c.mget, ('k',), None))


@case('Client.ping / flushdb / close', 'Client.ping Client.flushdb Client.close',
      rounds=NETWORK)
def _(env):
    c = env.client
    return calls(returns(True, c.ping), returns(True, c.flushdb),
                 returns(True, c.flushdb, asynchronous=True), c.close,
                 returns(True, env.unix.ping))


@case('Client.flushdb / close: bad arguments', 'Client.flushdb Client.close')
def _(env):
    c = env.client
    return calls(raises(TypeError, c.flushdb, bad=1), raises(TypeError, c.flushdb, 1, 2),
                 raises(TypeError, c.close, 1), raises(TypeError, c.ping, 1))


@case('Client.execute_command: replies', 'Client.execute_command', rounds=NETWORK)
def _(env):
    c = env.client
    ex = c.execute_command
    script = "return {1, 'two', redis.error_reply('nested'), {3}, false}"

    def nested_error():
        reply = ex('EVAL', script, 0)
        if not isinstance(reply[2], alkey.ReplyError):
            raise AssertionError(reply)

    return calls(returns(True, ex, 'SET', 'k', 'v'), returns(b'string', ex, 'TYPE', 'k'),
                 lambda: ex('DEL', 'h'), returns(1, ex, 'HSET', 'h', 'f', 1),
                 returns([b'f', b'1'], ex, 'HGETALL', 'h'),
                 returns(None, ex, b'GET', bytearray(b'missing')),
                 returns(0, ex, 'DEL', 2.5, memoryview(b'm')), nested_error,
                 returns(b'PONG', env.unix.execute_command, 'PING'))


@case('Client.execute_command: state-changing commands', 'Client.execute_command',
      rounds=NETWORK)
def _(env):
    ex = env.client.execute_command
    return calls(returns(True, ex, 'SELECT', 0),
                 returns(True, ex, 'CLIENT', 'SETNAME', 'refcounts'),
                 raises(ValueError, ex, 'MULTI', match='does not run'),
                 raises(ValueError, ex, b'subscribe', 'ch'))


@case('Client.execute_command: error replies', 'Client.execute_command', rounds=NETWORK)
def _(env):
    ex = env.client.execute_command
    env.client.set('s', 'text')
    return calls(raises(alkey.ReplyError, ex, 'LPUSH', 's', 'x', match='WRONGTYPE'),
                 raises(alkey.ReplyError, ex, 'NO-SUCH-COMMAND'),
                 raises(alkey.ReplyError, ex, 'EVAL', "return redis.error_reply('\xff')", 0))


@case('Client.execute_command: bad arguments', 'Client.execute_command')
def _(env):
    ex = env.client.execute_command
    return calls(raises(TypeError, ex), raises(TypeError, ex, 'GET', object()),
                 raises(TypeError, ex, None), raises(UnicodeEncodeError, ex, 'GET', SURROGATE))


# ---- Client: failures ----------------------------------------------------------


@case('Client: uninitialised', 'Client.ping Client.get Client.__repr__')
def _(env):
    bare = alkey.Client.__new__(alkey.Client)
    return calls(raises(TypeError, bare.ping, match='never initialised'),
                 raises(TypeError, bare.get, 'k'), lambda: repr(bare))


@case('Client: dead server', 'Client.ping Client.get Client.set Client.mget '
      'Client.execute_command', rounds=NETWORK)
def _(env):
    d = env.dead
    unix = alkey.Client(path=str(env.server.directory / 'no-such.sock'))
    return calls(raises(alkey.ConnectionError, d.ping, match='Connection refused'),
                 raises(alkey.ConnectionError, d.get, 'k'),
                 raises(alkey.ConnectionError, d.set, 'k', 'v', ex=1),
                 raises(alkey.ConnectionError, d.mget, ['k']),
                 raises(alkey.ConnectionError, d.execute_command, 'PING'),
                 raises(alkey.ConnectionError, unix.ping))


@case('Client: AUTH and SELECT', 'Client.ping', rounds=NETWORK)
def _(env):
    limited = limited_user(env.server)  # AUTH user password, SELECT 1
    with_password = new_client(env.server, password='secret')
    wrong_user = new_client(env.server, username='limited', password='wrong')
    bad_db = new_client(env.server, db=99)
    yield calls(returns(True, limited.ping), limited.close,
                raises(alkey.AuthenticationError, with_password.ping, match='refused AUTH'),
                raises(alkey.AuthenticationError, wrong_user.ping, match='WRONGPASS'),
                raises(alkey.ReplyError, bad_db.ping, match='refused SELECT'))


@case('Client: stale pooled connection', 'Client.ping Client.execute_command',
      rounds=NETWORK)
def _(env):
    victim, killer = env.client, env.unix

    def call():
        own = victim.execute_command('CLIENT', 'ID')
        killer.execute_command('CLIENT', 'KILL', 'ID', own)
        try:
            victim.ping()  # finds its idle connection closed, opens another
        except alkey.ConnectionError:  # the server's close came late
            victim.ping()

    return call


@case('Client: timeout', 'Client.ping Client.get Client.execute_command', rounds=SLOW)
def _(env):
    slow = new_client(env.server, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    with paused(env.server):
        yield calls(raises(alkey.TimeoutError, slow.ping, match='socket_timeout'),
                    raises(alkey.TimeoutError, slow.execute_command, 'GET', 'k'))


# ---- ChangeSet ----------------------------------------------------------------


@case('ChangeSet', 'ChangeSet.__new__ ChangeSet.add ChangeSet.update ChangeSet.mark '
      'ChangeSet.rollback_to ChangeSet.clear ChangeSet.oids ChangeSet.__len__ '
      'ChangeSet.__contains__ ChangeSet.__iter__ ChangeSet.__repr__')
def _(env):
    oids = ['alkey:users#1', 'alkey:users#*', 'alkey:*#*', 'alkey:tags#s:a%2Fb']

    def call():
        c = _native.ChangeSet()
        c.add('alkey:users#1')
        c.add(Oid('alkey:users#2'))
        mark = c.mark()
        c.update(oids)
        c.update(o for o in ('alkey:users#3', 'alkey:users#1'))
        found = ('alkey:users#3' in c, 1 in c, len(c))
        list(c)
        c.oids()
        repr(c)
        if found != (True, False, 6):
            raise AssertionError(found)
        c.rollback_to(mark)
        c.rollback_to(c.mark())
        c.update(oids)
        c.clear()

    return call


@case('ChangeSet: refused identifiers and marks', 'ChangeSet.__new__ ChangeSet.add '
      'ChangeSet.update ChangeSet.rollback_to')
def _(env):
    c = _native.ChangeSet()
    c.update(['alkey:users#1', 'alkey:users#2'])

    def failing():
        yield 'alkey:users#3'
        raise RuntimeError('the iterable fails')

    def call():
        raises(TypeError, _native.ChangeSet, 1)()
        raises(TypeError, _native.ChangeSet, x=1)()
        raises(TypeError, c.add, 1)()
        raises(ValueError, c.add, 'users#1')()
        raises(ValueError, c.add, SURROGATE)()
        raises(ValueError, c.add, Oid('nope'))()
        raises(TypeError, c.update, 'alkey:users#3')()
        raises(TypeError, c.update, 42)()
        raises(ValueError, c.update, ['alkey:users#3', 'alkey:users#4', 'bad'])()
        raises(RuntimeError, c.update, failing())()
        raises(TypeError, c.rollback_to, '1')()
        raises(TypeError, c.rollback_to, True)()
        raises(ValueError, c.rollback_to, 3)()
        raises(ValueError, c.rollback_to, -1)()
        raises(ValueError, c.rollback_to, 2**70)()
        if c.oids() != ['alkey:users#1', 'alkey:users#2']:
            raise AssertionError(c.oids())

    return call


# --------------------------------------------------------------------------
# The tests


def entry_points() -> set[str]:
    """Every function of alkey._native and every method, property and slot
    of its types, by name."""
    names = {'module'}
    for name, value in vars(_native).items():
        if isinstance(value, types.BuiltinFunctionType):
            names.add(name)
    for cls in (_native.Client, _native.ChangeSet):
        for name, value in vars(cls).items():
            if name in ('__doc__', '__module__'):
                continue
            if isinstance(value, (types.MethodDescriptorType, types.GetSetDescriptorType,
                                  types.WrapperDescriptorType, types.MemberDescriptorType,
                                  types.BuiltinFunctionType)):
                names.add(f'{cls.__name__}.{name}')
    return names


# Reached through gc and weakref, not by name.
SLOTS_WITHOUT_NAMES = {'Client.tp_traverse', 'ChangeSet.tp_traverse', 'Client.weakref'}


def test_every_entry_point_has_a_reference_count_case():
    covered = {name for c in CASES.values() for name in c.covers}
    missing = entry_points() - covered
    assert not missing, f'entry points of alkey._native without a case here: {sorted(missing)}'
    unknown = covered - entry_points() - SLOTS_WITHOUT_NAMES
    assert not unknown, f'cases cover entry points that do not exist: {sorted(unknown)}'


def test_the_extension_was_built_for_this_interpreter():
    # A debug interpreter also loads a release build of the extension, whose
    # own Py_INCREF/Py_DECREF would not count in sys.gettotalrefcount().
    assert _native.__file__.endswith(sysconfig.get_config_var('EXT_SUFFIX')), _native.__file__


RESULTS: list[tuple[str, int, int]] = []


@pytest.fixture(scope='module', autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Shows each case's total reference count change after the module."""
    yield
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin('terminalreporter')
    capture = plugins.get_plugin('capturemanager')
    if reporter is None or not RESULTS:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line('')
        reporter.write_sep('-', f'sys.gettotalrefcount() change per case '
                                f'(tolerance {TOLERANCE})')
        for name, rounds, delta in RESULTS:
            reporter.write_line(f'{delta:+6d} over {rounds:>7d} calls  {name}')


@pytest.fixture
def env(server: RedisServer, client: Any) -> Iterator[Env]:
    unix = alkey.Client(path=str(server.socket_path))
    dead = alkey.Client(host='127.0.0.1', port=free_port(), socket_connect_timeout=1)
    handler = Handler()
    _native._set_hooks(resolver, handler)
    try:
        yield Env(server, client, unix, dead, handler)
    finally:
        _native._set_hooks(alkey.utils.resolve_identity, alkey.cache._log_failure)
        _native._set_pending(alkey._pending._all)
        unix.close()


@pytest.mark.parametrize('name', list(CASES))
def test_reference_counts_stay_level(env: Env, name: str) -> None:
    c = CASES[name]
    with c.setup(env) as call:
        delta = growth(call, c.rounds)
    RESULTS.append((name, c.rounds, delta))
    assert abs(delta) <= TOLERANCE, (
        f'{name}: sys.gettotalrefcount() moved by {delta} over {c.rounds} calls')
