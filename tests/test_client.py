"""The native client against the suite's own redis-server."""

from __future__ import annotations

import datetime
import fcntl
import os
import threading
import time
import warnings

import pytest
import redis as redispy

import alkey
from alkey import _native
from alkey.client import GetRedisClient, get_redis_client, get_redis_config, parse_url
from tests.support import other_threads_run_while


def port_of(server) -> int:
    return int(server.url.rsplit(':', 1)[1])


def test_commands_return_what_redis_py_returns(server, client):
    reference = redispy.Redis.from_url(server.url)
    try:
        for c in (client, reference):
            c.flushdb()
            assert c.set('k', 'v') is True
            assert c.set('k', 'w', nx=True) is None
            assert c.set('missing', 'x', xx=True) is None
            assert c.get('k') == b'v'
            assert c.get('nope') is None
            assert c.mget(['k', 'nope']) == [b'v', None]
            assert c.mget('k', 'nope') == [b'v', None]
            with warnings.catch_warnings():  # redis-py deprecates setex
                warnings.simplefilter('ignore', DeprecationWarning)
                assert c.setex('e', 100, 1.5) is True
            assert c.get('e') == b'1.5'
            assert 0 < c.ttl('e') <= 100
            assert c.ttl('k') == -1 and c.ttl('nope') == -2
            assert c.set('t', b'\xff\x00', ex=datetime.timedelta(seconds=50)) is True
            assert c.get('t') == b'\xff\x00'
            assert c.exists('k', 't', 'nope') == 2
            assert c.delete('k', 'nope') == 1
            assert c.ping() is True
            assert c.execute_command('INCRBY', 'n', 5) == 5
            assert c.execute_command('RPUSH', 'l', 'a', 'b') == 2
            assert c.execute_command('LRANGE', 'l', 0, -1) == [b'a', b'b']
            assert c.flushdb() is True
            assert c.exists('e') == 0
    finally:
        reference.close()


def test_error_reply_raises_reply_error(client):
    client.set('s', 'text')
    with pytest.raises(alkey.ReplyError, match='WRONGTYPE'):
        client.execute_command('LPUSH', 's', 'x')
    # The connection stays usable after an error reply.
    assert client.get('s') == b'text'


def test_bad_arguments_raise_type_errors(client):
    with pytest.raises(TypeError, match='bool'):
        client.set('k', True)
    with pytest.raises(TypeError, match='object'):
        client.get(object())
    with pytest.raises(ValueError, match='ex must be above 0'):
        client.set('k', 'v', ex=0)
    with pytest.raises(ValueError, match='exclusive'):
        client.set('k', 'v', nx=True, xx=True)


def test_repr_and_errors_never_show_the_password(server):
    admin = server.admin
    admin.execute_command('ACL', 'SETUSER', 'app', 'on', '>s3cret-pw', '~*', '+@all')
    c = alkey.Client(host='127.0.0.1', port=port_of(server), username='app',
                     password='s3cret-pw')
    assert 's3cret' not in repr(c)
    assert 'app@127.0.0.1' in repr(c)
    assert c.ping() is True
    bad = alkey.Client(host='127.0.0.1', port=port_of(server), username='app',
                       password='wrong-s3cret')
    with pytest.raises(alkey.AuthenticationError) as info:
        bad.ping()
    assert 's3cret' not in str(info.value)
    assert isinstance(info.value, alkey.ConnectionError)


def test_auth_with_password_only_and_with_acl_user(server):
    server.config_set('requirepass', 'topsecret')
    port = port_of(server)
    with pytest.raises(alkey.Error):
        alkey.Client(host='127.0.0.1', port=port).ping()
    c = alkey.Client(**parse_url(f'redis://:topsecret@127.0.0.1:{port}'))
    assert c.set('a', '1') is True
    server.admin_command('ACL', 'SETUSER', 'reader', 'on', '>pw', '~*', '+@read', '+ping')
    reader = alkey.Client(**parse_url(f'redis://reader:pw@127.0.0.1:{port}'))
    assert reader.get('a') == b'1'
    with pytest.raises(alkey.ReplyError, match='NOPERM'):
        reader.set('a', '2')


def test_select_database_from_url(server):
    c = alkey.Client(**parse_url(f'{server.url}/3'))
    assert c.db == 3
    c.set('in-three', 'x')
    other = redispy.Redis.from_url(f'{server.url}/3')
    assert other.get('in-three') == b'x'
    assert server.admin.get('in-three') is None
    other.close()


def test_unix_socket_url(server):
    c = alkey.Client(**parse_url(f'{server.unix_url}?db=2'))
    assert c.path == str(server.socket_path) and c.db == 2 and c.port is None
    assert c.set('u', 'x') is True
    assert c.get('u') == b'x'


