"""alkey's benchmarks: ``make bench`` (or ``.venv/bin/python benchmarks/run.py``).

Starts a redis-server of its own on a free port (never 6379), uses a SQLite
file in a temp dir and, when it answers, PostgreSQL at
``$ALKEY_BENCH_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; the table
``alkey_bench_users`` is made and dropped there).  Prints the machine's
facts, then one markdown table per group, and writes the same to
``benchmarks/results.md`` (``--output`` elsewhere).

Every case runs interleaved with its baselines in this one process:
round-robin rounds of N timed calls; a figure is the median call over all
rounds, a ratio is taken between two variants within each round (they ran
back to back) and its median over the rounds is given.

    --quick          a smoke run: 3 rounds, a tenth of the calls, 10^5
                     calls for the memory figure (about 15 s)
    --only GROUPS    comma-separated: keys, commit, threads, memory
    --output PATH    where the markdown goes
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (
    CpuWatch,
    RedisServer,
    Samples,
    fmt_ratio,
    fmt_us,
    machine_facts,
    markdown_table,
    postgres_engine,
)

DEFAULT_POSTGRES_URL = 'postgresql+psycopg://postgres@127.0.0.1:5432/test'
GROUPS = ('keys', 'commit', 'threads', 'memory')

FULL = {'rounds': 25, 'scale': 1.0, 'thread_rounds': 5, 'thread_seconds': 1.0,
        'memory': (10**4, 10**5, 10**6)}
QUICK = {'rounds': 3, 'scale': 0.1, 'thread_rounds': 1, 'thread_seconds': 0.2,
         'memory': (10**4, 10**5)}

SEED = 'seed algorithm (redis-py)'
MGET = 'redis-py mget'
FLOOR = 'redis-benchmark MGET p50'


class Report:
    """Collects the sections; prints each as it comes and writes them all."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: dict[str, Any] = {}

    def add(self, text: str) -> None:
        print(text + '\n', flush=True)
        self.parts.append(text)

    def text(self) -> str:
        return '\n\n'.join(self.parts) + '\n'


def _pow10(n: int) -> str:
    """10^k for a power of ten, else the number."""
    k = len(str(n)) - 1
    return f'10^{k}' if n == 10**k else f'{n:,}'


def _spread(s: Samples) -> str:
    lo, hi = s.quartiles_ns()
    return f'{fmt_us(lo)}–{fmt_us(hi)}'


def _paired_extra(case: Samples, base: Samples) -> float:
    """The median over rounds of (case's round median - base's round
    median): what the case adds, with drift between rounds cancelled."""
    return statistics.median(c - b for c, b in zip(case.round_medians,
                                                    base.round_medians))


def _paired_ratio(case: Samples, base: Samples) -> float:
    """The median over rounds of (case's round median ÷ base's round
    median): both ran back to back in each round, so a change of the
    machine's pace between rounds cancels out."""
    return statistics.median(c / b for c, b in zip(case.round_medians,
                                                    base.round_medians))


def _ratio(results: dict[str, Samples], name: str, base: str) -> str:
    if base not in results:
        return '—'
    return fmt_ratio(_paired_ratio(results[name], results[base]))


# --------------------------------------------------------------------------
# Groups


