"""alkey's Mako cache plugin (alkey.mako) with plain Mako, no Pyramid.

Real templates from a TemplateLookup, the suite's redis-server, and for the
last tests a SQLAlchemy session bound to alkey: the fragments are keyed by
`CacheKeyGenerator` and re-rendered after a commit.
"""

from __future__ import annotations

import itertools
import logging
from importlib.metadata import entry_points

import pytest
from mako.cache import _cache_plugins
from mako.lookup import TemplateLookup
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

import alkey
import alkey.mako
from alkey import events
from alkey.cache import CacheKeyGenerator
from alkey.client import parse_url
from alkey.constants import MAX_CACHE_DURATION
from alkey.mako import RedisCacheImpl
from tests.conftest import free_port
from tests.models import Base, User

PAGE = ('<%page cached="True" cache_key="${key}"/>'
        'rendered ${count()}: ${text}')


@pytest.fixture
def counter():
    """count(): 1, 2, 3... as a template renders."""
    return itertools.count(1).__next__


def make_lookup(client, **cache_args):
    return TemplateLookup(cache_impl='alkey',
                          cache_args={'redis': client, **cache_args})


def test_the_plugin_is_the_mako_cache_entry_point_and_registered_on_import():
    [entry] = [e for e in entry_points(group='mako.cache') if e.name == 'alkey']
    assert entry.load() is RedisCacheImpl
    assert _cache_plugins.load('alkey') is RedisCacheImpl


def test_a_page_is_rendered_once_and_then_read_from_redis(client, server, counter):
    lookup = make_lookup(client)
    lookup.put_string('page.mako', PAGE)
    template = lookup.get_template('page.mako')
    first = template.render(key='k1', count=counter, text='Grüße ✓')
    second = template.render(key='k1', count=counter, text='ignored: cached')
    assert first == second == 'rendered 1: Grüße ✓'
    # The template's key as it is, under the prefix; UTF-8 text with a TTL.
    assert server.admin.get('alkey.mako:k1') == 'rendered 1: Grüße ✓'
    assert 0 < server.admin.ttl('alkey.mako:k1') <= 3600
    assert template.render(key='k2', count=counter, text='other') == 'rendered 2: other'


def test_the_redis_commands_are_get_then_set_with_an_expiry(client, server, counter):
    lookup = make_lookup(client, expire=30)
    lookup.put_string('page.mako', PAGE)
    template = lookup.get_template('page.mako')
    server.reset_stats()
    template.render(key='k', count=counter, text='x')
    assert server.command_counts() == {'get': 1, 'set': 1}
    server.reset_stats()
    template.render(key='k', count=counter, text='x')
    assert server.command_counts() == {'get': 1}
    assert 0 < server.admin.ttl('alkey.mako:k') <= 30


def test_defs_are_cached_under_their_own_keys(client, server, counter):
    lookup = make_lookup(client)
    lookup.put_string('defs.mako', """\
<%def name="item(i)" cached="True" cache_key="${'item/%d' % i}">[${i}:${count()}]</%def>\
${item(1)}${item(2)}${item(1)}""")
    template = lookup.get_template('defs.mako')
    assert template.render(count=counter) == '[1:1][2:2][1:1]'
    assert template.render(count=counter) == '[1:1][2:2][1:1]'
    assert sorted(server.admin.keys('alkey.mako:*')) == ['alkey.mako:item/1',
                                                         'alkey.mako:item/2']


def test_without_a_cache_key_each_template_has_its_own_entry(client, server, counter):
    lookup = make_lookup(client)
    lookup.put_string('a.mako', '<%page cached="True"/>a${count()}')
    lookup.put_string('b.mako', '<%page cached="True"/>b${count()}')
    a, b = lookup.get_template('a.mako'), lookup.get_template('b.mako')
    assert (a.render(count=counter), b.render(count=counter)) == ('a1', 'b2')
    assert (a.render(count=counter), b.render(count=counter)) == ('a1', 'b2')
    keys = sorted(server.admin.keys('alkey.mako:*'))
    assert len(keys) == 2
    assert all(k.endswith(':render_body') for k in keys)


