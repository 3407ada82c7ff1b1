"""Pyramid integration: ``config.include('alkey')``.

``includeme`` only declares:

- ``request.redis``: the application's native client (reified), made from
  the settings ``redis.url``, ``redis.db`` and ``redis.max_connections``
  or, without them, the environment (:func:`alkey.client.get_redis_client`);
- ``request.cache_key``: a :class:`~alkey.cache.CacheKeyGenerator` over
  ``request.redis`` (reified: ``request.cache_key is request.cache_key``),
  with the settings ``alkey.hash_keys`` and ``alkey.namespace``.

The settings are read, checked and acted on in configuration actions, so a
bad value fails at ``config.commit()`` (or ``make_wsgi_app()``), never on a
request; Pyramid raises its ``ConfigurationExecutionError`` there, with the
:class:`alkey.ConfigurationError` naming the setting.  The actions:

- bind :mod:`alkey.events` to the session named by ``alkey.session_cls``,
  so every commit through it replaces the tokens of what it changed;
- with ``alkey.mako.cache`` (the default), after every other action, make
  alkey's Mako plugin (:mod:`alkey.mako`) the ``cache_impl`` of each of
  pyramid_mako's template lookups, with ``alkey.mako.expire`` and
  ``alkey.mako.prefix``: pyramid_mako gives Mako no cache options of its own.

Including alkey twice (as ``'alkey'`` or ``'alkey.pyramid'``) does nothing
more.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Any

from . import events
from ._native import ConfigurationError
from .cache import CacheKeyGenerator
from .client import get_redis_client
from .constants import TOKEN_NAMESPACE
from .settings import AlkeySettings, parse_settings

__all__ = [
    'SETTINGS_KEY',
    'get_settings',
    'includeme',
    'request_cache_key',
    'request_redis',
]

#: Where the application's :class:`~alkey.settings.AlkeySettings` are kept
#: in its registry.
SETTINGS_KEY = 'alkey.settings'

# Runs after pyramid_mako's own actions (order 0) have made their lookups.
_MAKO_ORDER = 10
_INCLUDED = 'alkey.included'
_REDIS_SETTINGS = ('redis.url', 'redis.db', 'redis.max_connections')


def get_settings(registry: Any) -> AlkeySettings:
    """The application's alkey settings, parsed when it was committed."""
    try:
        return registry[SETTINGS_KEY]
    except KeyError:
        raise RuntimeError(
            'alkey is not configured in this application: call '
            "config.include('alkey') and commit the configuration") from None


def _app_client(registry: Any) -> Any:
    """The native client of the application: one per registry when the
    settings name a Redis, otherwise the process-wide one."""
    return get_redis_client(SimpleNamespace(registry=registry))


def request_redis(request: Any) -> Any:
    """``request.redis``: the application's native :class:`alkey.Client`."""
    return get_redis_client(request)


def request_cache_key(request: Any) -> CacheKeyGenerator:
    """``request.cache_key``: a key generator over ``request.redis``."""
    settings = get_settings(request.registry)
    return CacheKeyGenerator(request.redis, hash_keys=settings.hash_keys,
                             namespace=settings.namespace)


def _configure(config: Any) -> None:
    """Parse and check the settings, keep them, bind the session."""
    registry = config.registry
    settings = parse_settings(registry.settings)
    own_redis = any(str(registry.settings.get(name) or '').strip()
                    for name in _REDIS_SETTINGS)
    try:
        events.bind(
            settings.session_cls,
            # Without redis.* settings the shared client is looked up at each
            # commit, as request.redis does.
            redis_client=_app_client(registry) if own_redis else None,
            namespace=(settings.namespace
                       if settings.namespace != TOKEN_NAMESPACE else None),
            settle_delay=settings.settle_delay,
            write_ahead=settings.write_ahead)
    except TypeError as exc:
        raise ConfigurationError(f'alkey.session_cls: {exc}') from None
    registry[SETTINGS_KEY] = settings


def _configure_mako(config: Any) -> None:
    """Make alkey's Mako plugin the cache of pyramid_mako's lookups."""
    registry = config.registry
    settings = get_settings(registry)
    if not settings.mako_cache:
        return
    try:
        from pyramid_mako import MakoRendererFactory
    except ImportError:
        return
    from pyramid.interfaces import IRendererFactory

    from . import mako  # registers the plugin

    for _name, factory in registry.getUtilitiesFor(IRendererFactory):
        lookup = getattr(factory, 'lookup', None)
        if not isinstance(factory, MakoRendererFactory) or lookup is None:
            continue
        lookup.template_args['cache_impl'] = mako.PLUGIN_NAME
        lookup.template_args['cache_args'] = {
            'redis': partial(_app_client, registry),
            'prefix': settings.mako_prefix,
            'expire': settings.mako_expire,
        }


def includeme(config: Any) -> None:
    """``config.include('alkey')``: see the module's docstring."""
    # Pyramid includes 'alkey' once, but 'alkey.pyramid' is another name.
    if config.registry.get(_INCLUDED):
        return
    config.registry[_INCLUDED] = True
    config.add_request_method(request_redis, 'redis', reify=True)
    config.add_request_method(request_cache_key, 'cache_key', reify=True)
    config.action(('alkey', 'settings'), _configure, (config,))
    config.action(('alkey', 'mako'), _configure_mako, (config,),
                  order=_MAKO_ORDER)