def keys_group(report: Report, port: int, cfg: dict[str, Any]) -> None:
    from keys_cases import ARG_COUNTS, KeyBench

    bench = KeyBench(port, cfg['scale'], cfg['rounds'])
    try:
        bench.check()
        existing = {n: bench.existing(n) for n in ARG_COUNTS}
        missing = {n: bench.missing(n) for n in ARG_COUNTS}
    finally:
        bench.close()

    rows = []
    for n, res in existing.items():
        for name, s in res.items():
            rows.append([str(n), str(n + 2), name, fmt_us(s.median_ns), _spread(s),
                         _ratio(res, name, SEED), _ratio(res, name, MGET),
                         _ratio(res, name, FLOOR)])
    report.add(
        '### cache_key, tokens exist\n\n'
        'µs per call: the median call of all rounds, and the p25–p75 of the '
        'round medians. A ratio is this variant\'s time ÷ the baseline\'s, '
        'taken in each round (they ran back to back) and then the median over '
        'the rounds (below 1 is faster). Arguments are identifiers of one '
        'table; alkey reads each one\'s token, the table epoch and the global '
        'epoch (args + 2 keys) in one MGET, and the mget rows read exactly '
        'those keys. redis-benchmark\'s figure is its p50 latency with one '
        'client, median over rounds.\n\n'
        + markdown_table(['args', 'keys', 'variant', 'µs/call', 'rounds p25–p75',
                          '÷ seed', '÷ redis-py mget', '÷ floor'],
                         rows, 'rrlrrrrr'))

    rows = []
    for n, res in missing.items():
        for name, s in res.items():
            rows.append([str(n), name, fmt_us(s.median_ns), _spread(s),
                         _ratio(res, name, SEED), _ratio(res, name, MGET)])
    report.add(
        '### cache_key, tokens missing\n\n'
        'Every call names rows never seen before (fresh identifiers; the '
        'epochs exist), so alkey makes two round trips (MGET, then SET NX EX '
        'for each missing token and an MGET, pipelined) and the seed '
        'algorithm a GET and a SETEX per argument. The mget rows are one '
        'MGET of the same keys, all but the epochs missing.\n\n'
        + markdown_table(['args', 'variant', 'µs/call', 'rounds p25–p75',
                          '÷ seed', '÷ redis-py mget'], rows, 'rlrrrr'))

    ten = existing[10]
    native = ten['alkey, native client']
    report.figures['keys10'] = {
        'native_ns': native.median_ns,
        'seed_ns': ten[SEED].median_ns,
        'mget_ns': ten[MGET].median_ns,
        'vs_seed': _paired_ratio(native, ten[SEED]),
        'vs_mget': _paired_ratio(native, ten[MGET]),
    }
    report.figures['round_trip_ns'] = existing[1]['alkey.Client.mget'].median_ns


def commit_group(report: Report, port: int, cfg: dict[str, Any],
                 engines: list[tuple[str, Any]], skipped: list[str]) -> None:
    from commit_cases import COMMIT_CASES, CommitBench

    rows = []
    figures: dict[str, Any] = {}
    for db, engine in engines:
        bench = CommitBench(engine, port, cfg['scale'], cfg['rounds'])
        try:
            bench.check()
            for label, kind, nrows in COMMIT_CASES:
                trips = bench.round_trips(kind, nrows)
                res = bench.case(f'{db}: {label}', kind, nrows)
                plain = res['without alkey'].median_ns
                cells = [db, label, str(trips), fmt_us(plain)]
                for name in ('with alkey', 'seed handlers'):
                    extra = _paired_extra(res[name], res['without alkey'])
                    cells += [fmt_us(res[name].median_ns),
                              f'{extra / 1000:+.1f} ({extra / plain:+.0%})']
                rows.append(cells)
                figures[f'{db}: {label}'] = {
                    'trips': trips,
                    'alkey': _paired_extra(res['with alkey'], res['without alkey']),
                    'seed': _paired_extra(res['seed handlers'], res['without alkey'])}
        finally:
            bench.close()
    notes = ''.join(f'\n\n{note}' for note in skipped)
    report.add(
        '### Commit path\n\n'
        'µs per operation, median of all rounds; the timer covers '
        '`session.commit()` alone (the flush, the database commit and the '
        'invalidation), or `session.flush()` alone for the flush row. '
        'Overhead is what a variant adds to "without alkey": the median over '
        'rounds of the difference of the two round medians. "with alkey" '
        'is `events.bind(sessionmaker, redis_client=alkey.Client(...))`; "seed '
        'handlers" SADD + EXPIRE the changed identifiers at each flush and '
        'SMEMBERS then pipeline a SET per identifier at commit (redis-py). '
        '"trips" is how many Redis round trips alkey made for one operation '
        '(`alkey.stats()["redis_round_trips"]`).'
        + notes + '\n\n'
        + markdown_table(['database', 'case', 'trips', 'without alkey', 'with alkey',
                          'alkey overhead µs', 'seed handlers', 'seed overhead µs'],
                         rows, 'llrrrrrr'))
    report.figures['commit'] = figures


