"""Pyramid: `config.include('alkey')` through WebTest.

Most tests drive the example blog (examples/blog), with pyramid_tm,
zope.sqlalchemy, pyramid_mako and a SQLite file, against the suite's
redis-server.  The blog's fragments count their renderings
(`registry['alkey_blog.renders']`), so a test sees whether a page came from
the cache.  Settings errors use a minimal application.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import transaction
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    sessionmaker,
)

with warnings.catch_warnings():
    # Pyramid imports pkg_resources and WebOb imports cgi, both deprecated.
    warnings.simplefilter('ignore', DeprecationWarning)
    warnings.simplefilter('ignore', UserWarning)
    import webtest
    from pyramid.config import Configurator
    from pyramid.exceptions import ConfigurationExecutionError
    from pyramid.interfaces import IRendererFactory
    from pyramid.response import Response

import alkey
from alkey import events
from alkey.cache import CacheKeyGenerator
from alkey.client import get_redis_client
from alkey.constants import MAX_CACHE_DURATION, TOKEN_NAMESPACE
from alkey.pyramid import get_settings
from alkey.settings import AlkeySettings, parse_settings

BLOG = Path(__file__).resolve().parents[1] / 'examples' / 'blog'
if str(BLOG) not in sys.path:
    sys.path.insert(0, str(BLOG))

from alkey_blog import models as blog_models  # noqa: E402
from alkey_blog.models import Post  # noqa: E402

pytestmark = pytest.mark.pyramid


# --------------------------------------------------------------------------
# The example blog


@pytest.fixture
def make_blog(server, tmp_path):
    """make_blog(configure=None, **settings): the example blog as a TestApp,
    on a new SQLite file.  `configure(config)` may add views."""
    registries = []

    def make(configure=None, **settings):
        base = {
            'sqlalchemy.url': f'sqlite:///{tmp_path}/blog{len(registries)}.sqlite',
            'alkey.session_cls': 'alkey_blog.models.Session',
        }
        base.update(settings)
        config = Configurator(settings=base)
        config.include('alkey_blog')
        if configure is not None:
            configure(config)
        app = config.make_wsgi_app()
        registries.append(app.registry)
        return webtest.TestApp(app)

    yield make
    blog_models.Session.remove()
    events.unbind(blog_models.Session)
    for registry in registries:
        engine = registry.get('alkey_blog.engine')
        if engine is not None:
            engine.dispose()


@pytest.fixture
def blog(make_blog):
    return make_blog()


def renders(app):
    return app.app.registry['alkey_blog.renders']


def edit(app, post_id, **fields):
    """Submit the blog's edit form; returns the response it redirects to."""
    form = app.get(f'/posts/{post_id}/edit').forms['edit']
    for name, value in fields.items():
        form[name] = value
    return form.submit(status=303).follow()


def fragments(server, prefix='alkey.mako'):
    return sorted(server.admin.keys(f'{prefix}:*'))


def test_a_cached_post_is_served_from_the_cache_on_the_second_request(blog, server):
    first = blog.get('/posts/1')
    second = blog.get('/posts/1')
    assert renders(blog)[('post', 1)] == 1
    assert second.text == first.text
    assert 'Cache keys that change by themselves' in second.text
    assert 'post rendered 1×' in second.text
    # The template's key, as it gave it, under the prefix.
    kg = CacheKeyGenerator(get_redis_client())
    key = 'alkey.mako:' + kg(1, 'alkey_blog$templates/post.mako', 'alkey:posts#1')
    assert key in fragments(server)
    assert server.admin.get(key) in first.text
    assert 0 < server.admin.ttl(key) <= 3600


def test_the_list_and_its_cards_are_cached_one_inside_the_other(blog):
    blog.get('/')
    page = blog.get('/')
    assert renders(blog)[('list',)] == 1
    assert [renders(blog)[('card', i)] for i in (1, 2, 3)] == [1, 1, 1]
    assert page.text.count('card rendered 1×') == 3


