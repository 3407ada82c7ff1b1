"""The commit path: what alkey adds to a session's commit.

Three session factories over one engine, timed round-robin:

- without alkey: a plain ``sessionmaker``;
- with alkey: ``alkey.events.bind(maker, redis_client=<native client>)``,
  bound before its block and unbound after it, so that alkey's engine-wide
  listeners are not installed while the other two run;
- seed handlers: ``seed.SeedHandlers`` over redis-py.

Each session loads its rows once per round (untimed, ``expire_on_commit``
off); an operation changes a counter on each row (untimed) and the timer
covers ``commit()`` alone (flush, database commit, invalidation).  Also
timed: a read-only commit (after an untimed SELECT) and a flush of 10
changed rows on its own.
"""

from __future__ import annotations

import time
from typing import Any

from harness import Samples, Variant, run_interleaved

__all__ = ['COMMIT_CASES', 'CommitBench']

TABLE = 'alkey_bench_users'  # models.BenchRow
ROWS = 100

#: (label, kind, rows changed)
COMMIT_CASES = (
    ('commit, 1 changed row', 'commit', 1),
    ('commit, 10 changed rows', 'commit', 10),
    ('commit, 100 changed rows', 'commit', 100),
    ('read-only commit', 'readonly', 10),
    ('flush alone, 10 changed rows', 'flush', 10),
)

# Operations per variant per round (full run).
OPS = {1: 60, 10: 40, 100: 15}


class CommitBench:
    """The commit groups on one database."""

    def __init__(self, engine: Any, port: int, scale: float, rounds: int) -> None:
        import redis
        from models import BenchRow as Row
        from models import RowBase as Base
        from seed import SeedHandlers
        from sqlalchemy import select
        from sqlalchemy.orm import sessionmaker

        import alkey

        self.Row = Row
        self.select = select
        self.engine = engine
        self.metadata = Base.metadata
        self.scale = scale
        self.rounds = rounds
        self.native = alkey.Client('127.0.0.1', port)
        self.redis = redis.Redis('127.0.0.1', port)
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(Row.__table__.insert(),
                         [{'id': i, 'name': f'row {i}', 'counter': 0}
                          for i in range(1, ROWS + 1)])
        self.plain = sessionmaker(engine, expire_on_commit=False)
        self.with_alkey = sessionmaker(engine, expire_on_commit=False)
        self.with_seed = sessionmaker(engine, expire_on_commit=False)
        SeedHandlers(self.redis).bind(self.with_seed)

    def _bind(self) -> None:
        from alkey import events
        events.bind(self.with_alkey, redis_client=self.native)

    def _unbind(self) -> None:
        from alkey import events
        events.unbind(self.with_alkey)

    def check(self) -> None:
        """Before timing: a commit through each bound factory really
        replaces row 1's token (and a plain one does not)."""
        from alkey.cache import get_token

        oid = f'alkey:{TABLE}#1'

        def changed(maker: Any) -> bool:
            before = get_token(self.native, oid)
            with maker() as session:
                row = session.get(self.Row, 1)
                row.counter += 1
                session.commit()
            return get_token(self.native, oid) != before

        self._bind()
        try:
            alkey_ok = changed(self.with_alkey)
        finally:
            self._unbind()
        if not alkey_ok or not changed(self.with_seed) or changed(self.plain):
            raise SystemExit('benchmarks: a commit did not invalidate as expected')

    def round_trips(self, kind: str, rows: int) -> int:
        """Redis round trips alkey makes for one operation of ``kind`` (as
        ``alkey.stats()`` counts them; the timed part only)."""
        import alkey

        self._bind()
        try:
            with self.with_alkey() as session:
                objs = session.scalars(self.select(self.Row).where(self.Row.id <= rows)).all()
                session.commit()
                if kind == 'readonly':
                    session.execute(self.select(self.Row.id).where(self.Row.id == 1)).all()
                else:
                    for obj in objs:
                        obj.counter += 1
                before = alkey.stats()['redis_round_trips']
                if kind == 'flush':
                    session.flush()
                else:
                    session.commit()
                return alkey.stats()['redis_round_trips'] - before
        finally:
            self._unbind()

    def _variant(self, name: str, maker: Any, kind: str, rows: int, ops: int,
                 bound: bool) -> Variant:
        Row, select = self.Row, self.select
        held: dict[str, Any] = {}

        def before() -> None:
            if bound:
                self._bind()
            session = maker()
            held['session'] = session
            held['rows'] = session.scalars(
                select(Row).where(Row.id <= rows).order_by(Row.id)).all()
            session.commit()

        def after() -> None:
            held.pop('session').close()
            held.pop('rows')
            if bound:
                self._unbind()

        def run(n: int) -> list[int]:
            session, objs = held['session'], held['rows']
            pc = time.perf_counter_ns
            out: list[int] = []
            for _ in range(n):
                if kind == 'readonly':
                    session.execute(select(Row.id).where(Row.id == 1)).all()
                else:
                    for obj in objs:
                        obj.counter += 1
                if kind == 'flush':
                    t0 = pc()
                    session.flush()
                    out.append(pc() - t0)
                    session.commit()
                else:
                    t0 = pc()
                    session.commit()
                    out.append(pc() - t0)
            return out

        return Variant(name, run, ops, before, after)

    def case(self, label: str, kind: str, rows: int) -> dict[str, Samples]:
        ops = max(3, int(OPS[rows] * self.scale))
        variants = [
            self._variant('without alkey', self.plain, kind, rows, ops, False),
            self._variant('with alkey', self.with_alkey, kind, rows, ops, True),
            self._variant('seed handlers', self.with_seed, kind, rows, ops, False),
        ]
        for v in variants:  # warm: connections in the pools, code paths
            v.before()
            v.run(2)
            v.after()
        return run_interleaved(variants, self.rounds, label)

    def close(self) -> None:
        self.metadata.drop_all(self.engine)
        self.redis.close()
        self.native.close()
