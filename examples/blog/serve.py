"""Serve the example blog on http://localhost:6543/: `make example`.

Runs ``pserve development.ini`` with this folder on the import path.  Uses
$REDIS_URL when it is set; otherwise starts a redis-server of its own on a
free port, stopped when the server stops (Ctrl-C).  The posts live in
blog.sqlite beside this file, made on the first start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))


@contextmanager
def redis_url() -> Iterator[str]:
    """$REDIS_URL, or the URL of a throwaway redis-server."""
    if os.environ.get('REDIS_URL'):
        yield os.environ['REDIS_URL']
        return
    executable = shutil.which('redis-server')
    if executable is None:
        sys.exit('serve: redis-server is not installed (apt-get install '
                 'redis-server), or set REDIS_URL')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix='alkey-blog-redis-') as directory:
        proc = subprocess.Popen(
            [executable, '--port', str(port), '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--dir', directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        sys.exit('serve: redis-server did not start')
                    time.sleep(0.05)
            yield f'redis://127.0.0.1:{port}'
        finally:
            proc.terminate()
            proc.wait(5)


def main() -> int:
    from pyramid.scripts import pserve

    sys.path.insert(0, HERE)
    # A plain `kill` stops the server like Ctrl-C: redis-server goes with it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with redis_url() as url:
        os.environ['REDIS_URL'] = url
        print(f'serve: Redis at {url}; the blog at http://localhost:6543/',
              flush=True)
        try:
            return pserve.main(['pserve', os.path.join(HERE, 'development.ini')])
        except KeyboardInterrupt:
            return 0


if __name__ == '__main__':
    sys.exit(main())
