"""$REDIS_URL, or a throwaway redis-server: what `make demo` and
`make example` connect to."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def redis_url(who: str) -> Iterator[str]:
    """$REDIS_URL when it is set; otherwise the URL of a redis-server of our
    own on a free port, without persistence, stopped afterwards.  ``who``
    names the program in error messages."""
    if os.environ.get('REDIS_URL'):
        yield os.environ['REDIS_URL']
        return
    executable = shutil.which('redis-server')
    if executable is None:
        sys.exit(f'{who}: redis-server is not installed (apt-get install '
                 f'redis-server), or set REDIS_URL')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix=f'alkey-{who}-redis-') as directory:
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
                        sys.exit(f'{who}: redis-server did not start')
                    time.sleep(0.05)
            yield f'redis://127.0.0.1:{port}'
        finally:
            proc.terminate()
            proc.wait(5)