def test_editing_a_post_renders_its_fragment_again_with_the_new_value(blog):
    blog.get('/')
    blog.get('/posts/1')
    page = edit(blog, 1, title='Grüße, new title ✓')
    assert 'Grüße, new title ✓' in page.text
    assert renders(blog)[('post', 1)] == 2
    again = blog.get('/posts/1')
    assert renders(blog)[('post', 1)] == 2
    assert again.text == page.text
    # The list names the posts table: it renders again, with only the card
    # of the post that changed.
    listing = blog.get('/')
    assert 'Grüße, new title ✓' in listing.text
    assert renders(blog)[('list',)] == 2
    assert [renders(blog)[('card', i)] for i in (1, 2, 3)] == [2, 1, 1]


def test_editing_one_post_leaves_the_others_cached(blog):
    blog.get('/posts/2')
    edit(blog, 1, title='Changed')
    blog.get('/posts/2')
    assert renders(blog)[('post', 2)] == 1


def _broken_edit(how):
    def view(request):
        post = blog_models.Session.get(Post, int(request.matchdict['id']))
        post.title = 'Never committed'
        blog_models.Session.flush()  # alkey has recorded the change
        if how == 'raise':
            raise RuntimeError('the view failed after the flush')
        request.tm.abort()  # an explicit rollback
        return Response('rolled back')

    def configure(config):
        config.add_route('broken', '/posts/{id}/broken')
        config.add_view(view, route_name='broken', request_method='POST',
                        require_csrf=False)

    return configure


@pytest.mark.parametrize('how', ['raise', 'abort'])
def test_a_rolled_back_edit_leaves_the_cache_valid(make_blog, server, how):
    blog = make_blog(_broken_edit(how))
    before = blog.get('/posts/1')
    blog.get('/')
    keys = fragments(server)
    if how == 'raise':
        with pytest.raises(RuntimeError):
            blog.post('/posts/1/broken')
    else:
        blog.post('/posts/1/broken')
    after = blog.get('/posts/1')
    blog.get('/')
    assert after.text == before.text
    assert 'Never committed' not in after.text
    assert renders(blog)[('post', 1)] == 1
    assert renders(blog)[('list',)] == 1
    assert fragments(server) == keys
    with blog_models.Session() as session:
        assert session.get(Post, 1).title == 'Cache keys that change by themselves'


def test_an_invalid_edit_changes_nothing(blog):
    blog.get('/posts/1')
    form = blog.get('/posts/1/edit').forms['edit']
    form['title'] = '   '
    page = form.submit(status=400)
    assert 'A post needs a title.' in page.text
    blog.get('/posts/1')
    assert renders(blog)[('post', 1)] == 1


def test_the_blog_serves_pages_when_redis_is_down(blog, server, caplog):
    import alkey.cache
    import alkey.mako

    alkey.cache._log_failure._last = float('-inf')
    alkey.mako._log_failure._last = float('-inf')
    blog.get('/posts/1')
    server.kill()
    with caplog.at_level(logging.WARNING, logger='alkey'):
        for _ in range(2):
            assert 'Cache keys that change by themselves' in blog.get('/posts/1').text
            assert blog.get('/').text.count('<article class="card"') == 3
        page = edit(blog, 2, title='Edited while Redis is down')
    assert 'Edited while Redis is down' in page.text
    # No cache: every request rendered its fragments.
    assert renders(blog)[('post', 1)] == 3
    assert renders(blog)[('list',)] == 2
    messages = [r.getMessage() for r in caplog.records if r.name == 'alkey']
    assert any('Mako fragment' in m for m in messages)
    assert any('ConnectionError' in m for m in messages)


