"""Throughput of threads sharing one native client.

Each thread calls ``cache_key`` with 10 existing tokens in a loop until the
time is up; the result is calls per second over all threads.  Thread counts
are interleaved round-robin like every other group.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Callable

from harness import progress

__all__ = ['THREAD_COUNTS', 'run_threads', 'thread_scaling']

THREAD_COUNTS = (1, 2, 4, 8)


def run_threads(fn: Callable[[], Any], nthreads: int, seconds: float) -> float:
    """Calls of fn() per second over nthreads threads running for
    ``seconds``."""
    stop = threading.Event()
    start = threading.Barrier(nthreads + 1)
    counts = [0] * nthreads

    def worker(slot: int) -> None:
        start.wait()
        n = 0
        while not stop.is_set():
            fn()
            n += 1
        counts[slot] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return sum(counts) / elapsed


def thread_scaling(fn: Callable[[], Any], rounds: int,
                   seconds: float) -> dict[int, list[float]]:
    """{threads: [calls/s per round]}, thread counts rotated each round."""
    results: dict[int, list[float]] = {n: [] for n in THREAD_COUNTS}
    run_threads(fn, 2, min(seconds, 0.2))  # warm: two connections in the pool
    for r in range(rounds):
        shift = r % len(THREAD_COUNTS)
        for n in THREAD_COUNTS[shift:] + THREAD_COUNTS[:shift]:
            results[n].append(run_threads(fn, n, seconds))
        progress('threads', r + 1, rounds)
    return results


def medians(results: dict[int, list[float]]) -> dict[int, float]:
    return {n: statistics.median(v) for n, v in results.items()}
