"""What every benchmark group needs: servers, machine facts, interleaved
timing and markdown tables.

Timing rule: the variants of one group (a case and its baselines) run in
the same process, round-robin -- round r runs every variant once, in an
order rotated by r, so that drift (frequency, a neighbour's load) hits them
all alike.  Each variant times each of its calls; a group's result is the
median call over all rounds, and ratios are taken between medians of the
same run.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Self

__all__ = [
    'CpuWatch',
    'RedisServer',
    'Samples',
    'Variant',
    'fmt_ratio',
    'fmt_us',
    'free_port',
    'machine_facts',
    'markdown_table',
    'postgres_engine',
    'progress',
    'redis_benchmark_p50_ns',
    'rss_kib',
    'run_interleaved',
]

#: Variables that must not reach redis-server or redis-benchmark (a
#: sanitizer preload from `make test-asan`, say).
_SCRUBBED_ENV = ('LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS')


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        if port != 6379:
            return port


class RedisServer:
    """A redis-server of the benchmark's own: a free port, a temp dir, no
    persistence.  Use as a context manager."""

    def __init__(self) -> None:
        self.executable = shutil.which('redis-server')
        if self.executable is None:
            raise SystemExit('benchmarks: redis-server is not installed '
                             '(apt-get install -y redis-server)')
        self.dir = Path(tempfile.mkdtemp(prefix='alkey-bench-redis-'))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        for _ in range(5):
            self.port = free_port()
            log = self.dir / 'redis.log'
            self.process = subprocess.Popen(
                [self.executable, '--port', str(self.port), '--bind', '127.0.0.1',
                 '--dir', str(self.dir), '--save', '', '--appendonly', 'no',
                 '--daemonize', 'no', '--logfile', str(log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT, env=_clean_env())
            if self._wait_ready():
                return self
            self._stop()
        text = (self.dir / 'redis.log').read_text(errors='replace')[-2000:]
        raise SystemExit(f'benchmarks: redis-server did not start:\n{text}')

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(('127.0.0.1', self.port), 0.2) as s:
                    s.sendall(b'PING\r\n')
                    if s.recv(16).startswith(b'+PONG'):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __exit__(self, *exc: object) -> None:
        self._stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def version(self) -> str:
        out = subprocess.run([self.executable, '--version'], capture_output=True,
                             text=True, check=False, env=_clean_env()).stdout
        for word in out.split():
            if word.startswith('v='):
                return word[2:]
        return out.strip()


def postgres_engine(url: str) -> tuple[Any, str]:
    """(engine, note): an engine when PostgreSQL answers at ``url``, else
    (None, why not)."""
    from sqlalchemy import create_engine, text
    try:
        engine = create_engine(url, connect_args={'connect_timeout': 3})
        with engine.connect() as conn:
            version = conn.execute(text('SHOW server_version')).scalar()
    except Exception as exc:  # noqa: BLE001 -- any failure means "skip"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
        return None, f'{type(exc).__name__}: {first[:200]}'
    return engine, f'PostgreSQL {version}'


def _cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _alkey_revision() -> str:
    """alkey's version and, in a git checkout, the commit measured (and
    whether alkey/ or csrc/ differ from it)."""
    import alkey

    root = Path(__file__).resolve().parent.parent
    text = alkey.__version__
    try:
        head = subprocess.run(['git', '-C', str(root), 'rev-parse', '--short', 'HEAD'],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', '-C', str(root), 'status', '--porcelain', '--',
                                'alkey', 'csrc'],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return text
    return f'{text}, git {head}' + (' with local changes in alkey/ or csrc/' if dirty else '')


def machine_facts(redis_version: str, pg_note: str) -> list[tuple[str, str]]:
    """(fact, value) pairs describing this machine and the software under
    test."""
    import redis
    import sqlalchemy

    from alkey import _native

    try:
        import psycopg
        psycopg_version = psycopg.__version__
    except ImportError:
        psycopg_version = 'not installed'
    try:
        import hiredis  # noqa: F401 -- redis-py's optional C parser
        redis_py = f'{redis.__version__} (hiredis parser)'
    except ImportError:
        redis_py = f'{redis.__version__} (pure-Python parser)'
    load = os.getloadavg()
    return [
        ('alkey', _alkey_revision()),
        ('CPU', _cpu_model()),
        ('cores', str(os.cpu_count())),
        ('OS', f'{platform.system()} {platform.release()}'),
        ('Python', f'{platform.python_implementation()} {platform.python_version()}'),
        ('redis-server', redis_version),
        ('libhiredis', _native.HIREDIS_VERSION),
        ('SQLAlchemy', sqlalchemy.__version__),
        ('redis-py', redis_py),
        ('psycopg', psycopg_version),
        ('PostgreSQL', pg_note),
        ('load average at start', ' '.join(f'{x:.2f}' for x in load)),
    ]


class CpuWatch:
    """How much CPU other processes used while the benchmark ran: the
    machine's busy time (/proc/stat) minus this process's, its waited-for
    children's and redis-server's."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.tick = os.sysconf('SC_CLK_TCK')
        self.start = self._sample()

    def _busy(self) -> float:
        with open('/proc/stat') as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return (sum(fields[:8]) - fields[3] - fields[4]) / self.tick

    def _own(self) -> float:
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        if self.server_pid is not None:
            try:
                with open(f'/proc/{self.server_pid}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                own += (int(fields[11]) + int(fields[12])) / self.tick
            except (OSError, IndexError, ValueError):
                pass
        return own

    def _sample(self) -> tuple[float, float, float]:
        return time.monotonic(), self._busy(), self._own()

    def others(self) -> tuple[float, float]:
        """(seconds of CPU used by other processes, seconds of wall time)
        since this watch began."""
        wall, busy, own = self._sample()
        return max(0.0, (busy - self.start[1]) - (own - self.start[2])), \
            wall - self.start[0]


def rss_kib() -> int:
    """This process's resident set size in KiB."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') // 1024


def redis_benchmark_p50_ns(port: int, command: Sequence[str], requests: int) -> int:
    """The p50 latency of ``command`` over ``requests`` requests from
    redis-benchmark with one client, in nanoseconds."""
    exe = shutil.which('redis-benchmark')
    if exe is None:
        raise SystemExit('benchmarks: redis-benchmark is not installed '
                         '(apt-get install -y redis-tools)')
    out = subprocess.run(
        [exe, '-h', '127.0.0.1', '-p', str(port), '-c', '1', '-n', str(requests),
         '-q', '--csv', *command],
        capture_output=True, text=True, check=True, env=_clean_env()).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    header = [h.strip('"') for h in lines[0].split('","')]
    # The test column is the command itself and holds no '","'.
    values = [v.strip('"') for v in lines[-1].split('","')]
    p50_ms = float(values[header.index('p50_latency_ms')])
    return round(p50_ms * 1e6)


# --------------------------------------------------------------------------
# Interleaved timing


def progress(label: str, done: int, total: int) -> None:
    """'label: round done/total' on stderr: rewritten in place on a
    terminal, one line at the end otherwise."""
    if sys.stderr.isatty():
        end = '\n' if done == total else ''
        print(f'\r  {label}: round {done}/{total}', end=end, file=sys.stderr,
              flush=True)
    elif done == total:
        print(f'  {label}: {total} rounds', file=sys.stderr, flush=True)


@dataclass
class Variant:
    """One thing to time.  ``run(n)`` makes n calls and returns their
    durations in ns (an external tool may return one figure per round);
    ``before``/``after`` run untimed around each round's block."""

    name: str
    run: Callable[[int], list[int]]
    calls: int
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None


@dataclass
class Samples:
    """The durations of one variant, per round, in ns."""

    name: str
    rounds: list[list[int]] = field(default_factory=list)

    @property
    def median_ns(self) -> float:
        """The median call over all rounds."""
        return statistics.median(x for r in self.rounds for x in r)

    @property
    def round_medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds if r]

    def quartiles_ns(self) -> tuple[float, float]:
        """p25 and p75 of the per-round medians (how much rounds agree)."""
        meds = sorted(self.round_medians)
        if len(meds) < 2:
            return meds[0], meds[0]
        q = statistics.quantiles(meds, n=4, method='inclusive')
        return q[0], q[2]

    @property
    def calls(self) -> int:
        return sum(len(r) for r in self.rounds)