def test_parse_url_forms():
    assert parse_url('redis://localhost') == {'host': 'localhost', 'port': 6379}
    assert parse_url('redis://u%40x:p%3Aw@h:7000/5?socket_timeout=0.1') == {
        'host': 'h', 'port': 7000, 'db': 5, 'username': 'u@x', 'password': 'p:w',
        'socket_timeout': 0.1}
    assert parse_url('redis://:pw@h') == {'host': 'h', 'port': 6379, 'password': 'pw'}
    assert parse_url('redis://[::1]:7001')['host'] == '::1'
    assert parse_url('unix:///tmp/r.sock?db=4&socket_connect_timeout=2') == {
        'path': '/tmp/r.sock', 'db': 4, 'socket_connect_timeout': 2.0}
    assert parse_url('redis://h?max_connections=3')['max_connections'] == 3


@pytest.mark.parametrize('url, message', [
    ('http://localhost', 'must start with redis://'),
    ('redis://localhost:notaport', 'not a valid Redis URL'),
    ('redis://localhost:99999', 'not a valid Redis URL'),
    ('redis://localhost/x', 'database number'),
    ('redis://localhost/-1', 'must be 0 or more'),
    ('redis://localhost?socket_timeout=fast', 'socket_timeout'),
    ('redis://localhost?socket_timeout=0', 'above 0'),
    ('redis://localhost?colour=red', "unknown option 'colour'"),
    ('redis:///', 'has no host'),
    ('unix://', 'socket path'),
    ('', 'must be a Redis URL'),
])
def test_malformed_urls_are_clear_errors_naming_the_variable(url, message):
    with pytest.raises(alkey.ConfigurationError, match=message) as info:
        parse_url(url, 'REDIS_URL')
    assert 'REDIS_URL' in str(info.value)
    assert isinstance(info.value, ValueError)


def test_malformed_url_error_hides_the_password():
    with pytest.raises(alkey.ConfigurationError) as info:
        parse_url('redis://user:hunter2@host:bad')
    assert 'hunter2' not in str(info.value)


def test_environment_configuration():
    env = {'REDIS_URL': 'redis://h:1/2', 'REDIS_MAX_CONNECTIONS': '7'}
    config = get_redis_config(env)
    assert config['db'] == 2 and config['max_connections'] == 7
    assert config['socket_timeout'] == 0.5 and config['socket_connect_timeout'] == 0.25
    assert get_redis_config({'REDIS_DB': '4'})['db'] == 4
    assert get_redis_config({})['host'] == 'localhost'
    with pytest.raises(alkey.ConfigurationError, match='REDIS_DB'):
        get_redis_config({'REDIS_DB': 'one'})
    with pytest.raises(alkey.ConfigurationError, match='REDIS_MAX_CONNECTIONS'):
        get_redis_config({'REDIS_MAX_CONNECTIONS': '0'})
    with pytest.raises(alkey.ConfigurationError, match='REDIS_DB says 3'):
        get_redis_config({'REDIS_URL': 'redis://h/2', 'REDIS_DB': '3'})
    settings = {'redis.url': 'redis://s:9', 'redis.db': '1'}
    config = get_redis_config(env, settings)
    assert (config['host'], config['port'], config['db']) == ('s', 9, 1)
    with pytest.raises(alkey.ConfigurationError, match='redis.max_connections'):
        get_redis_config({}, {'redis.max_connections': 'many'})


@pytest.mark.skipif(_native.HAVE_TLS, reason='this libhiredis has TLS')
def test_rediss_without_tls_support_fails_at_configuration():
    with pytest.raises(alkey.ConfigurationError, match='TLS') as info:
        alkey.Client(**parse_url('rediss://localhost:6380'))
    assert _native.HIREDIS_VERSION.rsplit('.', 1)[0] in str(info.value)


def test_get_redis_client_is_process_wide_and_reads_the_environment(server, monkeypatch):
    monkeypatch.setenv('REDIS_URL', server.url)
    monkeypatch.setenv('REDIS_MAX_CONNECTIONS', '4')
    get_redis_client.reset()
    first = get_redis_client()
    assert first is get_redis_client()
    assert first.max_connections == 4
    assert first.ping() is True
    monkeypatch.setenv('REDIS_MAX_CONNECTIONS', '9')
    assert get_redis_client() is first  # read when first made
    get_redis_client.reset()
    assert get_redis_client().max_connections == 9


def test_request_settings_win_over_the_environment(server, monkeypatch):
    monkeypatch.setenv('REDIS_URL', 'redis://127.0.0.1:1')

    class Registry:
        settings = {'redis.url': server.url, 'redis.db': '5'}

    class Request:
        registry = Registry()

    factory = GetRedisClient()
    client = factory(Request())
    assert client.db == 5 and client is factory(Request())
    assert client.ping() is True
    assert factory().port == 1


def test_refused_connection_raises_connection_error_quickly():
    from tests.conftest import free_port
    c = alkey.Client(host='127.0.0.1', port=free_port())
    start = time.monotonic()
    with pytest.raises(alkey.ConnectionError, match='127.0.0.1'):
        c.get('k')
    assert time.monotonic() - start < 0.25


