"""Resident memory across many cache_key calls (run in a subprocess by
run.py, so that nothing else the benchmark did is in the figure).

    python benchmarks/rss_child.py PORT CHECKPOINT...

Calls ``cache_key`` with 10 existing tokens through a native client and
prints a JSON object {calls: RSS in KiB} at each checkpoint (cumulative
call counts, ascending), after a garbage collection.
"""

from __future__ import annotations

import gc
import json
import sys

from harness import rss_kib


def main(argv: list[str]) -> None:
    import alkey
    from alkey.cache import CacheKeyGenerator

    port = int(argv[0])
    checkpoints = sorted(int(x) for x in argv[1:])
    kg = CacheKeyGenerator(alkey.Client('127.0.0.1', port))
    ids = tuple(f'alkey:users#{i}' for i in range(1, 11))
    kg(*ids)
    out: dict[int, int] = {}
    done = 0
    for target in checkpoints:
        for _ in range(target - done):
            kg(*ids)
        done = target
        gc.collect()
        out[done] = rss_kib()
    print(json.dumps(out))


if __name__ == '__main__':
    main(sys.argv[1:])