def threads_group(report: Report, port: int, cfg: dict[str, Any]) -> None:
    from threads_case import THREAD_COUNTS, medians, thread_scaling

    import alkey
    from alkey.cache import CacheKeyGenerator

    client = alkey.Client('127.0.0.1', port)
    kg = CacheKeyGenerator(client)
    ids = tuple(f'alkey:users#{i}' for i in range(1, 11))
    kg(*ids)
    try:
        results = thread_scaling(lambda: kg(*ids), cfg['thread_rounds'],
                                 cfg['thread_seconds'])
    finally:
        client.close()
    med = medians(results)
    rows = []
    for n in THREAD_COUNTS:
        lo, hi = (min(results[n]), max(results[n]))
        rows.append([str(n), f'{med[n]:,.0f}', f'{lo:,.0f}–{hi:,.0f}',
                     fmt_ratio(med[n] / med[1]), fmt_us(n / med[n] * 1e9)])
    report.add(
        '### Threads sharing one client\n\n'
        f'`cache_key` with 10 existing tokens in a loop in each thread, '
        f'{cfg["thread_seconds"]:g} s per run, {cfg["thread_rounds"]} '
        'round(s) with the thread counts rotated; one native client (its '
        'pool opens a connection per concurrent thread). Calls per second '
        'over all threads: median (and range) of the rounds.\n\n'
        + markdown_table(['threads', 'calls/s', 'range', '÷ 1 thread',
                          'µs per call per thread'], rows))
    report.figures['threads'] = med


def memory_group(report: Report, port: int, cfg: dict[str, Any]) -> None:
    checkpoints = cfg['memory']
    print(f'  memory: {checkpoints[-1]:,} calls in a subprocess', file=sys.stderr,
          flush=True)
    out = subprocess.run(
        [sys.executable, str(HERE / 'rss_child.py'), str(port),
         *map(str, checkpoints)],
        capture_output=True, text=True, check=True).stdout
    rss = {int(k): v for k, v in json.loads(out).items()}
    first = rss[checkpoints[0]]
    rows = [[_pow10(n), f'{v:,}', f'{v - first:+,}'] for n, v in sorted(rss.items())]
    report.add(
        '### Memory\n\n'
        '`cache_key` with 10 existing tokens through a native client, in a '
        'fresh process; RSS (KiB, from /proc/self/statm after a garbage '
        'collection) after each number of calls.\n\n'
        + markdown_table(['calls', 'RSS KiB', 'since 10^4 calls'], rows))
    report.figures['rss_growth_kib'] = rss[checkpoints[-1]] - first
    report.figures['rss_last_calls'] = checkpoints[-1]


