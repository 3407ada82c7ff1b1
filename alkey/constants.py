"""Constants shared by alkey's modules (the seed package's names)."""

from __future__ import annotations

__all__ = [
    'DEFAULT_REDIS_URL',
    'GLOBAL_EPOCH',
    'GLOBAL_WRITE_TOKEN',
    'MAX_CACHE_DURATION',
    'TOKEN_NAMESPACE',
]

#: The identifier of the global write token: any committed write changes it.
GLOBAL_WRITE_TOKEN = 'alkey:*#*'

#: The identifier of the global epoch: folded into every key, replaced to
#: invalidate everything (a write whose targets cannot be read, too much
#: pending work, ``alkey invalidate --all``).
GLOBAL_EPOCH = 'alkey:*#!'

#: Prefix of the Redis keys that hold tokens: ``<TOKEN_NAMESPACE>:<identifier>``.
TOKEN_NAMESPACE = 'alkey.cache.TOKENS'

#: Seconds a token lives in Redis (one day).  Cache entries keyed with a
#: token should not outlive it.
MAX_CACHE_DURATION = 60 * 60 * 24

#: Where the client connects when ``REDIS_URL`` is not set.
DEFAULT_REDIS_URL = 'redis://localhost:6379'
