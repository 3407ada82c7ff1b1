"""alkey's Pyramid settings, coerced once, with their defaults in one place.

``parse_settings(settings)`` turns a settings dict (strings from an ``.ini``
file, or Python values) into an :class:`AlkeySettings`::

    alkey.session_cls    dotted name of the Session class, sessionmaker or
                         scoped_session to bind (default: pyramid_basemodel's
                         Session when that package is installed)
    alkey.hash_keys      true/false: 64-character SHA-256 keys (default false)
    alkey.namespace      prefix of the Redis keys holding tokens
                         (default alkey.constants.TOKEN_NAMESPACE)
    alkey.write_ahead    true/false: write an intent before each commit, so
                         that other processes invalidate for one that dies
                         before it could (default false; see alkey._intents)
    alkey.settle_delay   seconds: replace a commit's tokens once more that
                         long after it (default: not at all)
    alkey.mako.cache     true/false: alkey's Mako cache plugin is the default
                         cache_impl of pyramid_mako's templates (default true)
    alkey.mako.expire    seconds a cached fragment lives (default 3600, at
                         most alkey.constants.MAX_CACHE_DURATION)
    alkey.mako.prefix    prefix of the Redis keys of fragments
                         (default alkey.mako)
    redis.url, redis.db, redis.max_connections
                         checked with alkey.client.get_redis_config()

A bad value raises :class:`alkey.ConfigurationError` naming the setting; so
does an unknown ``alkey.*`` setting (a misspelt name would otherwise be
ignored without a word).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from ._native import ConfigurationError
from .client import get_redis_config
from .constants import MAX_CACHE_DURATION, TOKEN_NAMESPACE

__all__ = [
    'AlkeySettings',
    'DEFAULTS',
    'DEFAULT_SESSION_CLS',
    'parse_settings',
]

#: Bound when ``alkey.session_cls`` is not set, if it can be imported.
DEFAULT_SESSION_CLS = 'pyramid_basemodel.Session'

#: Every ``alkey.*`` setting and its default, as the ``.ini`` would say it.
DEFAULTS: Mapping[str, str | None] = {
    'alkey.session_cls': None,
    'alkey.hash_keys': 'false',
    'alkey.namespace': TOKEN_NAMESPACE,
    'alkey.write_ahead': 'false',
    'alkey.settle_delay': None,
    'alkey.mako.cache': 'true',
    'alkey.mako.expire': '3600',
    'alkey.mako.prefix': 'alkey.mako',
}

# pyramid.settings.asbool's words, both ways: anything else is an error
# rather than a silent false.
_TRUE = frozenset(('t', 'true', 'y', 'yes', 'on', '1'))
_FALSE = frozenset(('f', 'false', 'n', 'no', 'off', '0'))


@dataclass(frozen=True)
class AlkeySettings:
    """The typed settings of one application (``parse_settings()``)."""

    #: The resolved session target given to :func:`alkey.events.bind`.
    session_cls: Any
    hash_keys: bool = False
    namespace: str = TOKEN_NAMESPACE
    mako_cache: bool = True
    mako_expire: int = 3600
    mako_prefix: str = 'alkey.mako'
    write_ahead: bool = False
    settle_delay: float | None = None


def _value(settings: Mapping[str, Any], name: str) -> Any:
    """The setting, or its default when missing or blank."""
    value = settings.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULTS[name]
    return value.strip() if isinstance(value, str) else value


def _bool(settings: Mapping[str, Any], name: str) -> bool:
    value = _value(settings, name)
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigurationError(f'{name} must be true or false, got {value!r}')


def _seconds(settings: Mapping[str, Any], name: str) -> int:
    value = _value(settings, name)
    if isinstance(value, bool):
        raise ConfigurationError(f'{name} must be a whole number of seconds, '
                                 f'got {value!r}')
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigurationError(f'{name} must be a whole number of seconds, '
                                 f'got {value!r}') from None
    if not 1 <= number <= MAX_CACHE_DURATION:
        raise ConfigurationError(
            f'{name} must be between 1 and {MAX_CACHE_DURATION} seconds (tokens '
            f'live {MAX_CACHE_DURATION} s: a fragment must not outlive them), '
            f'got {number}')
    return number


def _delay(settings: Mapping[str, Any], name: str) -> float | None:
    value = _value(settings, name)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip())
    except ValueError:
        raise ConfigurationError(f'{name} must be a number of seconds, got {value!r}') from None
    if not 0 < number <= 3600:
        raise ConfigurationError(f'{name} must be above 0 and at most 3600 seconds '
                                 f'(leave it out for none), got {value!r}')
    return number


def _text(settings: Mapping[str, Any], name: str) -> str:
    value = _value(settings, name)
    if not isinstance(value, str):
        raise ConfigurationError(f'{name} must be text, got {value!r}')
    if any(c.isspace() for c in value):
        raise ConfigurationError(f'{name} must not contain spaces, got {value!r}')
    return value


def _session(settings: Mapping[str, Any]) -> Any:
    name = 'alkey.session_cls'
    value = _value(settings, name)
    if value is None:
        try:
            import pyramid_basemodel
        except ImportError:
            raise ConfigurationError(
                f'{name} is not set and pyramid_basemodel is not installed: set '
                f'{name} to the dotted name of the Session class, sessionmaker '
                f'or scoped_session that alkey must bind, e.g. '
                f'"{name} = myapp.models.Session"') from None
        return pyramid_basemodel.Session
    if not isinstance(value, str):
        return value  # the object itself, from Python code
    from pyramid.path import DottedNameResolver

    try:
        return DottedNameResolver().resolve(value)
    except Exception as exc:  # ImportError, ValueError: all mean a bad name
        raise ConfigurationError(
            f'{name} = {value!r} cannot be imported: {type(exc).__name__}: '
            f'{exc}') from None


def parse_settings(settings: Mapping[str, Any] | None,
                   env: Mapping[str, str] | None = None) -> AlkeySettings:
    """Coerce and check alkey's settings (see the module's docstring).

    The ``redis.*`` settings are checked with
    :func:`alkey.client.get_redis_config` against ``env`` (default
    ``os.environ``), which they override; the client itself is made on
    first use.  Raises :class:`alkey.ConfigurationError` naming the setting.
    """
    settings = settings or {}
    unknown = sorted(k for k in settings
                     if isinstance(k, str) and k.startswith('alkey.')
                     and k not in DEFAULTS)
    if unknown:
        raise ConfigurationError(
            f'unknown setting {unknown[0]}; alkey reads {", ".join(DEFAULTS)}')
    get_redis_config(os.environ if env is None else env, settings)
    return AlkeySettings(
        session_cls=_session(settings),
        hash_keys=_bool(settings, 'alkey.hash_keys'),
        namespace=_text(settings, 'alkey.namespace'),
        write_ahead=_bool(settings, 'alkey.write_ahead'),
        settle_delay=_delay(settings, 'alkey.settle_delay'),
        mako_cache=_bool(settings, 'alkey.mako.cache'),
        mako_expire=_seconds(settings, 'alkey.mako.expire'),
        mako_prefix=_text(settings, 'alkey.mako.prefix'),
    )
