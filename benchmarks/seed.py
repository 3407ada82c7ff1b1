"""The baselines: the seed package's algorithms, rewritten for the benchmark.

Written from their description, not from the seed's code:

- ``SeedKeyGenerator``: a cache key over redis-py, one ``GET`` per
  identifier argument, a new token stored with ``SETEX`` when it is missing,
  the parts joined with ``'/'``.  Tokens are timestamps, as the seed's were.
- ``SeedHandlers``: session listeners that ``SADD`` the changed identifiers
  to a per-session Redis set and ``EXPIRE`` it at every flush, and at commit
  read it back with ``SMEMBERS`` and replace each token in one pipeline of
  ``SET``\\ s (with the set's ``DEL``).

Neither is alkey; both exist only to be measured against it.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from sqlalchemy import event, inspect

__all__ = ['SeedHandlers', 'SeedKeyGenerator']

NAMESPACE = 'alkey.cache.TOKENS'
TTL = 60 * 60 * 24

# The seed's identifiers: alkey:<table>#<integer id>, alkey:<table>#* and
# alkey:*#*.
_IDENTIFIER = re.compile(r'alkey:(?:\w+#(?:\d+|\*)|\*#\*)\Z')


def _seed_id(obj: Any) -> str | None:
    """alkey:<table>#<id> of a mapped instance, as the seed spelled it."""
    state = inspect(obj, raiseerr=False)
    if state is None or not hasattr(state, 'mapper'):
        return None
    table = state.mapper.local_table.name
    identity = state.identity
    if identity is None:
        return f'alkey:{table}#*'
    return f'alkey:{table}#{identity[0]}'


def _timestamp_token() -> str:
    return repr(time.time())


class SeedKeyGenerator:
    """``gen(*args)``: one GET per identifier (or instance), SETEX on a
    miss, ``'/'.join``."""

    def __init__(self, redis_client: Any, namespace: str = NAMESPACE,
                 ttl: int = TTL) -> None:
        self.redis = redis_client
        self.namespace = namespace
        self.ttl = ttl

    def token(self, oid: str) -> str:
        key = f'{self.namespace}:{oid}'
        value = self.redis.get(key)
        if value is None:
            value = _timestamp_token()
            self.redis.setex(key, self.ttl, value)
            return value
        return value.decode('utf-8') if isinstance(value, bytes) else value

    def __call__(self, *args: Any) -> str:
        parts = []
        for arg in args:
            oid = arg if isinstance(arg, str) and _IDENTIFIER.match(arg) else None
            if oid is None and not isinstance(arg, (str, bytes, int, float)):
                oid = _seed_id(arg)
            if oid is None:
                parts.append(str(arg))
            else:
                parts.append(f'{oid}#{self.token(oid)}')
        return '/'.join(parts)


class SeedHandlers:
    """Flush, commit and rollback listeners in the seed's manner: the
    changed identifiers live in a Redis set per session."""

    _counter = itertools.count(1)

    def __init__(self, redis_client: Any, namespace: str = NAMESPACE,
                 ttl: int = TTL) -> None:
        self.redis = redis_client
        self.namespace = namespace
        self.ttl = ttl

    def bind(self, session_factory: Any) -> None:
        event.listen(session_factory, 'after_flush', self.after_flush)
        event.listen(session_factory, 'after_commit', self.after_commit)
        event.listen(session_factory, 'after_soft_rollback', self.after_rollback)

    def _set_key(self, session: Any) -> str:
        sid = session.info.get('seed_id')
        if sid is None:
            sid = session.info['seed_id'] = next(self._counter)
        return f'alkey.handle.CHANGED:{sid}'

    def after_flush(self, session: Any, flush_context: Any) -> None:
        oids: set[str] = set()
        for obj in itertools.chain(session.new, session.dirty, session.deleted):
            oid = _seed_id(obj)
            if oid is not None:
                oids.add(oid)
                oids.add(oid.rsplit('#', 1)[0] + '#*')
        if not oids:
            return
        oids.add('alkey:*#*')
        key = self._set_key(session)
        self.redis.sadd(key, *oids)
        self.redis.expire(key, self.ttl)

    def after_commit(self, session: Any) -> None:
        key = self._set_key(session)
        oids = self.redis.smembers(key)
        if not oids:
            return
        pipe = self.redis.pipeline()
        for oid in oids:
            if isinstance(oid, bytes):
                oid = oid.decode('utf-8')
            pipe.set(f'{self.namespace}:{oid}', _timestamp_token(), ex=self.ttl)
        pipe.delete(key)
        pipe.execute()

    def after_rollback(self, session: Any, previous_transaction: Any) -> None:
        self.redis.delete(self._set_key(session))
