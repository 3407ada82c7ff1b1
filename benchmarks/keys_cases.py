"""cache_key against its baselines: tokens that exist, tokens that are missing.

Arguments are identifiers of one table (``'alkey:users#1'`` ...), so each
call reads one token per argument plus the table's epoch and the global
epoch: n + 2 keys, in the order alkey sends them (checked against the
server before timing).  The 10-argument case is also run with mapped
instances, which adds the identity lookup through SQLAlchemy.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any, Callable

from harness import Samples, Variant, redis_benchmark_p50_ns, run_interleaved

__all__ = ['ARG_COUNTS', 'KeyBench', 'token_keys']

ARG_COUNTS = (1, 10, 100)
NAMESPACE = 'alkey.cache.TOKENS'
TABLE = 'users'

# Calls per variant per round, by number of arguments (full run).
CALLS_EXISTING = {1: 1000, 10: 400, 100: 40}
CALLS_MISSING = {1: 500, 10: 200, 100: 20}
# redis-benchmark requests per round (one client).
FLOOR_REQUESTS = 2000


def token_keys(ids: Sequence[str]) -> list[str]:
    """The Redis keys alkey reads for instance identifiers of one table, in
    its order: each identifier's own key, with the table's epoch and the
    global epoch after the first."""
    keys: list[str] = []
    for i, oid in enumerate(ids):
        keys.append(f'{NAMESPACE}:{oid}')
        if i == 0:
            table = oid.split(':', 1)[1].split('#', 1)[0]
            keys.append(f'{NAMESPACE}:alkey:{table}#!')
            keys.append(f'{NAMESPACE}:alkey:*#!')
    return keys


def identifiers(start: int, n: int) -> tuple[str, ...]:
    return tuple(f'alkey:{TABLE}#{i}' for i in range(start, start + n))


def timed(fn: Callable[..., Any], args: Sequence[Any]) -> Callable[[int], list[int]]:
    """run(n): n calls of fn(*args), each timed."""
    def run(n: int) -> list[int]:
        pc = time.perf_counter_ns
        out: list[int] = []
        append = out.append
        for _ in range(n):
            t0 = pc()
            fn(*args)
            append(pc() - t0)
        return out
    return run


def timed_batches(fn: Callable[..., Any], batches: list[Any]) -> Callable[[int], list[int]]:
    """run(n): fn(*batch) for each of the first n prepared argument tuples
    (the list is refilled before each round)."""
    def run(n: int) -> list[int]:
        pc = time.perf_counter_ns
        out: list[int] = []
        append = out.append
        for args in batches[:n]:
            t0 = pc()
            fn(*args)
            append(pc() - t0)
        return out
    return run


class KeyBench:
    """The cache-key groups over one redis-server."""

    def __init__(self, port: int, scale: float, rounds: int) -> None:
        import redis
        from models import User, UserBase
        from seed import SeedKeyGenerator
        from sqlalchemy import create_engine, select
        from sqlalchemy.orm import Session

        import alkey
        from alkey.cache import CacheKeyGenerator

        self.port = port
        self.scale = scale
        self.rounds = rounds
        self.native = alkey.Client('127.0.0.1', port)
        self.redis = redis.Redis('127.0.0.1', port)
        self.kg = CacheKeyGenerator(self.native)
        self.kg_redis_py = CacheKeyGenerator(self.redis)
        self.seed = SeedKeyGenerator(self.redis)
        self._fresh = itertools.count(10_000_000)

        # Mapped instances users#1..10 (loaded from an in-memory SQLite, so
        # they are persistent and have an identity).
        engine = create_engine('sqlite://')
        UserBase.metadata.create_all(engine)
        self._session = Session(engine, expire_on_commit=False)
        self._session.add_all(User(id=i) for i in range(1, 11))
        self._session.commit()
        self.instances = tuple(self._session.scalars(
            select(User).order_by(User.id)).all())

    def check(self) -> None:
        """Before timing: the keys alkey reads are exactly token_keys(),
        the redis-py path gives the same key, and the seed rendition reads
        the same tokens."""
        self.native.flushdb()
        for n in ARG_COUNTS:
            ids = identifiers(1, n)
            self.kg(*ids)
            stored = {k.decode() for k in self.native.execute_command('KEYS', '*')}
            expected = set(token_keys(ids))
            if stored != expected:
                raise SystemExit(f'benchmarks: alkey read {sorted(stored)[:5]}..., '
                                 f'expected {sorted(expected)[:5]}...')
            if self.kg_redis_py(*ids) != self.kg(*ids):
                raise SystemExit('benchmarks: the redis-py path gives another key')
            self.native.flushdb()
        ids = identifiers(1, 10)
        if self.kg(*self.instances) != self.kg(*ids):
            raise SystemExit('benchmarks: instances and identifiers differ')
        if self.seed(*self.instances) != self.seed(*ids):
            raise SystemExit('benchmarks: seed rendition: instances and ids differ')

    def _calls(self, table: dict[int, int], n: int) -> int:
        return max(5, int(table[n] * self.scale))

    def existing(self, n: int) -> dict[str, Samples]:
        ids = identifiers(1, n)
        keys = token_keys(ids)
        self.kg(*ids)  # creates the tokens
        calls = self._calls(CALLS_EXISTING, n)
        floor_n = max(200, int(FLOOR_REQUESTS * self.scale))
        variants = [
            Variant('alkey, native client', timed(self.kg, ids), calls),
            Variant('alkey, redis-py client', timed(self.kg_redis_py, ids), calls),
            Variant('seed algorithm (redis-py)', timed(self.seed, ids), calls),
            Variant('redis-py mget', timed(self.redis.mget, (keys,)), calls),
            Variant('alkey.Client.mget', timed(self.native.mget, (keys,)), calls),
            Variant('redis-benchmark MGET p50',
                    lambda _n: [redis_benchmark_p50_ns(self.port, ['MGET', *keys],
                                                       floor_n)], 1),
        ]
        if n == 10:
            variants.insert(1, Variant('alkey, native client, mapped instances',
                                       timed(self.kg, self.instances), calls))
            variants.insert(4, Variant('seed algorithm, mapped instances',
                                       timed(self.seed, self.instances), calls))
        # Every variant once, untimed: connections made, code paths warm.
        for v in variants:
            v.run(2)
        return run_interleaved(variants, self.rounds, f'{n} existing token(s)')

    def missing(self, n: int) -> dict[str, Samples]:
        """Every call names n rows never seen (fresh identifiers, so their
        tokens are missing; the epochs exist).  The tokens made in a round
        are deleted after it, untimed."""
        self.kg(*identifiers(1, 1))  # the epochs exist, as in a live system
        calls = self._calls(CALLS_MISSING, n)
        variants = []
        for name, fn in (('alkey, native client', self.kg),
                         ('alkey, redis-py client', self.kg_redis_py),
                         ('seed algorithm (redis-py)', self.seed),
                         ('redis-py mget', None),
                         ('alkey.Client.mget', None)):
            variants.append(self._fresh_variant(name, fn, n, calls))
        for v in variants:
            v.before()
            v.run(2)
            v.after()
        return run_interleaved(variants, self.rounds, f'{n} missing token(s)')

    def _fresh_variant(self, name: str, fn: Callable[..., Any] | None, n: int,
                       calls: int) -> Variant:
        batches: list[Any] = []
        made: list[str] = []

        def before() -> None:
            batches.clear()
            made.clear()
            for _ in range(calls):
                ids = identifiers(next(self._fresh) * 100, n)
                if fn is None:
                    batches.append((token_keys(ids),))
                else:
                    batches.append(ids)
                    made.extend(f'{NAMESPACE}:{oid}' for oid in ids)

        def after() -> None:
            for i in range(0, len(made), 1000):
                self.native.delete(*made[i:i + 1000])

        if fn is None:
            fn = self.redis.mget if name.startswith('redis-py') else self.native.mget
        return Variant(name, timed_batches(fn, batches), calls, before, after)

    def close(self) -> None:
        self._session.close()
        self.redis.close()
        self.native.close()
