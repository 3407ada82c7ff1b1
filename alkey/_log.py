"""Rate-limited warnings for failures the caller never sees."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ['RateLimitedWarning', 'logger']

logger = logging.getLogger('alkey')


class RateLimitedWarning:
    """Logs at most one warning per ``interval`` seconds, saying how many
    were held back since the last one."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last = float('-inf')
        self._suppressed = 0

    def warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last = now
        more = f' ({suppressed} more since the last warning)' if suppressed else ''
        logger.warning(message + '%s', *args, more)