def test_request_cache_key_is_reified_and_request_redis_is_the_native_client(make_blog):
    seen = {}

    def view(request):
        seen['same'] = request.cache_key is request.cache_key
        seen['redis'] = request.redis
        seen['same redis'] = request.redis is request.redis
        seen['generator'] = request.cache_key
        return Response(request.cache_key('x', 1))

    def configure(config):
        config.add_route('probe', '/probe')
        config.add_view(view, route_name='probe')

    app = make_blog(configure)
    key = app.get('/probe').text
    assert seen['same'] and seen['same redis']
    assert isinstance(seen['redis'], alkey.Client)
    assert seen['redis'] is get_redis_client()  # no redis.* setting: REDIS_URL
    assert isinstance(seen['generator'], CacheKeyGenerator)
    assert seen['generator'].redis is seen['redis']
    assert key == 'x/~i1'
    first = seen['generator']
    app.get('/probe')
    assert seen['generator'] is not first  # one per request


# --------------------------------------------------------------------------
# A minimal application for the settings


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = 'notes'
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


#: Bound by the minimal applications (the tests unbind it).
NoteSession = sessionmaker()


@pytest.fixture
def note_engine(tmp_path):
    engine = create_engine(f'sqlite:///{tmp_path}/notes.db')
    Base.metadata.create_all(engine)
    NoteSession.configure(bind=engine)
    yield engine
    events.unbind(NoteSession)
    NoteSession.configure(bind=None)
    engine.dispose()


def minimal_config(**settings):
    base = {'alkey.session_cls': f'{__name__}.NoteSession'}
    base.update(settings)
    config = Configurator(settings={k: v for k, v in base.items() if v is not None})
    config.include('alkey')
    return config


def probe_app(config):
    """A TestApp whose /key?a=..&b=.. answers request.cache_key(a, b)."""
    config.add_route('key', '/key')
    config.add_view(lambda request: Response(request.cache_key(*request.GET.values())),
                    route_name='key')
    return webtest.TestApp(config.make_wsgi_app())


def commit_error(config):
    with pytest.raises(ConfigurationExecutionError) as info:
        config.commit()
    assert isinstance(info.value.evalue, alkey.ConfigurationError)
    return str(info.value.evalue)


@pytest.mark.parametrize('settings, name', [
    ({'alkey.session_cls': 'no_such_package.models.Session'}, 'alkey.session_cls'),
    ({'alkey.session_cls': 'tests.test_pyramid.NoSuchName'}, 'alkey.session_cls'),
    ({'alkey.session_cls': 'os.path'}, 'alkey.session_cls'),
    ({'redis.url': 'http://localhost:6379'}, 'redis.url'),
    ({'redis.url': 'redis://localhost:port'}, 'redis.url'),
    ({'redis.db': 'first'}, 'redis.db'),
    ({'redis.max_connections': '0'}, 'redis.max_connections'),
    ({'alkey.mako.expire': 'an hour'}, 'alkey.mako.expire'),
    ({'alkey.mako.expire': '0'}, 'alkey.mako.expire'),
    ({'alkey.mako.expire': str(MAX_CACHE_DURATION + 1)}, 'alkey.mako.expire'),
    ({'alkey.hash_keys': 'maybe'}, 'alkey.hash_keys'),
    ({'alkey.mako.cache': 'sometimes'}, 'alkey.mako.cache'),
    ({'alkey.namespace': 'two words'}, 'alkey.namespace'),
    ({'alkey.hashkeys': 'true'}, 'alkey.hashkeys'),
    ({'alkey.write_ahead': 'perhaps'}, 'alkey.write_ahead'),
    ({'alkey.settle_delay': 'soon'}, 'alkey.settle_delay'),
    ({'alkey.settle_delay': '0'}, 'alkey.settle_delay'),
    ({'alkey.settle_delay': '-1'}, 'alkey.settle_delay'),
])
def test_a_bad_setting_fails_at_commit_naming_the_setting(settings, name):
    config = minimal_config(**settings)  # include() itself checks nothing
    message = commit_error(config)
    assert name in message


