"""alkey: cache keys for SQLAlchemy applications that invalidate themselves.

    from alkey.cache import get_cache_key_generator
    key_generator = get_cache_key_generator()
    key = key_generator(user, Post, 'sidebar')

The key embeds version tokens kept in Redis; a commit that changes a named
row or table replaces its token, so the key changes by itself.
"""

from __future__ import annotations

from ._native import (
    AuthenticationError,
    Client,
    ConfigurationError,
    ConnectionError,
    Error,
    ReplyError,
    TimeoutError,
)
from ._stats import stats
from .events import bind, invalidate

#: The original package's name for :func:`alkey.events.bind`.
bind_to_events = bind


def includeme(config: object) -> None:
    """``config.include('alkey')`` in a Pyramid application: see
    :mod:`alkey.pyramid` (imported here, so that alkey needs no Pyramid)."""
    from .pyramid import includeme as include

    include(config)


__all__ = [
    'AuthenticationError',
    'Client',
    'ConfigurationError',
    'ConnectionError',
    'Error',
    'ReplyError',
    'TimeoutError',
    'bind',
    'bind_to_events',
    'includeme',
    'invalidate',
    'stats',
]

__version__ = '1.0.0.dev0'
