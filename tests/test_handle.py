"""The original package's lower-level names, on in-process change sets."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

import alkey
from alkey import events, handle
from alkey.cache import CacheKeyGenerator
from alkey.client import parse_url
from alkey.constants import GLOBAL_WRITE_TOKEN
from tests.models import Base, User, sqlite_session


@pytest.fixture
def client(redis_server_clean):
    return alkey.Client(**parse_url(redis_server_clean.url))


def test_record_invalidate_and_clear_by_session_id(client):
    kg = CacheKeyGenerator(client)
    session = sqlite_session()
    user = User(id=1, name='a')
    session.add(user)
    session.commit()
    before = {t: kg(t) for t in ('alkey:users#1', 'alkey:users#*', GLOBAL_WRITE_TOKEN,
                                 'alkey:orders#7')}
    handle.record_changed(client, 'worker-1:session-9', [user], ['alkey:orders#7'])
    handle.record_changed(client, 'other', ['alkey:users#2'])
    handle.clear_changed(client, 'other')
    assert handle.invalidate_tokens(client, 'other') == 0
    assert all(kg(t) == k for t, k in before.items())
    assert handle.invalidate_tokens(client, 'worker-1:session-9') == 4
    assert all(kg(t) != k for t, k in before.items())
    assert handle.invalidate_tokens(client, 'worker-1:session-9') == 0
    with pytest.raises(TypeError, match='mapped instance'):
        handle.record_changed(client, 'x', [object()])


def test_handlers_bound_by_hand(client, redis_server_clean, monkeypatch):
    monkeypatch.setenv('REDIS_URL', redis_server_clean.url)
    kg = CacheKeyGenerator(client)

    class HandBound(Session):
        pass

    event.listen(HandBound, 'after_flush', handle.handle_flush)
    event.listen(HandBound, 'after_commit', handle.handle_commit)
    event.listen(HandBound, 'after_soft_rollback', handle.handle_rollback)
    event.listen(HandBound, 'after_transaction_end', events._default_binding.after_transaction_end)
    session = sqlite_session()
    engine = session.get_bind()
    Base.metadata.create_all(engine)
    with HandBound(engine) as s:
        s.add(User(id=1, name='a'))
        s.commit()
        before = kg('alkey:users#1')
        s.get(User, 1).name = 'b'
        s.commit()
        assert kg('alkey:users#1') != before
        before = kg('alkey:users#1')
        s.get(User, 1).name = 'c'
        s.flush()
        s.rollback()
        assert kg('alkey:users#1') == before


def test_bind_a_session_subclass_and_an_instance(client):
    kg = CacheKeyGenerator(client)

    class AppSession(Session):
        pass

    engine = sqlite_session().get_bind()
    Base.metadata.create_all(engine)
    events.bind(AppSession, redis_client=client)
    try:
        with AppSession(engine) as s:
            s.add(User(id=1, name='a'))
            s.commit()
            before = kg('alkey:users#1')
            s.get(User, 1).name = 'b'
            s.commit()
            assert kg('alkey:users#1') != before
    finally:
        events.unbind(AppSession)
    one = Session(engine)
    events.bind(one, redis_client=client)
    try:
        before = kg('alkey:users#1')
        one.get(User, 1).name = 'c'
        one.commit()
        assert kg('alkey:users#1') != before
    finally:
        events.unbind(one)
        one.close()
