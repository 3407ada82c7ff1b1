"""Shared fixtures: a redis-server of the suite's own, and PostgreSQL.

The suite starts its own redis-server on a free port in a temp dir and never
talks to any other Redis (the machine's one on 6379 included).  A test asks
for `redis_server_clean` to get that server running, empty and with REDIS_URL
pointing at it; `redis_server` is the same server without the cleaning.

A missing server is a skip on a developer's machine and a failure in CI
(CI set in the environment): CI must never pass by skipping.
"""

from __future__ import annotations

import collections
import ctypes
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
STARTUP_TIMEOUT = 10.0
# Variables that must not reach redis-server: `make test-asan` preloads the
# sanitizer runtimes into Python, not into programs it starts.
CHILD_ENV_DROP = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")


def unavailable(reason: str) -> None:
    """Skips the test, or fails it when running in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: required, not skipped)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 6379:
            return port


if sys.platform.startswith("linux"):
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    PR_SET_PDEATHSIG = 1

    def die_with_parent() -> None:
        """Runs in the child before exec: a crashed test run (a segfault
        in the extension) must not leave redis-server behind."""
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

else:
    die_with_parent = None


class RedisServer:
    """A redis-server process owned by the test run.

    It keeps its port across restarts; every restart is an empty server.
    `admin` is a redis-py client for the fixtures' own commands; the
    commands sent through `admin_command()`, `reset_stats()` and
    `config_set()` are left out of `command_counts()`.
    """

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self._admin: Any = None
        # Commands this object sent since the statistics were last reset.
        self._own: collections.Counter[str] = collections.Counter()
        # Original values of the settings config_set() changed.
        self._saved_config: dict[str, str] = {}

    # -- addresses -----------------------------------------------------

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"

    # -- process -------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Starts the server on self.port and waits until it answers PING.
        A port taken meanwhile by someone else moves it to another one."""
        for _ in range(5):
            self._spawn()
            try:
                self._wait_ready()
                return
            except _PortTaken:
                self._reap()
                self.port = free_port()
        raise RuntimeError(f"redis-server found no free port:\n{self._log_tail()}")

    def _spawn(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.log_path.unlink()
        except FileNotFoundError:
            pass
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]
        env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
        self.process = subprocess.Popen(
            args,
            cwd=self.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a ^C goes to pytest, not to the server
            preexec_fn=die_with_parent,
        )
        self.paused = False
        self._own.clear()

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                log = self._log_tail()
                if "Address already in use" in log:
                    raise _PortTaken()
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}:\n{log}"
                )
            try:
                if self.admin_command("PING"):
                    return
            except (redis.ConnectionError, redis.TimeoutError):
                self._drop_admin()
            if time.monotonic() > deadline:
                self._reap()
                raise RuntimeError(
                    f"redis-server did not answer PING within {STARTUP_TIMEOUT}s:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.02)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _reap(self) -> None:
        """Kills and waits for the process, whatever its state."""
        self._drop_admin()
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        assert self.running, "redis-server is not running"
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: undoes pause()."""
        if self.running:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL, then waits for the process: the data is lost."""
        self._reap()

    def restart(self) -> None:
        """A new, empty server on the same port, ready when this returns."""
        self._reap()
        self._saved_config.clear()
        self.start()

    def stop(self) -> None:
        """Shuts the server down for good (at the end of the session)."""
        self._drop_admin()
        if self.process is None:
            return
        if self.paused:
            self.resume()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # -- administration ------------------------------------------------

    def client(self, *, unix: bool = False, **options: Any) -> Any:
        """A new redis-py client of this server (over its Unix socket if
        unix), to be closed by the caller.  It fails at once rather than
        retrying, and sends nothing on connect (RESP2, no CLIENT SETINFO),
        so that command_counts() shows only what a test sent."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options.setdefault("socket_timeout", 5)
        options.setdefault("socket_connect_timeout", 5)
        options.setdefault("retry", Retry(NoBackoff(), 0))
        parameters = inspect.signature(redis.Redis).parameters
        if "protocol" in parameters:
            options.setdefault("protocol", 2)  # RESP3 would send HELLO
        if "driver_info" in parameters:
            options.setdefault("driver_info", None)  # redis-py >= 7.1
        else:
            options.setdefault("lib_name", None)
            options.setdefault("lib_version", None)
        return redis.Redis.from_url(self.unix_url if unix else self.url, **options)

    @property
    def admin(self) -> Any:
        """The fixtures' redis-py client (see client(); decoded replies).
        Commands sent through it directly count in command_counts()."""
        if self._admin is None:
            self._admin = self.client(decode_responses=True)
        return self._admin

    def _drop_admin(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            admin.close()

    def admin_command(self, *args: Any) -> Any:
        """Sends one command through `admin`, left out of command_counts()."""
        reply = self.admin.execute_command(*args)
        name = str(args[0]).lower()
        if name in ("acl", "client", "config", "script", "function") and len(args) > 1:
            name = f"{name}|{str(args[1]).lower()}"
        self._own[name] += 1
        return reply

    def command_counts(self) -> dict[str, int]:
        """{command: calls} since the last reset_stats() (or restart), from
        INFO commandstats, less the commands of this object.  Subcommands
        are named as Redis 7 names them: "config|set".  Resumes a paused
        server, which could not answer otherwise."""
        if self.paused:
            self.resume()
        info = self.admin_command("INFO", "commandstats")
        calls = {
            key.removeprefix("cmdstat_"): int(stats["calls"])
            for key, stats in info.items()
        }
        # INFO counts itself only after replying: the one just sent is not in.
        own = self._own.copy()
        own["info"] -= 1
        for name, count in own.items():
            if name not in calls:  # Redis < 7 counts "config", not "config|set"
                name = name.partition("|")[0]
            if name in calls:
                calls[name] -= count
        return {name: count for name, count in calls.items() if count > 0}

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT: command_counts() starts again from nothing."""
        self.admin_command("CONFIG", "RESETSTAT")
        self._own.clear()
        self._own["config|resetstat"] += 1

    def config_set(self, name: str, value: Any) -> None:
        """CONFIG SET, undone by the `redis_server_clean` fixture."""
        if name not in self._saved_config:
            current = self.admin_command("CONFIG", "GET", name)
            if isinstance(current, list):  # [name, value, ...] in RESP2
                current = dict(zip(current[::2], current[1::2]))
            if name in current:
                self._saved_config[name] = current[name]
        self.admin_command("CONFIG", "SET", name, value)

    def clean(self) -> None:
        """Makes the server as if new: running, not paused, no data, no
        scripts, no extra ACL users, the default user open, the settings of
        config_set() undone and statistics reset.  A server that cannot be
        cleaned (a test locked the fixture out) is restarted."""
        import redis

        if self.paused:
            self.resume()
        if not self.running:
            self.restart()
        try:
            self._clean()
        except redis.RedisError:
            self.restart()
            self._clean()

    def _clean(self) -> None:
        self.admin_command("CLIENT", "UNPAUSE")
        self.admin_command("FLUSHALL")
        self.admin_command("SCRIPT", "FLUSH")
        for user in self.admin_command("ACL", "USERS"):
            if user != "default":
                self.admin_command("ACL", "DELUSER", user)
        self.admin_command("ACL", "SETUSER", "default", "on", "nopass", "~*", "&*", "+@all")
        self.admin_command("CONFIG", "SET", "requirepass", "")
        for name, value in self._saved_config.items():
            self.admin_command("CONFIG", "SET", name, value)
        self._saved_config.clear()
        self.reset_stats()


class _PortTaken(Exception):
    pass


def _reset_alkey_client() -> None:
    """Forgets alkey's process-wide Redis client, if alkey is importable."""
    try:
        import alkey.client
    except ImportError:
        return
    reset = getattr(getattr(alkey.client, "get_redis_client", None), "reset", None)
    if reset is not None:
        reset()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The suite's own redis-server, for the whole session."""
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable("redis-server is not on PATH (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        unavailable("redis-py is not installed (pip install -e '.[test]')")

    directory = tmp_path_factory.mktemp("redis")
    scratch = None
    if len(str(directory / "redis.sock")) > 100:  # sun_path holds 108 bytes
        scratch = tempfile.mkdtemp(prefix="alkey-redis-")
        directory = Path(scratch)
    server = RedisServer(executable, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def redis_server_clean(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisServer]:
    """The suite's redis-server running, empty and with its statistics
    reset; REDIS_URL names it and alkey's shared client is new."""
    redis_server.clean()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.delenv("REDIS_DB", raising=False)
    monkeypatch.delenv("REDIS_MAX_CONNECTIONS", raising=False)
    _reset_alkey_client()
    try:
        yield redis_server
    finally:
        _reset_alkey_client()
        if redis_server.paused:
            redis_server.resume()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The SQLAlchemy URL of a reachable PostgreSQL test database, from
    ALKEY_TEST_POSTGRES_URL."""
    url = os.environ.get("ALKEY_TEST_POSTGRES_URL")
    if not url:
        unavailable("ALKEY_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # the message would quote the URL, password and all
        unavailable("ALKEY_TEST_POSTGRES_URL is not a database URL")
    shown = parsed.render_as_string(hide_password=True)
    connect_args = {}
    if parsed.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args["connect_timeout"] = 5
    try:
        engine = create_engine(parsed, connect_args=connect_args)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        unavailable(f"cannot connect to PostgreSQL at {shown}: {type(exc).__name__}: {first_line}")
    return url


def pytest_report_header(config: pytest.Config) -> list[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        return ["redis-server: not found"]
    try:
        version = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        version = f"unusable ({exc})"
    return [f"redis-server: {executable}: {version}"]


# --------------------------------------------------------------------------
# alkey over the suite's redis-server


@pytest.fixture
def server(redis_server_clean: RedisServer) -> RedisServer:
    """The suite's redis-server, clean (a shorter name for tests)."""
    return redis_server_clean


@pytest.fixture
def client(server: RedisServer) -> Iterator[Any]:
    """A native alkey client of the suite's redis-server."""
    import alkey
    from alkey.client import parse_url

    c = alkey.Client(**parse_url(server.url))
    yield c
    c.close()


@pytest.fixture
def kg(client: Any) -> Any:
    """A cache key generator over `client`."""
    from alkey.cache import CacheKeyGenerator

    return CacheKeyGenerator(client)


# --------------------------------------------------------------------------
# SQLAlchemy databases for the change-tracking tests


@pytest.fixture(params=['sqlite', 'postgresql'])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An engine on SQLite (a file) and on PostgreSQL, with the test tables."""
    from sqlalchemy import create_engine, event

    from tests.models import Base

    if request.param == 'sqlite':
        eng = create_engine(f'sqlite:///{tmp_path}/events.db')

        @event.listens_for(eng, 'connect')
        def _fk(dbapi_conn, _):  # SQLite needs SAVEPOINT-friendly settings
            dbapi_conn.isolation_level = None

        @event.listens_for(eng, 'begin')
        def _begin(conn):  # writers queue up instead of failing at once
            conn.exec_driver_sql('BEGIN IMMEDIATE')
    else:
        url = request.getfixturevalue('postgres_url')
        eng = create_engine(url)
        Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    yield eng
    if request.param == 'postgresql':
        Base.metadata.drop_all(eng)
    eng.dispose()


@pytest.fixture
def Maker(engine: Any, client: Any) -> Iterator[Any]:
    """A sessionmaker on `engine`, bound to alkey with `client`."""
    from sqlalchemy.orm import sessionmaker

    from alkey import events

    maker = sessionmaker(engine)
    events.bind(maker, redis_client=client)
    yield maker
    events.unbind(maker)


@pytest.fixture
def seeded(Maker: Any) -> None:
    """Rows of every test model."""
    import uuid

    from tests.models import (
        Document,
        Dog,
        Engineer,
        Group,
        Membership,
        Order,
        Tag,
        User,
    )

    with Maker() as s:
        s.add_all([User(id=1, name='ann'), User(id=2, name='bob'), User(id=3, name='cy')])
        s.flush()  # memberships point to users without a relationship
        s.add_all([
            Tag(name='a#b/c,d:e f'), Tag(name='plain'),
            Document(id=uuid.UUID(int=7), title='doc'),
            Membership(user_id=1, role='admin'),
            Order(id=10, user_id=1, note='first'),
            Engineer(id=20, name='eve', language='c'),
            Dog(id=30, name='rex'),
            Group(id=40),
        ])
        s.commit()


@pytest.fixture(autouse=True)
def no_pending_invalidations() -> Iterator[None]:
    """No test inherits another's undelivered invalidations."""
    yield
    if 'alkey._pending' in sys.modules:
        sys.modules['alkey._pending'].clear()