def run_interleaved(variants: Sequence[Variant], rounds: int,
                    label: str = '') -> dict[str, Samples]:
    """Runs every variant once per round, rotating their order each round.
    The garbage collector is off while a block is timed and runs between
    blocks."""
    results = {v.name: Samples(v.name) for v in variants}
    for r in range(rounds):
        shift = r % len(variants)
        for v in list(variants[shift:]) + list(variants[:shift]):
            if v.before is not None:
                v.before()
            gc.collect()
            gc.disable()
            try:
                durations = v.run(v.calls)
            finally:
                gc.enable()
            if v.after is not None:
                v.after()
            results[v.name].rounds.append(durations)
        if label:
            progress(label, r + 1, rounds)
    return results


# --------------------------------------------------------------------------
# Formatting


def fmt_us(ns: float) -> str:
    us = ns / 1000
    if us >= 1000:
        return f'{us:,.0f}'
    if us >= 100:
        return f'{us:.0f}'
    if us >= 10:
        return f'{us:.1f}'
    return f'{us:.2f}'


def fmt_ratio(x: float) -> str:
    return f'{x:.2f}' if x < 10 else f'{x:.1f}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` holds one 'l' or 'r' per column
    (default: the first left, the rest right)."""
    align = align or 'l' + 'r' * (len(header) - 1)
    rule = ['---:' if a == 'r' else '---' for a in align]
    lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join(rule) + ' |']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)