def test_stopped_server_times_out_within_socket_timeout(server):
    c = alkey.Client(host='127.0.0.1', port=port_of(server), socket_timeout=0.2)
    assert c.ping()
    server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(alkey.TimeoutError, match='timeout'):
            c.get('k')
        assert time.monotonic() - start < 1.0
    finally:
        server.resume()
    assert c.get('k') is None  # the timed-out connection was replaced


def test_network_io_releases_the_gil(server):
    """While one thread waits on a stopped server, others keep running."""
    c = alkey.Client(host='127.0.0.1', port=port_of(server), socket_timeout=0.5)
    assert c.ping()
    server.pause()
    raised, spins = other_threads_run_while(lambda: c.get('k'), server.resume)
    assert [type(e) for e in raised] == [alkey.TimeoutError] and spins > 10000


def test_reconnects_after_the_server_restarts(server, client):
    client.set('k', 'v')
    server.restart()
    assert client.get('k') is None
    assert client.set('k', 'w') is True


def test_threads_share_one_client_without_crossed_replies(server):
    c = alkey.Client(host='127.0.0.1', port=port_of(server), max_connections=3,
                     socket_timeout=5)
    errors = []

    def work(n):
        try:
            for i in range(300):
                key = f'thread{n}:{i}'
                c.set(key, key)
                assert c.get(key) == key.encode()
                assert c.mget([key, 'none']) == [key.encode(), None]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert c.connection_count <= 3


def _connection_fds():
    fds = {}
    for name in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink(f'/proc/self/fd/{name}')
        except OSError:
            continue
        if target.startswith('socket:'):
            fds[int(name)] = target
    return fds


def test_sockets_are_close_on_exec(server):
    before = _connection_fds()
    c = alkey.Client(host='127.0.0.1', port=port_of(server))
    c.ping()
    new = set(_connection_fds()) - set(before)
    assert new
    for fd in new:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    c.close()


def test_forked_child_opens_its_own_connection(server, client):
    parent_id = client.execute_command('CLIENT', 'ID')
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child_id = client.execute_command('CLIENT', 'ID')
            client.set('from-child', str(os.getpid()))
            os.write(write, str(child_id).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_id = int(os.read(read, 100) or b'0')
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert child_id and child_id != parent_id
    # The parent's connection was never touched by the child.
    assert client.execute_command('CLIENT', 'ID') == parent_id
    assert client.get('from-child') == str(pid).encode()


def test_max_connections_waits_then_times_out(server):
    c = alkey.Client(host='127.0.0.1', port=port_of(server), max_connections=1,
                     socket_timeout=0.3)
    c.ping()
    server.pause()
    results = []

    def call():
        try:
            c.get('k')
        except alkey.TimeoutError as exc:
            results.append(str(exc))

    start = time.monotonic()
    try:
        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.resume()
    # Each waited at most about one timeout for the connection and one on it.
    assert len(results) == 3
    assert time.monotonic() - start < 2.0
    assert c.ping()
    assert c.connection_count == 1


def test_client_arguments_are_validated():
    with pytest.raises(alkey.ConfigurationError, match='port'):
        alkey.Client(port=0)
    with pytest.raises(alkey.ConfigurationError, match='max_connections'):
        alkey.Client(max_connections=0)
    with pytest.raises(ValueError, match='socket_timeout'):
        alkey.Client(socket_timeout=-1)
    with pytest.raises(alkey.ConfigurationError, match='username needs a password'):
        alkey.Client(username='u')
    with pytest.raises(ValueError, match='NUL'):
        alkey.Client(host='a\0b')


def test_timeout_message_names_the_limits(server):
    c = alkey.Client(host='127.0.0.1', port=port_of(server), socket_timeout=0.2)
    c.ping()
    server.pause()
    try:
        with pytest.raises(alkey.TimeoutError, match=r'socket_timeout=0\.2s'):
            c.get('k')
    finally:
        server.resume()


def test_binary_error_replies_are_reply_errors(client):
    client.set(b'\xff\xfe', 'text')
    with pytest.raises(alkey.ReplyError, match='WRONGTYPE'):
        client.execute_command('LPUSH', b'\xff\xfe', 'x')
    with pytest.raises(alkey.ReplyError, match='unknown command'):
        client.execute_command(b'NO\xffSUCH')


def test_state_changing_commands_never_leak_into_the_pool(client):
    client.set('in-zero', 'x')
    assert client.execute_command('SELECT', 5) is True
    assert client.get('in-zero') == b'x'  # still database 0
    for command in ('MULTI', 'subscribe', 'HELLO', 'MONITOR'):
        with pytest.raises(ValueError, match='pooled connection'):
            client.execute_command(command, 'x')


def test_client_is_final_and_must_be_initialised():
    with pytest.raises(TypeError):
        class Sub(alkey.Client):  # noqa: F841
            pass
    bare = alkey.Client.__new__(alkey.Client)
    with pytest.raises(TypeError, match='never initialised'):
        bare.ping()
    assert 'not initialised' in repr(bare)
