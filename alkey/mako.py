"""A Mako cache plugin that keeps rendered fragments in Redis.

Mako caches a ``<%page cached="True"/>`` or ``<%def ... cached="True">``
through the plugin named by the template's ``cache_impl``.  This one is
registered as ``'alkey'`` (the ``mako.cache`` entry point, and with
``mako.cache.register_plugin`` when this module is imported)::

    lookup = TemplateLookup(directories=[...], cache_impl='alkey',
                            cache_args={'expire': 600})

    <%page cached="True" cache_key="${request.cache_key(1, self.uri, post)}"/>

With ``config.include('alkey')`` Pyramid's Mako templates use it by default
(the setting ``alkey.mako.cache``).  A fragment is stored with
``SET <prefix>:<cache_key> <UTF-8 text> EX <expire>`` and read with ``GET``;
the key is used as the template gives it.  Keys made by ``cache_key()``
change when the rows they name change, so entries are never invalidated by
hand: they are no longer read and expire.  A template's ``cache_key`` should
name a version of the template (the ``1`` above) to bump when the markup
changes.  A fragment cached without ``cache_key`` is keyed by the
template's module name and the def's name.

``cache_args`` (and the ``cache_<name>`` attributes of a template's tags):

- ``redis``: the client (an :class:`alkey.Client`, or a redis-py client), or
  a callable without arguments that returns it; default
  :func:`alkey.client.get_redis_client`;
- ``prefix``: prefix of the Redis keys (default ``'alkey.mako'``);
- ``expire`` or Mako's own ``timeout``: seconds an entry lives (default
  3600, at most :data:`alkey.constants.MAX_CACHE_DURATION`).

When Redis fails the fragment is rendered as if not cached, and a warning
goes to the ``alkey`` logger at most every 10 seconds.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from mako.cache import CacheImpl, register_plugin

from ._log import RateLimitedWarning
from .client import get_redis_client
from .constants import MAX_CACHE_DURATION

__all__ = [
    'DEFAULT_EXPIRE',
    'DEFAULT_PREFIX',
    'PLUGIN_NAME',
    'RedisCacheImpl',
]

logger = logging.getLogger('alkey')

#: The name templates and lookups give as ``cache_impl``.
PLUGIN_NAME = 'alkey'
#: Seconds a fragment lives when nothing says otherwise.
DEFAULT_EXPIRE = 3600
#: Prefix of the fragments' Redis keys when nothing says otherwise.
DEFAULT_PREFIX = 'alkey.mako'
#: At most one warning about a failing Redis per this many seconds.
WARNING_INTERVAL = 10.0


class _FailureLog(RateLimitedWarning):
    """Rate-limited warnings about fragments Redis could not read or store
    (the page is rendered all the same, so nobody else sees the failure)."""

    def __call__(self, action: str, exc: BaseException) -> None:
        self.warn('Redis failed to %s a Mako fragment, rendering without the '
                  'cache: %s: %s', action, type(exc).__name__, exc)


_log_failure = _FailureLog(WARNING_INTERVAL)


def _expire(kw: dict[str, Any]) -> int:
    value = kw.get('timeout')
    if value is None:
        value = kw.get('expire', DEFAULT_EXPIRE)
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValueError(f'the Mako cache timeout must be a whole number of '
                         f'seconds, got {value!r}') from None
    if seconds < 1:
        raise ValueError(f'the Mako cache timeout must be 1 second or more, '
                         f'got {seconds}')
    # Tokens live MAX_CACHE_DURATION: an entry keyed by them must not outlive them.
    return min(seconds, MAX_CACHE_DURATION)


class RedisCacheImpl(CacheImpl):
    """Mako's cache of one template, in Redis (see the module's docstring)."""

    pass_context = False

    def _client(self, kw: dict[str, Any]) -> Any:
        client = kw.get('redis')
        if client is None:
            return get_redis_client()
        if callable(client) and not callable(getattr(client, 'get', None)):
            return client()
        return client

    def _key(self, key: Any, kw: dict[str, Any]) -> str:
        prefix = kw.get('prefix') or DEFAULT_PREFIX
        key = str(key)
        # Mako names a cached def after itself when the template gives no
        # cache_key ('render_body' for a page): make that key the template's.
        if key in getattr(self.cache, '_def_regions', ()):
            return f'{prefix}:{self.cache.id}:{key}'
        return f'{prefix}:{key}'

    def get_or_create(self, key: Any, creation_function: Callable[[], Any],
                      **kw: Any) -> Any:
        """The fragment from Redis, or rendered by ``creation_function`` and
        stored for ``expire`` seconds.  A failing Redis means rendering."""
        name = self._key(key, kw)
        expire = _expire(kw)
        try:
            client = self._client(kw)
            cached = client.get(name)
        except Exception as exc:  # noqa: BLE001 -- fail open, logged
            _log_failure('read', exc)
            # Not stored either: a Redis that failed would most likely make
            # the page wait a second time.
            return creation_function()
        if cached is not None:
            return cached.decode('utf-8') if isinstance(cached, bytes) else cached
        value = creation_function()
        try:
            client.set(name, str(value).encode('utf-8'), ex=expire)
        except Exception as exc:  # noqa: BLE001 -- fail open, logged
            _log_failure('store', exc)
        return value

    def get(self, key: Any, **kw: Any) -> str | None:
        """The fragment stored under ``key``, or None (also when Redis fails)."""
        try:
            cached = self._client(kw).get(self._key(key, kw))
        except Exception as exc:  # noqa: BLE001 -- fail open, logged
            _log_failure('read', exc)
            return None
        if isinstance(cached, bytes):
            return cached.decode('utf-8')
        return cached

    def set(self, key: Any, value: Any, **kw: Any) -> None:
        """Store a fragment (raises when Redis fails: the caller asked)."""
        self._client(kw).set(self._key(key, kw), str(value).encode('utf-8'),
                             ex=_expire(kw))

    def invalidate(self, key: Any, **kw: Any) -> None:
        """Forget a fragment (raises when Redis fails: the caller asked)."""
        self._client(kw).delete(self._key(key, kw))


register_plugin(PLUGIN_NAME, __name__, 'RedisCacheImpl')