def targets_section(report: Report) -> None:
    """The issue's targets against this run's figures."""
    f = report.figures
    rows = []

    def verdict(ok: bool) -> str:
        return 'met' if ok else '**not met**'

    if 'keys10' in f:
        ten = f['keys10']
        speed = 1 / ten['vs_seed']
        measured = (f'{speed:.1f}× (medians {fmt_us(ten["native_ns"])} and '
                    f'{fmt_us(ten["seed_ns"])} µs)')
        rows.append(['`cache_key`, 10 existing tokens, ≥ 8× faster than the seed',
                     measured, verdict(speed >= 8)])
        measured = (f'{ten["vs_mget"]:.2f} of its time (median '
                    f'{fmt_us(ten["mget_ns"])} µs)')
        rows.append(['… and faster than a bare redis-py `mget` of the same keys',
                     measured, verdict(ten['vs_mget'] < 1)])
    if 'commit' in f and 'round_trip_ns' in f:
        trip = f['round_trip_ns']
        for label, data in f['commit'].items():
            extra = data['alkey']
            most = 0 if 'flush' in label or 'read-only' in label else 1
            target = 'no round trip' if most == 0 else 'at most one round trip'
            rows.append([f'{label}: {target}',
                         f'{data["trips"]} (time added: {extra / 1000:+.1f} µs, '
                         f'{extra / trip:.1f} round trips of {fmt_us(trip)} µs)',
                         verdict(data['trips'] <= most)])
    if 'threads' in f:
        t = f['threads']
        rows.append(['2 threads ≥ 1.6× the throughput of one',
                     f'{t[2] / t[1]:.2f}×', verdict(t[2] / t[1] >= 1.6)])
    if 'rss_growth_kib' in f:
        growth = f['rss_growth_kib']
        rows.append([f'RSS growth, 10^4 → {_pow10(f["rss_last_calls"])} calls, ≤ 1 MiB',
                     f'{growth:+,} KiB', verdict(growth <= 1024)])
    if rows:
        report.add(
            '### Against the targets of issue 5\n\n'
            'The commit targets count the Redis round trips alkey makes '
            '(`alkey.stats()`); the time each adds is shown beside, in units of '
            'a round trip: the median `alkey.Client.mget` of 3 keys from the '
            'cache_key group.\n\n'
            + markdown_table(['target', 'this run', ''], rows, 'lrl'))


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='a fast smoke run')
    parser.add_argument('--only', default=','.join(GROUPS),
                        help='comma-separated groups: ' + ', '.join(GROUPS))
    parser.add_argument('--output', default=str(HERE / 'results.md'),
                        help='markdown output (default: benchmarks/results.md)')
    args = parser.parse_args(argv)
    only = [g.strip() for g in args.only.split(',') if g.strip()]
    unknown = set(only) - set(GROUPS)
    if unknown:
        parser.error(f'unknown group(s): {", ".join(sorted(unknown))}')
    cfg = QUICK if args.quick else FULL
    load_start = os.getloadavg()

    from sqlalchemy import create_engine

    with RedisServer() as server:
        watch = CpuWatch(server.process.pid if server.process else None)
        # Nothing below may fall back to the default localhost:6379.
        os.environ['REDIS_URL'] = f'redis://127.0.0.1:{server.port}'
        pg_url = os.environ.get('ALKEY_BENCH_POSTGRES_URL', DEFAULT_POSTGRES_URL)
        pg_engine, pg_note = (postgres_engine(pg_url) if 'commit' in only
                              else (None, 'not used'))
        report = Report()
        mode = 'quick smoke run (`--quick`)' if args.quick else 'full run'
        facts = machine_facts(server.version(), pg_note if pg_engine is not None
                              else f'unreachable: {pg_note}')
        report.add(
            f'## alkey benchmarks: {mode}\n\n'
            f'`make bench` (`.venv/bin/python benchmarks/run.py'
            f'{" --quick" if args.quick else ""}`), '
            f'{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; '
            f'redis-server on 127.0.0.1:{server.port} (loopback TCP, no '
            f'persistence).\n\n'
            + markdown_table(['machine', ''], [[k, v] for k, v in facts], 'll'))
        with_db = os.path.join(server.dir, 'bench.sqlite')
        try:
            if 'keys' in only:
                keys_group(report, server.port, cfg)
            if 'commit' in only:
                engines = [('SQLite (file)', create_engine(f'sqlite:///{with_db}'))]
                skipped = []
                if pg_engine is not None:
                    engines.append(('PostgreSQL', pg_engine))
                else:
                    skipped.append(f'PostgreSQL cases skipped: nothing answered at '
                                   f'`$ALKEY_BENCH_POSTGRES_URL` ({pg_note}).')
                try:
                    commit_group(report, server.port, cfg, engines, skipped)
                finally:
                    for _, engine in engines:
                        engine.dispose()
            if 'threads' in only:
                threads_group(report, server.port, cfg)
            if 'memory' in only:
                memory_group(report, server.port, cfg)
            targets_section(report)
        finally:
            load_end = os.getloadavg()
            others, wall = watch.others()
            report.add(
                'Load average at start ' + ' '.join(f'{x:.2f}' for x in load_start)
                + ', at end ' + ' '.join(f'{x:.2f}' for x in load_end)
                + f' ({os.cpu_count()} cores; the benchmark itself keeps about '
                f'one busy). Other processes, PostgreSQL serving the benchmark '
                f'included, used {others:.1f} s of CPU during the {wall:.0f} s run '
                f'({others / wall:.0%} of one core).'
                + (' **Other work competed with this run: its figures are '
                   'disturbed; run it again on a quiet machine.**'
                   if others > 0.1 * wall else ''))
            Path(args.output).write_text(report.text())
            print(f'written to {args.output}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