def test_a_redis_url_error_does_not_show_its_password():
    message = commit_error(minimal_config(**{'redis.url': 'redis://:s3cret@host:port'}))
    assert 'redis.url' in message
    assert 's3cret' not in message


def test_the_default_session_is_pyramid_basemodels(server, tmp_path):
    import pyramid_basemodel  # a test dependency: missing means failing
    engine = create_engine(f'sqlite:///{tmp_path}/basemodel.db')
    Base.metadata.create_all(engine)
    session = pyramid_basemodel.Session
    session.configure(bind=engine)
    try:
        app = probe_app(minimal_config(**{'alkey.session_cls': None}))
        assert get_settings(app.app.registry).session_cls is session
        before = app.get('/key', {'a': 'alkey:notes#1'}).text
        with transaction.manager:
            session.add(Note(id=1, text='hello'))
        assert app.get('/key', {'a': 'alkey:notes#1'}).text != before
    finally:
        session.remove()
        events.unbind(session)
        session.configure(bind=None)
        engine.dispose()


def test_without_pyramid_basemodel_the_session_must_be_named(monkeypatch):
    monkeypatch.setitem(sys.modules, 'pyramid_basemodel', None)  # import fails
    message = commit_error(minimal_config(**{'alkey.session_cls': None}))
    assert 'alkey.session_cls' in message
    assert 'pyramid_basemodel is not installed' in message


def test_settings_are_coerced_once_with_their_defaults():
    settings = parse_settings({'alkey.session_cls': f'{__name__}.NoteSession'}, env={})
    assert settings == AlkeySettings(session_cls=NoteSession)
    assert (settings.hash_keys, settings.namespace, settings.mako_cache,
            settings.mako_expire, settings.mako_prefix) == (
                False, TOKEN_NAMESPACE, True, 3600, 'alkey.mako')
    settings = parse_settings({
        'alkey.session_cls': NoteSession, 'alkey.hash_keys': ' Yes ',
        'alkey.namespace': 'app.TOKENS', 'alkey.mako.cache': 'off',
        'alkey.mako.expire': ' 60 ', 'alkey.mako.prefix': 'app.fragments',
        'redis.url': '', 'other.setting': 'ignored'}, env={})
    assert settings == AlkeySettings(NoteSession, True, 'app.TOKENS', False, 60,
                                     'app.fragments')
    settings = parse_settings({'alkey.session_cls': NoteSession, 'alkey.write_ahead': 'on',
                               'alkey.settle_delay': ' 0.5 '}, env={})
    assert (settings.write_ahead, settings.settle_delay) == (True, 0.5)


def test_write_ahead_and_settle_delay_reach_the_binding(note_engine, server):
    from alkey import _intents

    probe_app(minimal_config(**{'alkey.write_ahead': 'true', 'alkey.settle_delay': '0.2'}))
    server.reset_stats()
    with NoteSession() as session:
        session.add(Note(id=1, text='hello'))
        session.commit()
    counts = server.command_counts()
    counts.pop('zrangebyscore', None)  # the intent sweeper's
    # The intent before the commit, the tokens and its removal after.
    assert counts == {'zadd': 1, 'multi': 1, 'set': 3, 'zrem': 1, 'exec': 1}
    binding = events._bindings[NoteSession]
    assert (binding.write_ahead, binding.settle_delay) == (True, 0.2)
    assert binding in _intents._watched  # this process sweeps for others
    time.sleep(0.6)  # the settle delay's second delivery
    counts = server.command_counts()
    assert counts['set'] == 6


def test_including_twice_is_harmless(note_engine, server):
    config = minimal_config()
    config.include('alkey')
    config.include('alkey.pyramid')
    app = probe_app(config)
    key = app.get('/key', {'a': 'alkey:notes#1'}).text
    server.reset_stats()
    with NoteSession() as session:
        session.add(Note(id=1, text='hello'))
        session.commit()
    assert server.command_counts() == {'set': 3}  # bound once: sent once
    assert app.get('/key', {'a': 'alkey:notes#1'}).text != key


