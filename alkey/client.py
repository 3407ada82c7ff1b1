"""The Redis client: configuration from a URL and the process-wide client.

``get_redis_client()`` returns one native :class:`alkey.Client` per process
(or per Pyramid application), configured from the environment::

    REDIS_URL              redis://[[user]:password@]host[:port][/db]
                           rediss://...           (TLS, where libhiredis has it)
                           unix:///path/redis.sock?db=N
    REDIS_DB               database number (default 0)
    REDIS_MAX_CONNECTIONS  pool size per process (default: no limit)

URL query options: ``db``, ``socket_timeout`` and ``socket_connect_timeout``
(seconds), ``max_connections``; for rediss also ``ssl_ca_certs``,
``ssl_certfile`` and ``ssl_keyfile``.  With a Pyramid ``request`` the
settings ``redis.url``, ``redis.db`` and ``redis.max_connections`` win over
the environment.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from ._native import Client, ConfigurationError
from .constants import DEFAULT_REDIS_URL

__all__ = [
    'DEFAULT_CONNECT_TIMEOUT',
    'DEFAULT_SOCKET_TIMEOUT',
    'GetRedisClient',
    'get_redis_client',
    'get_redis_config',
    'parse_url',
]

#: Seconds a read or write on Redis may block (a web request must not hang
#: on its cache).
DEFAULT_SOCKET_TIMEOUT = 0.5
#: Seconds a connection attempt may take.
DEFAULT_CONNECT_TIMEOUT = 0.25

_SCHEMES = ('redis', 'rediss', 'unix')
_FLOAT_OPTIONS = ('socket_timeout', 'socket_connect_timeout')
_TLS_OPTIONS = ('ssl_ca_certs', 'ssl_certfile', 'ssl_keyfile')


_SCHEME_PREFIX = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def _redact(url: str) -> str:
    """``url`` as error messages show it: whole when it cannot hold a
    secret, otherwise only its scheme.  Deliberately not a parse: a password
    may hold any character (``/``, ``?``, ``#``, ``@``, escapes) that would
    fool one, and a ``password=`` option may be spelt with escapes."""
    if '@' in url or '%' in url or 'password' in url.lower():
        match = _SCHEME_PREFIX.match(url)
        return f'{match.group(0) if match else ""}... (not shown: it may hold a password)'
    return url


def _int_option(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f'{name} must be a whole number, not {value!r}')
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigurationError(
            f'{name} must be a whole number, got {value!r}') from None
    if number < minimum:
        raise ConfigurationError(f'{name} must be {minimum} or more, got {number}')
    return number


def _float_option(value: Any, name: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigurationError(
            f'{name} must be a number of seconds, got {value!r}') from None
    if not number > 0 or number != number or number == float('inf'):
        raise ConfigurationError(
            f'{name} must be a number of seconds above 0, got {value!r}')
    return number


def parse_url(url: str, name: str = 'REDIS_URL') -> dict[str, Any]:
    """Turn a Redis URL into :class:`alkey.Client` keyword arguments.

    ``name`` is the variable or setting the URL came from; errors say it.
    Reads URLs as redis-py does: ``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` for TLS and ``unix://[[user]:password@]/path?db=N``.
    """
    if not isinstance(url, str) or not url.strip():
        got = repr(url) if isinstance(url, str) else f'a {type(url).__name__}'
        raise ConfigurationError(f'{name} must be a Redis URL such as '
                                 f'redis://localhost:6379/0, got {got}')
    url = url.strip()
    shown = _redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # urlsplit's own message may quote a piece of the password.
        raise ConfigurationError(f'{name} is not a valid Redis URL (bad port, '
                                 f'host or characters): {shown}') from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f'{name} must start with redis://, rediss:// or unix://, got '
            f'{shown}')
    options: dict[str, Any] = {}
    if parts.username:
        options['username'] = unquote(parts.username)
    if parts.password is not None:
        options['password'] = unquote(parts.password)
    if 'username' in options and 'password' not in options:
        # redis-py reads redis://secret@host as a password without a user.
        options['password'] = options.pop('username')
    if parts.scheme == 'unix':
        path = unquote(parts.path)
        if not path:
            raise ConfigurationError(
                f'{name} needs a socket path, as in unix:///run/redis.sock: '
                f'{shown}')
        options['path'] = path
    else:
        if not parts.hostname:
            raise ConfigurationError(f'{name} has no host: {shown}')
        options['host'] = unquote(parts.hostname)
        options['port'] = port if port is not None else 6379
        path = parts.path.strip('/')
        if path:
            options['db'] = _int_option(path, f'the database number in {name}', 0)
        if parts.scheme == 'rediss':
            options['ssl'] = True
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == 'db':
            db = _int_option(value, f'db in {name}', 0)
            if 'db' in options and options['db'] != db:
                raise ConfigurationError(
                    f'{name} names two databases ({options["db"]} and {db})')
            options['db'] = db
        elif key in _FLOAT_OPTIONS:
            options[key] = _float_option(value, f'{key} in {name}')
        elif key == 'max_connections':
            options[key] = _int_option(value, f'{key} in {name}', 1)
        elif key == 'password' and 'password' not in options:
            options['password'] = value
        elif key in _TLS_OPTIONS and parts.scheme == 'rediss':
            options[key] = value
        else:
            known = ', '.join(('db', 'max_connections') + _FLOAT_OPTIONS)
            raise ConfigurationError(
                f'{name} has an unknown option {key!r}; alkey understands '
                f'{known} (and {", ".join(_TLS_OPTIONS)} with rediss://)')
    return options


def get_redis_config(env: Mapping[str, str] | None = None,
                     settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The :class:`alkey.Client` options from the environment and settings.

    Pyramid ``settings`` (``redis.url``, ``redis.db``,
    ``redis.max_connections``) win over ``env`` (``REDIS_URL``, ``REDIS_DB``,
    ``REDIS_MAX_CONNECTIONS``; default ``os.environ``).  A database named
    both in the URL and separately must agree.
    """
    if env is None:
        env = os.environ
    settings = settings or {}

    def pick(setting: str, variable: str) -> tuple[Any, str] | tuple[None, None]:
        value = settings.get(setting)
        if value is not None and str(value).strip() != '':
            return value, setting
        value = env.get(variable)
        if value is not None and value.strip() != '':
            return value, variable
        return None, None

    url, url_name = pick('redis.url', 'REDIS_URL')
    options = parse_url(url if url is not None else DEFAULT_REDIS_URL,
                        url_name or 'REDIS_URL')
    db, db_name = pick('redis.db', 'REDIS_DB')
    if db is not None:
        number = _int_option(db, db_name, 0)
        if 'db' in options and options['db'] != number:
            raise ConfigurationError(
                f'{url_name} selects database {options["db"]} but {db_name} '
                f'says {number}; set one of them')
        options['db'] = number
    maxconn, maxconn_name = pick('redis.max_connections', 'REDIS_MAX_CONNECTIONS')
    if maxconn is not None:
        options['max_connections'] = _int_option(maxconn, maxconn_name, 1)
    options.setdefault('socket_timeout', DEFAULT_SOCKET_TIMEOUT)
    options.setdefault('socket_connect_timeout', DEFAULT_CONNECT_TIMEOUT)
    return options


def _settings_of(request: Any) -> Mapping[str, Any]:
    registry = getattr(request, 'registry', None)
    settings = getattr(registry, 'settings', None)
    return settings if settings is not None else {}


class GetRedisClient:
    """A factory of the shared native client (the seed's name).

    ``factory()`` gives the process-wide client, made from the environment on
    first use; ``factory(request)`` gives the client of the request's Pyramid
    application, made from its ``redis.*`` settings (falling back to the
    environment).  Clients are safe to share between threads and survive
    ``fork()``.
    """

    _registry_attr = '_alkey_redis_client'

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._client: Client | None = None
        self._lock = threading.Lock()

    def __call__(self, request: Any = None) -> Client:
        if request is not None:
            registry = getattr(request, 'registry', None)
            settings = _settings_of(request)
            if registry is not None and any(
                    str(settings.get(k) or '').strip() for k in
                    ('redis.url', 'redis.db', 'redis.max_connections')):
                client = getattr(registry, self._registry_attr, None)
                if client is None:
                    with self._lock:
                        client = getattr(registry, self._registry_attr, None)
                        if client is None:
                            client = Client(**get_redis_config(self._env, settings))
                            setattr(registry, self._registry_attr, client)
                return client
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(**get_redis_config(self._env))
                client = self._client
        return client

    def reset(self) -> None:
        """Forget the process-wide client (closing its idle connections);
        the next call reads the environment again."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


#: The process-wide client factory: ``get_redis_client(request=None)``.
get_redis_client = GetRedisClient()
