"""Helpers the tests share."""

from __future__ import annotations


class Watch:
    """Keys of some targets, to see which ones a commit changed."""

    def __init__(self, kg, *targets):
        self.kg = kg
        self.targets = targets
        self.before = {t: kg(t) for t in targets}

    def changed(self):
        return {t for t in self.targets if self.kg(t) != self.before[t]}


def other_threads_run_while(call, resume):
    """Run ``call`` (which blocks on a stopped server until its timeout) in
    a thread and spin in this one meanwhile; ``resume`` restarts the server.
    Returns (what call raised, spins): many spins mean the GIL was released
    during the network I/O."""
    import threading
    import time

    done = threading.Event()
    raised = []

    def blocked():
        try:
            call()
        except Exception as exc:  # noqa: BLE001 -- reported to the caller
            raised.append(exc)
        done.set()

    try:
        thread = threading.Thread(target=blocked)
        thread.start()
        time.sleep(0.05)
        spins = 0
        while not done.is_set():
            spins += 1
        thread.join()
    finally:
        resume()
    return raised, spins


def rss_growth(script_text, tmp_path, *argv):
    """Run a script that prints the RSS growth it measured in bytes as its
    last line, in a fresh interpreter; returns that number."""
    import subprocess
    import sys

    script = tmp_path / 'leak.py'
    script.write_text(script_text)
    out = subprocess.run([sys.executable, str(script), *map(str, argv)],
                         capture_output=True, text=True, timeout=600, check=True)
    return int(out.stdout.strip().splitlines()[-1])
