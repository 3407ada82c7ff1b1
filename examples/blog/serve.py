"""Serve the example blog on http://localhost:6543/: `make example`.

Runs ``pserve development.ini`` with this folder on the import path.  Uses
$REDIS_URL when it is set; otherwise starts a redis-server of its own on a
free port, stopped when the server stops (Ctrl-C).  The posts live in
blog.sqlite beside this file, made on the first start.
"""

from __future__ import annotations

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # examples/: redis_url

from redis_url import redis_url  # noqa: E402


def main() -> int:
    from pyramid.scripts import pserve

    sys.path.insert(0, HERE)
    # A plain `kill` stops the server like Ctrl-C: redis-server goes with it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with redis_url('serve') as url:
        os.environ['REDIS_URL'] = url
        print(f'serve: Redis at {url}; the blog at http://localhost:6543/',
              flush=True)
        try:
            return pserve.main(['pserve', os.path.join(HERE, 'development.ini')])
        except KeyboardInterrupt:
            return 0


if __name__ == '__main__':
    sys.exit(main())