def test_prefix_expire_and_the_templates_timeout(client, server, counter):
    lookup = make_lookup(client, prefix='app.html', expire=100)
    lookup.put_string('plain.mako', PAGE)
    lookup.put_string('short.mako', '<%page cached="True" cache_key="short" '
                                    'cache_timeout="20"/>x')
    lookup.put_string('long.mako', '<%page cached="True" cache_key="long" '
                                   f'cache_timeout="{MAX_CACHE_DURATION * 2}"/>x')
    lookup.get_template('plain.mako').render(key='plain', count=counter, text='')
    lookup.get_template('short.mako').render()
    lookup.get_template('long.mako').render()
    assert 90 < server.admin.ttl('app.html:plain') <= 100
    assert 0 < server.admin.ttl('app.html:short') <= 20
    # Never longer than the tokens the keys are made of.
    assert 0 < server.admin.ttl('app.html:long') <= MAX_CACHE_DURATION


def test_a_client_factory_and_a_redis_py_client_work_too(server, counter):
    import alkey.client

    lookup = make_lookup(alkey.client.get_redis_client)  # a callable
    lookup.put_string('page.mako', PAGE)
    assert lookup.get_template('page.mako').render(key='f', count=counter, text='') == 'rendered 1: '
    redis_py = server.client()
    try:
        lookup = make_lookup(redis_py)
        lookup.put_string('page.mako', PAGE)
        rendered = lookup.get_template('page.mako').render(key='f', count=counter, text='')
    finally:
        redis_py.close()
    assert rendered == 'rendered 1: '  # what the first client stored


def test_get_set_and_invalidate_through_the_templates_cache(client, server, counter):
    lookup = make_lookup(client)
    lookup.put_string('page.mako', PAGE)
    template = lookup.get_template('page.mako')
    template.cache.set('k', 'stored ✓')
    assert template.cache.get('k') == 'stored ✓'
    assert template.render(key='k', count=counter, text='') == 'stored ✓'
    template.cache.invalidate('k')
    assert template.cache.get('k') is None
    assert template.render(key='k', count=counter, text='') == 'rendered 1: '


def test_redis_down_means_rendering_every_time_and_one_warning(counter, caplog):
    alkey.mako._log_failure._last = float('-inf')
    dead = alkey.Client(host='127.0.0.1', port=free_port())
    lookup = make_lookup(dead)
    lookup.put_string('page.mako', PAGE)
    template = lookup.get_template('page.mako')
    with caplog.at_level(logging.WARNING, logger='alkey'):
        rendered = [template.render(key='k', count=counter, text='') for _ in range(3)]
        assert template.cache.get('k') is None
    assert rendered == ['rendered 1: ', 'rendered 2: ', 'rendered 3: ']
    warnings = [r.getMessage() for r in caplog.records if r.name == 'alkey']
    assert len(warnings) == 1
    assert 'Mako fragment' in warnings[0] and 'ConnectionError' in warnings[0]


def test_a_stopped_redis_slows_a_render_by_one_timeout_at_most(server, counter):
    import time

    client = alkey.Client(**parse_url(server.url + '?socket_timeout=0.2'))
    lookup = make_lookup(client)
    lookup.put_string('page.mako', PAGE)
    template = lookup.get_template('page.mako')
    server.pause()
    try:
        start = time.monotonic()
        assert template.render(key='k', count=counter, text='') == 'rendered 1: '
        assert time.monotonic() - start < 0.6  # a failed GET means no SET
    finally:
        server.resume()
        client.close()


@pytest.fixture
def users(tmp_path, client):
    engine = create_engine(f'sqlite:///{tmp_path}/mako.db')
    Base.metadata.create_all(engine)
    maker = sessionmaker(engine)
    events.bind(maker, redis_client=client)
    with maker() as session:
        session.add(User(id=1, name='ann'))
        session.commit()
    yield maker
    events.unbind(maker)
    engine.dispose()


def test_a_fragment_keyed_by_an_instance_renders_again_after_its_commit(users, client, counter):
    kg = CacheKeyGenerator(client)
    lookup = make_lookup(client)
    lookup.put_string('user.mako', (
        '<%page cached="True" cache_key="${kg(1, self.uri, user)}"/>'
        '${user.name} (${count()})'))
    template = lookup.get_template('user.mako')
    with users() as session:
        user = session.get(User, 1)
        assert template.render(kg=kg, user=user, count=counter) == 'ann (1)'
        assert template.render(kg=kg, user=user, count=counter) == 'ann (1)'
        user.name = 'bob'
        session.flush()
        session.rollback()  # a rolled-back change: the cache stays valid
        user = session.get(User, 1)
        assert template.render(kg=kg, user=user, count=counter) == 'ann (1)'
        user.name = 'bob'
        session.commit()
        assert template.render(kg=kg, user=user, count=counter) == 'bob (2)'
        assert template.render(kg=kg, user=user, count=counter) == 'bob (2)'
