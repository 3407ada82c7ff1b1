"""Processes and threads sharing one client: a pre-fork server pattern, and
16 threads mixing cache keys, hand-set tokens and commits.

What a user relies on: a forked worker never uses its parent's sockets and
sees the same tokens; a commit in one worker changes the keys of what it
changed, in every process, and nothing else; threads never get each
other's replies; nothing raises.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
import warnings

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import sessionmaker

import alkey
from alkey import _pending, events
from alkey.cache import CacheKeyGenerator, set_token
from alkey.client import parse_url
from tests.models import Base, User

CHILDREN = 4
THREADS = 16
CALLS = 10_000



def sqlite_engine(path, **options):
    """A SQLite file whose writers queue up (BEGIN IMMEDIATE, a long busy
    timeout) instead of failing with 'database is locked'."""
    engine = create_engine(f'sqlite:///{path}', connect_args={'timeout': 30}, **options)

    @event.listens_for(engine, 'connect')
    def _connect(dbapi_conn, _):
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, 'begin')
    def _begin(conn):
        conn.exec_driver_sql('BEGIN IMMEDIATE')

    Base.metadata.create_all(engine)
    return engine


def fork():
    with warnings.catch_warnings():  # Python 3.12 warns when threads exist
        warnings.simplefilter('ignore', DeprecationWarning)
        return os.fork()


def wait_children(pids, timeout=30.0):
    """{pid: exit status}; children still running at the deadline are
    killed and reported as None."""
    deadline = time.monotonic() + timeout
    status = {}
    while len(status) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid in status:
                continue
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status[pid] = os.waitstatus_to_exitcode(code)
        time.sleep(0.01)
    for pid in pids:
        if pid not in status:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status[pid] = None
    return status


def run_child(work, report_path):
    """In a forked child: runs work() and exits 0 only when it returns no
    problem; never returns into pytest."""
    code = 2
    try:
        problems = work()
        if problems:
            report_path.write_text('\n'.join(problems))
            code = 1
        else:
            code = 0
    except BaseException:  # noqa: BLE001 -- reported to the parent
        with contextlib.suppress(BaseException):
            report_path.write_text(traceback.format_exc())
    finally:
        os._exit(code)


def test_pre_fork_workers_share_tokens_and_their_commits_change_the_right_keys(
        server, tmp_path):
    # The master process: imports, configures, uses the client, then forks.
    client = alkey.Client(**parse_url(server.url))
    kg = CacheKeyGenerator(client)
    engine = sqlite_engine(tmp_path / 'prefork.db')
    maker = sessionmaker(engine)
    rows = list(range(1, CHILDREN + 1))
    control = 100
    with maker() as s:
        s.add_all([User(id=i, name=f'user {i}') for i in rows + [control]])
        s.commit()
    events.bind(maker, redis_client=client)
    try:
        before = {i: kg(f'alkey:users#{i}', 'page') for i in rows + [control]}
        parent_id = client.execute_command('CLIENT', 'ID')
        engine.dispose()  # no SQLite connection crosses the fork

        def child_work(n):
            engine.dispose(close=False)  # SQLAlchemy's advice after fork
            problems = []
            own = f'alkey:users#{n}'
            if client.execute_command('CLIENT', 'ID') == parent_id:
                problems.append("the child used its parent's connection")
            for _ in range(50):
                if kg(own, 'page') != before[n]:
                    problems.append('own key changed before the commit')
                    break
                if kg(f'alkey:users#{control}', 'page') != before[control]:
                    problems.append('control key differs from the parent')
                    break
            with maker() as s:
                user = s.get(User, n)
                if kg(user, 'page') != before[n]:
                    problems.append('instance key differs from the identifier key')
                user.name = f'changed by child {n}'
                s.commit()
            if _pending.count():
                problems.append(f'{_pending.count()} invalidations left pending')
            after = kg(own, 'page')
            if after == before[n]:
                problems.append('own key did not change after the commit')
            if any(kg(own, 'page') != after for _ in range(20)):
                problems.append('own key unstable after the commit')
            (tmp_path / f'after-{n}').write_text(after)
            return problems

        pids = []
        for n in rows:
            pid = fork()
            if pid == 0:  # pragma: no cover - runs in the child
                run_child(lambda n=n: child_work(n), tmp_path / f'report-{n}')
            pids.append(pid)
        # The master keeps using its client while the workers run.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
                not (tmp_path / f'after-{n}').exists()
                and not (tmp_path / f'report-{n}').exists() for n in rows):
            assert kg(f'alkey:users#{control}', 'page') == before[control]
            time.sleep(0.002)
        status = wait_children(pids)
        reports = {n: (tmp_path / f'report-{n}').read_text()
                   for n in rows if (tmp_path / f'report-{n}').exists()}
        assert reports == {}
        assert list(status.values()) == [0] * CHILDREN

        # Every worker's change is seen by the master, and nothing else.
        for n in rows:
            after = (tmp_path / f'after-{n}').read_text()
            assert after != before[n]
            assert kg(f'alkey:users#{n}', 'page') == after
        assert kg(f'alkey:users#{control}', 'page') == before[control]
        assert client.execute_command('CLIENT', 'ID') == parent_id
        with maker() as s:
            assert {u.id: u.name for u in s.query(User)} == {
                **{n: f'changed by child {n}' for n in rows}, control: f'user {control}'}
    finally:
        events.unbind(maker)
        engine.dispose()
        client.close()


def test_forking_while_another_thread_uses_the_client(server, tmp_path):
    """A child forked while a thread of the parent is in the middle of a
    call neither hangs nor reads that call's reply."""
    client = alkey.Client(**parse_url(server.url))
    kg = CacheKeyGenerator(client)
    set_token(client, 'alkey:users#1', 'parent-token')
    stop = threading.Event()
    errors = []

    def hammer():
        try:
            while not stop.is_set():
                key = kg('alkey:users#1', 'x')
                assert key.startswith('alkey:users#1~parent-token.'), key
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    thread = threading.Thread(target=hammer)
    thread.start()
    pids = []
    try:
        for n in range(CHILDREN):
            time.sleep(0.01)

            def work(n=n):
                own = f'alkey:users#{10 + n}'
                problems = []
                for i in range(200):
                    set_token(client, own, f'child{n}-{i}')
                    key = kg(own, 'alkey:users#1')
                    if not key.startswith(f'{own}~child{n}-{i}.'):
                        problems.append(f'crossed reply: {key}')
                        break
                    if '~parent-token.' not in key:
                        problems.append(f'wrong parent token: {key}')
                        break
                return problems

            pid = fork()
            if pid == 0:  # pragma: no cover - runs in the child
                run_child(work, tmp_path / f'report-{n}')
            pids.append(pid)
        status = wait_children(pids, timeout=20)
    finally:
        stop.set()
        thread.join(10)
    reports = {n: (tmp_path / f'report-{n}').read_text()
               for n in range(CHILDREN) if (tmp_path / f'report-{n}').exists()}
    assert reports == {}
    assert list(status.values()) == [0] * CHILDREN
    assert not thread.is_alive() and errors == []
    client.close()