def test_a_commit_invalidates_through_the_apps_own_redis_and_namespace(note_engine, server):
    app = probe_app(minimal_config(**{
        'redis.url': server.url, 'alkey.namespace': 'notes.TOKENS',
        'alkey.hash_keys': 'true'}))
    registry = app.app.registry
    key = app.get('/key', {'a': 'alkey:notes#1'}).text
    assert re.fullmatch('[0-9a-f]{64}', key)
    assert server.admin.keys('notes.TOKENS:*')
    assert not server.admin.keys(f'{TOKEN_NAMESPACE}:*')
    with NoteSession() as session:
        session.add(Note(id=1, text='hello'))
        session.commit()
    assert app.get('/key', {'a': 'alkey:notes#1'}).text != key
    assert not server.admin.keys(f'{TOKEN_NAMESPACE}:*')
    # The application's own client, not the process-wide one.
    assert get_redis_client(SimpleNamespace(registry=registry)) is not get_redis_client()


# --------------------------------------------------------------------------
# pyramid_mako's lookups


def mako_lookups(registry):
    from pyramid_mako import MakoRendererFactory

    return {name: factory.lookup for name, factory in
            registry.getUtilitiesFor(IRendererFactory)
            if isinstance(factory, MakoRendererFactory)}


@pytest.mark.parametrize('mako_first', [True, False])
def test_every_mako_lookup_uses_alkeys_cache_whatever_the_include_order(note_engine, mako_first):
    config = Configurator(settings={'alkey.session_cls': f'{__name__}.NoteSession',
                                   'alkey.mako.expire': '60',
                                   'alkey.mako.prefix': 'app.fragments'})
    if mako_first:
        config.include('pyramid_mako')
        config.include('alkey')
    else:
        config.include('alkey')
        config.include('pyramid_mako')
    config.add_mako_renderer('.html')
    config.commit()
    lookups = mako_lookups(config.registry)
    assert set(lookups) == {'.mako', '.mak', '.html'}
    for lookup in lookups.values():
        assert lookup.template_args['cache_impl'] == 'alkey'
        assert lookup.template_args['cache_args']['expire'] == 60
        assert lookup.template_args['cache_args']['prefix'] == 'app.fragments'


def test_alkey_mako_cache_false_leaves_the_lookups_alone(note_engine):
    config = minimal_config(**{'alkey.mako.cache': 'false'})
    config.include('pyramid_mako')
    config.commit()
    for lookup in mako_lookups(config.registry).values():
        assert lookup.template_args['cache_impl'] == 'beaker'


def test_the_mako_settings_reach_the_fragments(make_blog, server):
    blog = make_blog(**{'alkey.mako.expire': '120', 'alkey.mako.prefix': 'blog.html'})
    blog.get('/posts/1')
    blog.get('/posts/1')
    assert renders(blog)[('post', 1)] == 1
    keys = fragments(server, 'blog.html')
    assert keys and not fragments(server)
    assert all(0 < server.admin.ttl(k) <= 120 for k in keys)


def test_hashed_keys_cache_fragments_too(make_blog, server):
    blog = make_blog(**{'alkey.hash_keys': 'true'})
    blog.get('/posts/1')
    edit(blog, 1, title='Hashed')
    page = blog.get('/posts/1')
    assert 'Hashed' in page.text
    assert renders(blog)[('post', 1)] == 2
    assert all(re.fullmatch(r'alkey\.mako:[0-9a-f]{64}', k) for k in fragments(server))


def test_the_blogs_posts_are_created_on_start(blog):
    with blog_models.Session() as session:
        titles = session.scalars(select(Post.title).order_by(Post.id)).all()
    assert len(titles) == 3
    assert titles[0] == 'Cache keys that change by themselves'
