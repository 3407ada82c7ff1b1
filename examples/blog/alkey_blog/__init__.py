"""A small blog: Pyramid, SQLAlchemy, Mako, and alkey's cached fragments.

``pserve development.ini`` (see ../serve.py) calls :func:`main`; tests make
the same application with ``config.include('alkey_blog')``.
"""

from __future__ import annotations

import threading
from collections import Counter

from pyramid.config import Configurator
from pyramid.csrf import CookieCSRFStoragePolicy
from pyramid.events import BeforeRender

from .models import setup_database

__all__ = ['RenderCounter', 'includeme', 'main']


class RenderCounter:
    """How many times each fragment was really rendered (not read from the
    cache).  The fragments show it, so a reload shows what was cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()

    def __call__(self, *name: object) -> int:
        """Count one rendering of the fragment ``name``; returns the count."""
        with self._lock:
            self._counts[name] += 1
            return self._counts[name]

    def __getitem__(self, name: tuple) -> int:
        with self._lock:
            return self._counts[name]


def _template_globals(event: BeforeRender) -> None:
    event['rendered'] = event['request'].registry['alkey_blog.renders']


def _database(registry) -> None:
    registry['alkey_blog.engine'] = setup_database(registry.settings)


def includeme(config: Configurator) -> None:
    config.include('pyramid_tm')
    config.include('pyramid_mako')
    config.include('alkey')  # request.cache_key, the session bound, Mako's cache

    config.set_csrf_storage_policy(CookieCSRFStoragePolicy())
    config.set_default_csrf_options(require_csrf=True)
    config.registry['alkey_blog.renders'] = RenderCounter()
    config.add_subscriber(_template_globals, BeforeRender)

    config.add_route('home', '/')
    config.add_route('post', '/posts/{id:\\d+}')
    config.add_route('edit', '/posts/{id:\\d+}/edit')
    config.scan('.views')

    # After alkey's own action (order 0) has bound the session, so that the
    # first posts replace their tokens when they are committed.
    config.action(('alkey_blog', 'database'), _database, (config.registry,),
                  order=1)


def main(global_config: dict, **settings: str):
    """The WSGI application (``use = call:alkey_blog:main``)."""
    with Configurator(settings=settings) as config:
        config.include('alkey_blog')
    return config.make_wsgi_app()
