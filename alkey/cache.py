"""Tokens and cache keys.

A cache key names model instances, model classes, identifiers such as
``'alkey:users#1'`` and plain values::

    key_generator = get_cache_key_generator()
    key = key_generator(user, Post, 'sidebar', 2)

Each instance, class or identifier contributes its *token*, a random value
kept in Redis that a commit changing the row (or table) replaces, so the key
changes by itself.  All the tokens of one call come in one Redis round trip
(two when some must be created).  When Redis fails, the key is built from
fresh tokens that are stored nowhere: a cache miss, never a stale hit.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from . import _native
from ._log import RateLimitedWarning
from ._native import Client
from .client import get_redis_client
from .constants import MAX_CACHE_DURATION, TOKEN_NAMESPACE
from .utils import get_object_id, resolve_identity

__all__ = [
    'CacheKeyGenerator',
    'get_cache_key_generator',
    'get_token',
    'get_token_key',
    'set_token',
]

logger = logging.getLogger('alkey')

#: At most one warning about an unreachable Redis per this many seconds.
WARNING_INTERVAL = 10.0


class _FailureLog(RateLimitedWarning):
    """Rate-limited warnings for Redis failures the caller never sees."""

    def __call__(self, exc: BaseException) -> None:
        self.warn('Redis failed, serving fresh cache keys (misses) until it '
                  'answers again: %s: %s', type(exc).__name__, exc)


_log_failure = _FailureLog(WARNING_INTERVAL)
_native._set_hooks(resolve_identity, _log_failure)


def _is_native(client: Any) -> bool:
    return isinstance(client, Client)


def _check_client(client: Any) -> None:
    if _is_native(client):
        return
    if callable(getattr(client, 'mget', None)) and callable(
            getattr(client, 'pipeline', None)):
        return
    raise TypeError(
        f'redis_client must be an alkey Client (alkey.client.get_redis_client()) '
        f'or a redis-py client, not {type(client).__name__}')


def _identifier(instance_or_oid: Any) -> str:
    """The identifier of an instance, class, table or identifier string."""
    oid = get_object_id(instance_or_oid)
    if _native.oid_kind(oid) is not None:
        return oid
    raise ValueError(
        f'expected a model instance, a model class or an identifier such as '
        f"'alkey:users#1', 'alkey:users#*' or 'alkey:*#*'; got {instance_or_oid!r}")


def get_token_key(instance_or_oid: Any, namespace: str | None = None) -> str:
    """The Redis key holding the token of an instance, class or identifier:
    ``'<namespace>:<identifier>'``."""
    return f'{namespace or TOKEN_NAMESPACE}:{_identifier(instance_or_oid)}'


def _redis_py_source(client: Any, ttl: int) -> Callable[[list[str]], list[Any]]:
    """A token source over a redis-py client: the same algorithm as the
    native path (one MGET; SET NX EX and MGET for the missing ones)."""

    def fetch(keys: list[str]) -> list[Any]:
        values = list(client.mget(keys))
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            fresh = [_native.random_token() for _ in missing]
            pipe = client.pipeline(transaction=False)
            for i, token in zip(missing, fresh):
                pipe.set(keys[i], token, nx=True, ex=ttl)
            pipe.mget([keys[i] for i in missing])
            stored = pipe.execute()[-1]
            for i, token, value in zip(missing, fresh, stored):
                values[i] = token if value is None else value
        return values

    return fetch


def get_token(redis_client: Any, instance_or_oid: Any,
              duration: int | None = None) -> str:
    """The current token of an instance, class or identifier, created (with
    SET NX, never overwriting) when missing.

    When Redis fails, a new random token that is stored nowhere is returned
    and a warning is logged: keys built from it are new (a miss).
    """
    _check_client(redis_client)
    ttl = duration or MAX_CACHE_DURATION
    key = get_token_key(instance_or_oid)
    try:
        if _is_native(redis_client):
            return _native.fetch_tokens(redis_client, [key], ttl)[0]
        token = _redis_py_source(redis_client, ttl)([key])[0]
    except Exception as exc:  # noqa: BLE001 -- fail open, logged
        _log_failure(exc)
        return _native.random_token()
    return token.decode('utf-8', 'surrogateescape') if isinstance(token, bytes) else token


def set_token(redis_client: Any, instance: Any, value: Any,
              duration: int | None = None) -> Any:
    """Store ``value`` as the token of an instance, class or identifier, for
    ``duration`` seconds (default ``MAX_CACHE_DURATION``).  Raises when Redis
    fails: the caller asked for a write."""
    _check_client(redis_client)
    return redis_client.set(get_token_key(instance), value,
                            ex=duration or MAX_CACHE_DURATION)


class CacheKeyGenerator:
    """Call with model instances, classes, identifiers and values to get a
    cache key that changes whenever a named row or table changes.

    ``redis_client`` is an alkey :class:`~alkey.Client` (the fast path) or a
    redis-py client.  ``hash_keys=True`` gives 64-character SHA-256 hex keys
    (safe for memcached); otherwise keys are readable, e.g.
    ``'alkey:users#1~Zx3.../sidebar'``.
    """

    __slots__ = ('redis', 'hash_keys', 'namespace', 'duration', '_source')

    def __init__(self, redis_client: Any, hash_keys: bool = False,
                 namespace: str | None = None,
                 duration: int | None = None) -> None:
        _check_client(redis_client)
        self.redis = redis_client
        self.hash_keys = bool(hash_keys)
        self.namespace = namespace or TOKEN_NAMESPACE
        self.duration = int(duration or MAX_CACHE_DURATION)
        self._source = (redis_client if _is_native(redis_client)
                        else _redis_py_source(redis_client, self.duration))

    def __call__(self, *args: Any) -> str:
        return _native.cache_key(self._source, args, self.namespace,
                                 self.duration, self.hash_keys)

    def key(self, args: Sequence[Any]) -> str:
        """The key of a sequence of arguments (``gen.key(items)`` is
        ``gen(*items)``)."""
        return _native.cache_key(self._source, args, self.namespace,
                                 self.duration, self.hash_keys)

    def __repr__(self) -> str:
        return (f'<CacheKeyGenerator {self.redis!r} hash_keys={self.hash_keys} '
                f'namespace={self.namespace!r}>')


def get_cache_key_generator(request: Any = None, hash_keys: bool = False,
                            generator_cls: type[CacheKeyGenerator] | None = None,
                            get_redis: Callable[..., Any] | None = None,
                            ) -> CacheKeyGenerator:
    """A :class:`CacheKeyGenerator` over the shared client
    (``get_redis_client(request)``)."""
    cls = generator_cls or CacheKeyGenerator
    redis_client = (get_redis or get_redis_client)(request)
    return cls(redis_client, hash_keys=hash_keys)
