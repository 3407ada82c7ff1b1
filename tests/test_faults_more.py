"""More of Redis failing under the cache layer: refused connections at
start, READONLY replicas, a slow server, stale and dropped connections,
missing ACL permissions and wrong passwords.

In every case what a user relies on holds: `cache_key()` returns a key
never seen before within the timeout (a miss, never a stale hit), a commit
does not raise, and its invalidations stay pending until Redis takes them.
No credential reaches a log record, an exception or a repr.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import socket
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pytest
import redis as redispy
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

import alkey
from alkey import _pending, cache, events
from alkey.cache import CacheKeyGenerator, get_token, set_token
from alkey.client import get_redis_client, parse_url
from tests.conftest import RedisServer, free_port
from tests.models import Base, User
from tests.support import Watch

# Short client timeouts for the failure cases; timing assertions allow 3x.
TIMEOUT = 0.2
CONNECT_TIMEOUT = 0.2
SLACK = 3



@pytest.fixture
def warnings_now(monkeypatch):
    """The rate-limited failure warning of alkey.cache may be given again
    at once (another test may have just given it)."""
    monkeypatch.setattr(cache._log_failure, '_last', float('-inf'))


@pytest.fixture
def make_maker(tmp_path):
    """make_maker(client): a sessionmaker on a SQLite file with users 1-3,
    bound to alkey with `client` (seeded before binding, so that seeding
    sends nothing)."""
    engines, makers = [], []

    def make(client):
        engine = create_engine(f'sqlite:///{tmp_path}/faults-{len(engines)}.db')
        Base.metadata.create_all(engine)
        maker = sessionmaker(engine)
        with maker() as s:
            s.add_all([User(id=i, name=f'user {i}') for i in (1, 2, 3)])
            s.commit()
        events.bind(maker, redis_client=client)
        engines.append(engine)
        makers.append(maker)
        return maker

    yield make
    for maker in makers:
        events.unbind(maker)
    for engine in engines:
        engine.dispose()


def short_client(port, **options):
    options.setdefault('socket_timeout', TIMEOUT)
    options.setdefault('socket_connect_timeout', CONNECT_TIMEOUT)
    return alkey.Client('127.0.0.1', port, **options)


def port_of(server):
    return int(server.url.rsplit(':', 1)[1])


def wait_delivered(timeout=3.0):
    deadline = time.monotonic() + timeout
    while _pending.count() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _pending.count() == 0


def change_user(Maker, user_id, name):
    """Commits a change of one user; returns how long commit() took."""
    with Maker() as s:
        s.get(User, user_id).name = name
        start = time.monotonic()
        s.commit()
        return time.monotonic() - start


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - start


def assert_secret_absent(secret, records, *texts):
    """`secret` is in no log record (message, arguments, traceback) and in
    none of `texts`."""
    for record in records:
        assert secret not in record.getMessage(), record.getMessage()
        assert secret not in repr(record.args)
        if record.exc_info:
            assert secret not in ''.join(traceback.format_exception(*record.exc_info))
    for text in texts:
        assert secret not in text


def exception_texts(exc):
    formatted = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return [str(exc), repr(exc), ''.join(formatted)]


def alkey_warnings(caplog):
    return [r for r in caplog.records
            if r.name == 'alkey' and r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------
# Redis refusing connections from the start


def test_refused_connections_at_start_fail_open_and_deliver_once_a_server_listens(
        make_maker):
    port = free_port()  # nobody listens there
    client = short_client(port)
    kg = CacheKeyGenerator(client)
    Maker = make_maker(client)

    keys = []
    for _ in range(3):
        key, took = timed(kg, 'alkey:users#1', 'profile')
        assert took < SLACK * (TIMEOUT + CONNECT_TIMEOUT)
        keys.append(key)
    assert len(set(keys)) == 3  # each a fresh, never-seen key
    assert all(k.startswith('alkey:users#1~') and k.endswith('/profile') for k in keys)
    token = get_token(client, 'alkey:users#1')
    assert isinstance(token, str) and len(token) == 22

    took = change_user(Maker, 1, 'changed before Redis was there')
    assert took < SLACK * (TIMEOUT + CONNECT_TIMEOUT)
    assert _pending.count() >= 3
    assert kg('alkey:users#1', 'profile') not in keys

    directory = Path(tempfile.mkdtemp(prefix='alkey-late-'))
    late = RedisServer(shutil.which('redis-server') or 'redis-server', directory)
    late.port = port
    try:
        late.start()
        assert late.port == port, 'the free port was taken meanwhile'
        assert wait_delivered(), 'pending invalidations not delivered within 3 s'
        for oid in ('alkey:users#1', 'alkey:users#*', 'alkey:*#*'):
            assert late.admin.exists(f'alkey.cache.TOKENS:{oid}') == 1
        settled = kg('alkey:users#1', 'profile')
        assert settled == kg('alkey:users#1', 'profile')
        assert settled not in keys
    finally:
        late.stop()
        client.close()
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------
# READONLY: a replica of a master that does not exist


def test_readonly_replica_reads_tokens_fails_open_on_writes_and_delivers_after(
        server, client, kg, make_maker, caplog):
    Maker = make_maker(client)
    one, two = kg('alkey:users#1'), kg('alkey:users#2')
    server.admin_command('REPLICAOF', '127.0.0.1', str(free_port()))
    try:
        with pytest.raises(redispy.ReadOnlyError):
            server.admin.set('probe', 'x')
        # Existing tokens are still read...
        assert kg('alkey:users#2') == two
        # ...a missing one cannot be created: a fresh key each time.
        new = {kg('alkey:users#999') for _ in range(3)}
        assert len(new) == 3
        assert isinstance(get_token(client, 'alkey:users#998'), str)

        with caplog.at_level(logging.WARNING, logger='alkey'):
            took = change_user(Maker, 1, 'changed on a read-only replica')
        assert took < SLACK * 0.75  # the client's default timeouts
        assert _pending.count() >= 3
        assert any('READONLY' in r.getMessage() for r in alkey_warnings(caplog))
        first, second = kg('alkey:users#1'), kg('alkey:users#1')
        assert one not in (first, second) and first != second
        assert kg('alkey:users#2') == two
    finally:
        server.admin_command('REPLICAOF', 'NO', 'ONE')
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    settled = kg('alkey:users#1')
    assert settled == kg('alkey:users#1') and settled not in (one, first, second)
    assert kg('alkey:users#2') == two


# --------------------------------------------------------------------------
# A slow server under a short client timeout


@pytest.fixture
def debug_server():
    """A redis-server of this test alone that accepts DEBUG (refused by
    the suite's server: Redis 7 needs --enable-debug-command)."""
    directory = Path(tempfile.mkdtemp(prefix='alkey-debug-'))
    wrapper = directory / 'redis-server-debug'
    wrapper.write_text('#!/bin/sh\nexec "%s" "$@" --enable-debug-command yes\n'
                       % (shutil.which('redis-server') or 'redis-server'))
    wrapper.chmod(0o755)
    server = RedisServer(str(wrapper), directory / 'data')
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_the_suite_server_refuses_debug(server):
    """Why the slow-server test starts a server of its own."""
    with pytest.raises(redispy.ResponseError, match='DEBUG command not allowed'):
        server.admin_command('DEBUG', 'SLEEP', '0')


def send_inline(port, command, timeout=5.0):
    sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    sock.sendall(command.encode() + b'\r\n')
    return sock


def wait_asleep(port, deadline=3.0):
    """Returns once a PING on a new connection gets no answer in 0.1 s."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        probe = send_inline(port, 'PING', timeout=0.1)
        try:
            probe.recv(64)
        except socket.timeout:
            return
        finally:
            probe.close()
    raise AssertionError('the server never went to sleep')


def test_a_slow_server_costs_one_timeout_per_call_and_no_crossed_replies(
        debug_server, make_maker, caplog):
    client = short_client(debug_server.port)
    kg = CacheKeyGenerator(client)
    Maker = make_maker(client)
    stored = kg('alkey:users#1', 'page')
    assert kg('alkey:users#1', 'page') == stored
    client.set('mine', 'value')

    sleeper = send_inline(debug_server.port, 'DEBUG SLEEP 2')
    try:
        wait_asleep(debug_server.port)
        # The pooled connection, then new ones: each call waits for one
        # socket_timeout (plus a connect, which the kernel accepts at once).
        for _ in range(2):
            key, took = timed(kg, 'alkey:users#1', 'page')
            assert key != stored
            assert took < SLACK * (TIMEOUT + CONNECT_TIMEOUT)
        took = change_user(Maker, 1, 'changed while Redis sleeps')
        assert took < SLACK * (TIMEOUT + CONNECT_TIMEOUT)
        assert _pending.count() >= 3
        sleeper.settimeout(5)
        assert sleeper.recv(64).startswith(b'+OK')
    finally:
        sleeper.close()
    # The late replies to the timed-out requests never reach later calls.
    for i in range(20):
        client.set(f'k{i}', f'v{i}')
    assert [client.get(f'k{i}') for i in range(20)] == [f'v{i}'.encode() for i in range(20)]
    assert client.get('mine') == b'value'
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    settled = kg('alkey:users#1', 'page')
    assert settled != stored and settled == kg('alkey:users#1', 'page')
    client.close()


def test_a_loading_server_gives_fresh_keys_and_keeps_commits_pending(
        debug_server, make_maker, caplog, warnings_now):
    """-LOADING error replies while Redis reloads its data set (DEBUG
    RELOAD, slowed down to about a second)."""
    client = short_client(debug_server.port)
    kg = CacheKeyGenerator(client)
    Maker = make_maker(client)
    stored = kg('alkey:users#1', 'page')
    debug_server.admin_command('DEBUG', 'POPULATE', '10000')
    debug_server.admin_command('CONFIG', 'SET', 'key-load-delay', '100')
    debug_server.admin_command('CONFIG', 'SET', 'loading-process-events-interval-bytes', '1024')
    reloader = send_inline(debug_server.port, 'DEBUG RELOAD')
    try:
        deadline = time.monotonic() + 3
        while not client_sees_loading(debug_server.port):
            assert time.monotonic() < deadline, 'the server never said LOADING'
        with caplog.at_level(logging.WARNING, logger='alkey'):
            keys = set()
            for _ in range(3):
                key, took = timed(kg, 'alkey:users#1', 'page')
                assert took < SLACK * (TIMEOUT + CONNECT_TIMEOUT)
                keys.add(key)
            took = change_user(Maker, 1, 'changed while Redis loads')
            assert took < SLACK * (TIMEOUT + CONNECT_TIMEOUT)
            assert client_sees_loading(debug_server.port), 'loading ended too early'
        assert len(keys) == 3 and stored not in keys
        assert _pending.count() >= 3
        assert any('LOADING' in r.getMessage() for r in alkey_warnings(caplog))
        reloader.settimeout(10)
        assert reloader.recv(64).startswith(b'+OK')
    finally:
        reloader.close()
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    settled = kg('alkey:users#1', 'page')
    assert settled == kg('alkey:users#1', 'page') and settled != stored
    assert settled not in keys
    client.close()


def client_sees_loading(port):
    probe = send_inline(port, 'PING', timeout=1)
    try:
        return probe.recv(64).startswith(b'-LOADING')
    finally:
        probe.close()


def test_paused_writes_keep_the_commit_pending_while_reads_go_on(
        server, client, kg, make_maker):
    """CLIENT PAUSE WRITE: MGET answers, SET waits (a slow write path)."""
    Maker = make_maker(client)
    one, two = kg('alkey:users#1'), kg('alkey:users#2')
    server.admin_command('CLIENT', 'PAUSE', '3000', 'WRITE')
    try:
        assert kg('alkey:users#2') == two
        missing, took = timed(kg, 'alkey:users#777')
        assert took < SLACK * 0.75
        assert missing != kg('alkey:users#777')  # never created: fresh
        took = change_user(Maker, 1, 'changed while writes are paused')
        assert took < SLACK * 0.75
        assert _pending.count() >= 3
        assert kg('alkey:users#1') != one
    finally:
        server.admin_command('CLIENT', 'UNPAUSE')
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    settled = kg('alkey:users#1')
    assert settled != one and settled == kg('alkey:users#1')
    assert kg('alkey:users#2') == two


# --------------------------------------------------------------------------
# Connections closed under the client


def test_a_pooled_connection_killed_by_the_server_is_replaced_transparently(
        server, client, kg, make_maker, caplog, warnings_now):
    Maker = make_maker(client)
    stored = kg('alkey:users#2')
    first_id = client.execute_command('CLIENT', 'ID')
    assert client.execute_command('CLIENT', 'ID') == first_id  # one pooled connection
    assert server.admin_command('CLIENT', 'KILL', 'ID', first_id) == 1
    time.sleep(0.05)
    # Not a miss: the stale connection is dropped and a new one used.
    assert kg('alkey:users#2') == stored
    second_id = client.execute_command('CLIENT', 'ID')
    assert second_id != first_id

    assert server.admin_command('CLIENT', 'KILL', 'ID', second_id) == 1
    time.sleep(0.05)
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#2')
    server.admin_command('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    time.sleep(0.05)
    change_user(Maker, 1, 'changed over a replaced connection')
    assert _pending.count() == 0  # delivered by the commit itself
    assert watch.changed() == {'alkey:users#1'}
    assert client.get('nothing') is None
    assert alkey_warnings(caplog) == []  # no failure at all, not a miss


def test_a_connection_dropped_in_the_middle_of_the_token_pipeline_fails_open(
        server, client, kg):
    """The second round trip (SET NX for each missing token, then MGET)
    is cut: the server closes the connection when the final MGET's reply
    passes the output buffer limit, after the SETs ran."""
    oids = [f'alkey:many#{i}' for i in range(2500)]
    # The first MGET (2502 nil replies, ~12 KB) fits in Redis's 16 KB reply
    # buffer; the last (2502 tokens, ~72 KB) passes a 32 KB hard limit.
    server.config_set('client-output-buffer-limit', 'normal 32768 0 0')
    assert client.connection_count == 0
    cut, took = timed(kg, *oids)
    assert took < SLACK * 0.75
    assert client.connection_count == 0  # the cut connection is not pooled
    assert server.admin.exists(f'alkey.cache.TOKENS:{oids[0]}') == 1  # SETs ran
    again = kg(*oids)  # the tokens exist now: the first MGET is cut too
    assert again != cut
    server.config_set('client-output-buffer-limit', 'normal 0 0 0')
    settled = kg(*oids)
    assert settled == kg(*oids)
    assert settled not in (cut, again)
    assert client.get('nothing') is None


def test_a_commit_pipeline_cut_half_way_keeps_every_invalidation_pending(
        server, client, kg, make_maker):
    """The server is stopped while a commit sends 2,000 SETs; the
    connection is killed as the server resumes, after it has run the
    first of them: every token must still be replaced in the end."""
    Maker = make_maker(client)
    oids = [f'alkey:users#{i}' for i in range(1000, 3000)]
    for oid in oids:
        set_token(client, oid, 'old')
    connection = client.execute_command('CLIENT', 'ID')

    def kill_then_resume():
        time.sleep(0.15)  # the commit has written its pipeline by now
        killer = send_inline(server.port, f'CLIENT KILL ID {connection}')
        time.sleep(0.05)
        server.resume()
        killer.settimeout(5)
        killer.recv(64)
        killer.close()

    server.pause()
    helper = threading.Thread(target=kill_then_resume)
    helper.start()
    try:
        with Maker() as s:
            alkey.invalidate(*oids, session=s)
            s.get(User, 1).name = 'changed with a cut pipeline'
            start = time.monotonic()
            s.commit()
            took = time.monotonic() - start
    finally:
        helper.join(10)
        server.resume()
    assert took < SLACK * 0.75
    assert wait_delivered(5), 'pending invalidations not delivered within 5 s'
    tokens = server.admin.mget([f'alkey.cache.TOKENS:{oid}' for oid in oids])
    assert 'old' not in tokens
    assert server.admin.exists('alkey.cache.TOKENS:alkey:users#1') == 1


# --------------------------------------------------------------------------
# Permissions and passwords


@pytest.fixture
def secret():
    return f'Pw-{secrets.token_hex(8)}'


def acl_user(server, name, password, *rules):
    server.admin_command('ACL', 'SETUSER', name, 'reset', 'on', f'>{password}', *rules)


def test_a_user_without_set_reads_tokens_and_keeps_commits_pending(
        server, kg, make_maker, secret, caplog, warnings_now):
    caplog.set_level(logging.DEBUG, logger='alkey')
    existing = kg('alkey:users#2')  # made by the default user
    acl_user(server, 'reader', secret, '~*', '&*', '+@all', '-set')
    client = short_client(port_of(server), username='reader', password=secret)
    kg = CacheKeyGenerator(client)
    Maker = make_maker(client)

    assert kg('alkey:users#2') == existing  # MGET is allowed
    fresh = {kg('alkey:users#500') for _ in range(3)}  # SET NX is not
    assert len(fresh) == 3
    change_user(Maker, 1, 'changed by a user who may not SET')
    assert _pending.count() >= 3
    warned = alkey_warnings(caplog)
    assert any('NOPERM' in r.getMessage() or 'permission' in r.getMessage()
               for r in warned), [r.getMessage() for r in warned]
    before = kg('alkey:users#1')

    server.admin_command('ACL', 'SETUSER', 'reader', '+set')
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    settled = kg('alkey:users#1')
    assert settled == kg('alkey:users#1') and settled != before
    server.admin_command('ACL', 'SETUSER', 'reader', '-set')
    with pytest.raises(alkey.ReplyError, match='NOPERM') as excinfo:
        client.set('x', 'y')
    assert_secret_absent(secret, caplog.records, repr(client), repr(kg),
                         *exception_texts(excinfo.value))
    client.close()


def test_a_user_without_mget_gets_fresh_keys_and_a_warning(
        server, secret, caplog, warnings_now):
    caplog.set_level(logging.DEBUG, logger='alkey')
    acl_user(server, 'nomget', secret, '~*', '&*', '+@all', '-mget')
    client = short_client(port_of(server), username='nomget', password=secret)
    kg = CacheKeyGenerator(client)
    keys = {kg('alkey:users#1', 'x') for _ in range(3)}
    assert len(keys) == 3
    assert all(k.startswith('alkey:users#1~') for k in keys)
    assert len({get_token(client, 'alkey:users#1') for _ in range(2)}) == 2
    warned = alkey_warnings(caplog)
    assert len(warned) == 1  # rate-limited: one per 10 seconds
    assert 'NOPERM' in warned[0].getMessage() or 'mget' in warned[0].getMessage().lower()
    assert_secret_absent(secret, caplog.records, repr(client), repr(kg))
    client.close()


def test_a_wrong_password_fails_open_and_never_shows_the_password(
        server, make_maker, secret, caplog, warnings_now):
    caplog.set_level(logging.DEBUG, logger='alkey')
    wrong = f'Wrong-{secrets.token_hex(8)}'
    acl_user(server, 'app', secret, '~*', '&*', '+@all')
    client = short_client(port_of(server), username='app', password=wrong)
    kg = CacheKeyGenerator(client)
    Maker = make_maker(client)

    keys = set()
    for _ in range(3):
        key, took = timed(kg, 'alkey:users#1')
        assert took < SLACK * (TIMEOUT + CONNECT_TIMEOUT)
        keys.add(key)
    assert len(keys) == 3
    change_user(Maker, 1, 'changed with a wrong password')
    assert _pending.count() >= 3
    with pytest.raises(alkey.AuthenticationError) as excinfo:
        client.ping()
    warned = alkey_warnings(caplog)
    assert any('AuthenticationError' in r.getMessage() for r in warned)

    # The password the client has becomes the right one: delivered.
    acl_user(server, 'app', wrong, '~*', '&*', '+@all')
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    settled = kg('alkey:users#1')
    assert settled == kg('alkey:users#1') and settled not in keys
    for password in (secret, wrong):
        assert_secret_absent(password, caplog.records, repr(client), repr(kg),
                             *exception_texts(excinfo.value))
    client.close()


def test_requirepass_without_a_password_fails_open(server, secret, caplog, warnings_now):
    caplog.set_level(logging.DEBUG, logger='alkey')
    client = short_client(port_of(server))
    kg = CacheKeyGenerator(client)
    server.config_set('requirepass', secret)  # the fixtures' connection stays in
    try:
        keys = {kg('alkey:users#1') for _ in range(3)}
        assert len(keys) == 3
        with pytest.raises(alkey.ReplyError, match='NOAUTH') as excinfo:
            client.get('x')
        assert_secret_absent(secret, caplog.records, *exception_texts(excinfo.value))
    finally:
        server.admin_command('CONFIG', 'SET', 'requirepass', '')
        client.close()


def test_a_password_in_redis_url_never_reaches_logs_exceptions_or_reprs(
        server, monkeypatch, secret, caplog, warnings_now):
    caplog.set_level(logging.DEBUG, logger='alkey')
    acl_user(server, 'app', f'Other-{secrets.token_hex(4)}', '~*', '&*', '+@all')
    url = f'redis://app:{secret}@127.0.0.1:{port_of(server)}/0?socket_timeout={TIMEOUT}'
    monkeypatch.setenv('REDIS_URL', url)
    get_redis_client.reset()
    client = get_redis_client()
    kg = cache.get_cache_key_generator()
    assert len({kg('alkey:users#1') for _ in range(2)}) == 2
    with pytest.raises(alkey.AuthenticationError) as auth:
        client.get('x')
    with pytest.raises(alkey.ConfigurationError) as bad_url:
        parse_url(f'redis://app:{secret}@127.0.0.1:port/0')
    with pytest.raises(alkey.ConfigurationError) as bad_option:
        parse_url(f'redis://app:{secret}@127.0.0.1/0?socket_timeout=soon')
    texts = [repr(client), repr(kg), *exception_texts(auth.value),
             *exception_texts(bad_url.value), *exception_texts(bad_option.value)]
    assert_secret_absent(secret, caplog.records, *texts)
    assert alkey_warnings(caplog)


def test_a_pipeline_refused_half_way_keeps_every_invalidation_pending(
        server, make_maker, secret, kg):
    """Write permission on one token key only: the commit's first SET
    lands, the others are refused; nothing may be dropped."""
    acl_user(server, 'partial', secret, '&*', '+@all', '%R~*',
             '%W~alkey.cache.TOKENS:alkey:users#1')
    client = short_client(port_of(server), username='partial', password=secret)
    Maker = make_maker(client)
    watch = Watch(kg, 'alkey:users#1', 'alkey:users#*', 'alkey:*#*', 'alkey:users#2')
    change_user(Maker, 1, 'changed half way')
    assert set(_pending._all) >= {'alkey:users#1', 'alkey:users#*', 'alkey:*#*'}
    server.admin_command('ACL', 'SETUSER', 'partial', '%W~*')
    assert wait_delivered(), 'pending invalidations not delivered within 3 s'
    assert watch.changed() == {'alkey:users#1', 'alkey:users#*', 'alkey:*#*'}
    client.close()


def test_set_token_and_fail_open_get_token_under_a_readonly_replica(server, client):
    """set_token is a write the caller asked for: it raises; get_token
    never does."""
    set_token(client, 'alkey:users#1', 'before')
    server.admin_command('REPLICAOF', '127.0.0.1', str(free_port()))
    try:
        with pytest.raises(alkey.ReplyError, match='READONLY'):
            set_token(client, 'alkey:users#1', 'after')
        assert get_token(client, 'alkey:users#1') == 'before'
        assert get_token(client, 'alkey:users#2') != get_token(client, 'alkey:users#2')
    finally:
        server.admin_command('REPLICAOF', 'NO', 'ONE')


@pytest.mark.parametrize('mark', ['/', '?', '#'])
def test_a_malformed_url_error_never_shows_a_password_with_url_syntax(secret, mark):
    password = f'{secret[:6]}{mark}{secret[6:]}'
    with pytest.raises(alkey.ConfigurationError) as excinfo:
        parse_url(f'redis://app:{password}@127.0.0.1:6379/0')
    for text in exception_texts(excinfo.value):
        assert secret[:6] not in text and secret[6:] not in text, text
