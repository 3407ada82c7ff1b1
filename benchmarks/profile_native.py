"""Instruction counts of the native cache_key path, under callgrind.

    .venv/bin/python benchmarks/profile_native.py [--calls 2000] [--top 25]

Starts a redis-server of its own, makes 10 tokens, then runs
``valgrind --tool=callgrind`` on a small script that calls a
``CacheKeyGenerator`` over a native client ``--calls`` times with those 10
identifiers.  Collection is on only inside ``alkey._native.cache_key``
(``--toggle-collect``), so interpreter start-up and imports are left out;
the time spent waiting for Redis is not an instruction and does not show.
Prints the total, the instructions per call and callgrind_annotate's top
inclusive functions.  Needs valgrind (apt-get install -y valgrind).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import RedisServer

CHILD = '''
import sys
import alkey
from alkey.cache import CacheKeyGenerator

kg = CacheKeyGenerator(alkey.Client('127.0.0.1', int(sys.argv[1])))
ids = tuple(f'alkey:users#{i}' for i in range(1, 11))
kg(*ids)
for _ in range(int(sys.argv[2])):
    kg(*ids)
'''

# The C function behind alkey._native.cache_key.
ENTRY = 'alkey_py_cache_key'


def _short(name: str) -> str:
    """'file:function [object]' as 'function (file's basename, or the
    object's)'."""
    m = re.match(r'(.*?):(\S+)(?:\s+\[(.*)\])?$', name)
    if not m:
        return name
    where, func, obj = m.groups()
    place = os.path.basename(where) if where != '???' else os.path.basename(obj or '???')
    return f'{func} ({place})'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--calls', type=int, default=2000)
    parser.add_argument('--top', type=int, default=25)
    parser.add_argument('--keep', metavar='PATH',
                        help='also copy the callgrind output file to PATH')
    args = parser.parse_args(argv)
    for tool in ('valgrind', 'callgrind_annotate'):
        if shutil.which(tool) is None:
            raise SystemExit(f'profile: {tool} is not installed '
                             '(apt-get install -y valgrind)')
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / 'calls.py'
        script.write_text(CHILD)
        out = Path(tmp) / 'callgrind.out'
        env = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
        subprocess.run(
            ['valgrind', '--tool=callgrind', '--quiet', f'--callgrind-out-file={out}',
             '--collect-atstart=no', f'--toggle-collect={ENTRY}',
             sys.executable, str(script), str(server.port), str(args.calls)],
            check=True, env=env)
        report = subprocess.run(
            ['callgrind_annotate', '--inclusive=yes', '--threshold=100', str(out)],
            capture_output=True, text=True, check=True).stdout
        if args.keep:
            shutil.copyfile(out, args.keep)
    total = None
    rows: list[tuple[int, str]] = []
    for line in report.splitlines():
        m = re.match(r'\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(?:\*\s+)?PROGRAM TOTALS', line)
        if m:
            total = int(m.group(1).replace(',', ''))
            continue
        m = re.match(r'\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(?:[*>]\s+)?(\S.*)$', line)
        if m and ':' in m.group(2) and total is not None:
            ir, name = int(m.group(1).replace(',', '')), m.group(2)
            if ir >= total and ENTRY not in name:
                continue  # a caller of the entry point: all of it, inclusively
            short = _short(name)
            if all(short != seen for _, seen in rows):
                rows.append((ir, short))
    if total is None:
        print(report)
        raise SystemExit('profile: could not read callgrind_annotate output')
    calls = args.calls + 1
    print(f'callgrind, {calls} calls of cache_key with 10 existing tokens '
          f'(collected inside {ENTRY} only)')
    print(f'total {total:,} Ir, {total / calls:,.0f} Ir per call\n')
    print(f'{"Ir (inclusive)":>16} {"per call":>10} {"share":>6}  function')
    for ir, name in rows[:args.top]:
        print(f'{ir:>16,} {ir / calls:>10,.0f} {ir / total:>6.1%}  {name}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