def run_threads(target, count, timeout):
    errors = []

    def guarded(t):
        try:
            target(t)
        except BaseException as exc:  # noqa: BLE001 -- reported below
            formatted = traceback.format_exception(type(exc), exc, exc.__traceback__)
            errors.append((t, ''.join(formatted)))

    threads = [threading.Thread(target=guarded, args=(t,), name=f'worker-{t}')
               for t in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    return errors, stuck


def test_sixteen_threads_mixing_calls_and_commits_never_cross_replies(server, tmp_path):
    # Generous timeouts: this is about replies reaching the right thread,
    # not about a noisy machine's latency.
    client = alkey.Client(**parse_url(server.url), socket_timeout=5)
    kg = CacheKeyGenerator(client)
    engine = sqlite_engine(tmp_path / 'threads.db', pool_size=THREADS)
    maker = sessionmaker(engine)
    rows = {t: 50_000 + t for t in range(THREADS)}
    with maker() as s:
        s.add_all([User(id=row, name='start') for row in rows.values()])
        s.commit()
    events.bind(maker, redis_client=client)
    rounds = CALLS // THREADS
    commit_every = 25

    def work(t):
        fixed = f'alkey:users#{t * 1000 + 999}'
        set_token(client, fixed, f'fixed{t}')
        row_oid = f'alkey:users#{rows[t]}'
        for r in range(rounds):
            oid = f'alkey:users#{t * 1000 + r % 10}'
            token = f't{t}r{r}'
            set_token(client, oid, token)
            key = kg(oid, 'thread', t, fixed)
            expected = f'{oid}~{token}.'
            assert key.startswith(expected), (t, r, key)
            assert f'/{fixed}~fixed{t}.' in key, (t, r, key)
            if r % commit_every == commit_every - 1:
                before = kg(row_oid)
                with maker() as s:
                    s.get(User, rows[t]).name = f'{t}:{r}'
                    s.commit()
                after = kg(row_oid)
                assert after != before and after == kg(row_oid), (t, r)

    start = time.monotonic()
    try:
        errors, stuck = run_threads(work, THREADS, timeout=60)
        took = time.monotonic() - start
        assert stuck == []
        assert errors == []
        assert _pending.count() == 0
        with maker() as s:
            names = {u.id: u.name for u in s.query(User)}
        last = rounds - rounds % commit_every - 1
        assert names == {rows[t]: f'{t}:{last}' for t in range(THREADS)}
        assert took < 30, f'{THREADS} threads took {took:.1f} s'
    finally:
        events.unbind(maker)
        engine.dispose()
        client.close()


def test_threads_waiting_for_a_small_pool_never_cross_replies(server):
    client = alkey.Client(**parse_url(server.url), max_connections=3, socket_timeout=5)
    kg = CacheKeyGenerator(client)

    def work(t):
        oids = [f'alkey:users#{t * 1000 + i}' for i in range(5)]
        for r in range(100):
            for i, oid in enumerate(oids):
                set_token(client, oid, f'p{t}x{r}x{i}')
            key = kg(*oids)
            parts = key.split('/')
            assert len(parts) == len(oids), key
            for i, (oid, part) in enumerate(zip(oids, parts)):
                assert part.startswith(f'{oid}~p{t}x{r}x{i}.'), key

    errors, stuck = run_threads(work, THREADS, timeout=60)
    assert stuck == [] and errors == []
    assert client.connection_count <= 3
    client.close()


@pytest.mark.parametrize('max_connections', [None, 2])
def test_threads_on_a_stopped_server_all_return_fresh_keys_within_the_timeout(
        server, max_connections):
    """No thread stays blocked: each call costs at most one connect and
    one socket timeout (or a wait for a pooled connection), even with every
    thread waiting at once."""
    client = alkey.Client(**parse_url(server.url), socket_timeout=0.3,
                          socket_connect_timeout=0.3, max_connections=max_connections)
    kg = CacheKeyGenerator(client)
    stored = kg('alkey:users#1')
    keys, took = [], []
    lock = threading.Lock()

    def work(t):
        for _ in range(2):
            start = time.monotonic()
            key = kg('alkey:users#1')
            with lock:
                took.append(time.monotonic() - start)
                keys.append(key)

    server.pause()
    try:
        errors, stuck = run_threads(work, THREADS, timeout=20)
    finally:
        server.resume()
    assert stuck == [] and errors == []
    assert len(keys) == 2 * THREADS and stored not in keys
    assert len(set(keys)) == len(keys)
    assert max(took) < 3 * (0.3 + 0.3)
    assert kg('alkey:users#1') == stored
    client.close()


def test_a_commit_failing_while_a_retry_is_in_flight_keeps_its_invalidation():
    """The retry thread is sending users#1 (pending from commit 1) when
    commit 2 changes users#1 again and its own delivery fails.  Commit 2's
    invalidation must still reach Redis afterwards.  (The steps of commit 2
    are those of alkey.events._Binding.deliver.)"""
    in_flight, release = threading.Event(), threading.Event()
    sent = []

    def retry_sender(oids):  # Redis answers the retry, slowly
        in_flight.set()
        assert release.wait(5)
        sent.append(sorted(oids))

    binding = object()
    _pending.add(binding, retry_sender, ['alkey:users#1'])  # commit 1 failed
    assert in_flight.wait(3), 'the retry thread never ran'

    # Commit 2 (after the retry's SET landed): take what is pending, send
    # it with its own identifiers, fail, keep everything pending.
    oids = list(dict.fromkeys(['alkey:users#1', 'alkey:users#*'] + _pending.take(binding)))
    try:
        raise alkey.ConnectionError('Redis failed for this commit')
    except alkey.ConnectionError:
        _pending.add(binding, retry_sender, oids)
    release.set()

    deadline = time.monotonic() + 3
    while _pending.count() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _pending.count() == 0
    # Commit 2's users#1 went out after commit 1's batch.
    assert sent[0] == ['alkey:users#1']
    assert any('alkey:users#1' in batch for batch in sent[1:]), sent


def test_a_child_forked_with_pending_invalidations_serves_fresh_keys_and_delivers(
        server, tmp_path):
    """A commit failed in the master before the fork: each worker inherits
    the pending invalidation, serves no key it should have changed, and
    delivers it once Redis is back."""
    client = alkey.Client(**parse_url(server.url), socket_timeout=0.3,
                          socket_connect_timeout=0.3)
    kg = CacheKeyGenerator(client)
    engine = sqlite_engine(tmp_path / 'pending.db')
    maker = sessionmaker(engine)
    with maker() as s:
        s.add_all([User(id=1, name='one'), User(id=2, name='two')])
        s.commit()
    events.bind(maker, redis_client=client)
    try:
        stored = kg('alkey:users#1')
        server.config_set('maxmemory', '1')
        server.config_set('maxmemory-policy', 'noeviction')
        with maker() as s:
            s.get(User, 1).name = 'changed while Redis refuses writes'
            s.commit()
        assert 'alkey:users#1' in _pending._all
        engine.dispose()

        def work():
            problems = []
            if 'alkey:users#1' not in _pending._all:
                problems.append('the child did not inherit the pending work')
            if kg('alkey:users#1') in (stored, kg('alkey:users#1')):
                problems.append('the child served a key the change should have changed')
            # Wait for the master to let Redis take writes again.
            deadline = time.monotonic() + 10
            while not (tmp_path / 'go').exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            deadline = time.monotonic() + 5
            while _pending.count() and time.monotonic() < deadline:
                time.sleep(0.02)
            if _pending.count():
                problems.append('the child never delivered its pending work')
            settled = kg('alkey:users#1')
            if settled == stored or settled != kg('alkey:users#1'):
                problems.append('no settled new key in the child')
            return problems

        pids = []
        for n in range(2):
            pid = fork()
            if pid == 0:  # pragma: no cover - runs in the child
                run_child(work, tmp_path / f'report-{n}')
            pids.append(pid)
        time.sleep(0.2)
        server.config_set('maxmemory', '0')
        (tmp_path / 'go').write_text('')
        status = wait_children(pids, timeout=20)
        reports = {n: (tmp_path / f'report-{n}').read_text()
                   for n in range(2) if (tmp_path / f'report-{n}').exists()}
        assert reports == {}
        assert list(status.values()) == [0, 0]
        deadline = time.monotonic() + 3
        while _pending.count() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _pending.count() == 0
        assert kg('alkey:users#1') != stored
    finally:
        events.unbind(maker)
        engine.dispose()
        client.close()
