"""Writes the hand-made seeds into tests/fuzz/corpus/<target>/seed-*.

    python tests/fuzz/seeds.py

The spec's examples and the cases around them; what fuzzing adds sits
beside them under libFuzzer's hash names.  Rerunning rewrites the seeds
and leaves the rest alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fuzzcheck import MAX_NESTING, encode_args

CORPUS = Path(__file__).resolve().parent / 'corpus'

OIDS = [
    # The spec's examples.
    'alkey:users#1', 'alkey:users#-3', 'alkey:users#*', 'alkey:*#*',
    'alkey:public.users#7', 'alkey:users#!', 'alkey:public.users#!',
    'alkey:*#!', 'alkey:tags#s:hello%2Fworld%23x', 'alkey:tags#s:',
    'alkey:docs#u:6f1c0d2e-7a3b-4c5d-8e9f-0a1b2c3d4e5f',
    'alkey:memberships#1,s:admin', 'alkey:files#b:%FF%00ab',
    # Every tag, and values that decode or not.
    'alkey:t#d:2020-01-31', 'alkey:t#d:20200131', 'alkey:t#d:2020-02-30',
    'alkey:t#t:2020-01-31T12:30:00.5+01:00', 'alkey:t#n:-1.50E+3',
    'alkey:t#n:sNaN', 'alkey:t#f:1e+300', 'alkey:t#f:nan', 'alkey:t#f:1_0',
    'alkey:t#x:True', 'alkey:t#u:6F1C0D2E-7A3B-4C5D-8E9F-0A1B2C3D4E5F',
    'alkey:t#u:{6f1c0d2e-7a3b-4c5d-8e9f-0a1b2c3d4e5f}',
    'alkey:t#s:%ED%A0%80', 'alkey:t#s:%FF', 'alkey:t#s:%C3%A9%2C%23',
    'alkey:t#b:', 'alkey:s%2Ft.t%2Eb#0,-1,s:,b:,x:%25',
    'alkey:t#' + '9' * 5000,
    # Near misses: one byte from valid.
    'alkey:users#01', 'alkey:users#-0', 'alkey:users#+1', 'alkey:users#1 ',
    'alkey:users#%31', 'alkey:us%65rs#1', 'alkey:users#s:%41',
    'alkey:users#s:%2f', 'alkey:users#s:%2', 'alkey:users#s:%',
    'alkey:a.b.c#1', 'alkey:.a#1', 'alkey:a.#1', 'alkey:#1', 'alkey:users#',
    'alkey:users#1,', 'alkey:users#,1', 'alkey:users#1,,2', 'alkey:*#1',
    'alkey:*.a#*', 'alkey:users#**', 'alkey:users#!!', 'alkey:users#*!',
    'alkey:users#1#2', 'alkey:users#s:a#b', 'alkey:users#q:1',
    'alkey:users#s', 'alkey:users/x#1', 'alkey:users~x#1',
    'alkey:users#1\x00', 'alkey:*#*\x00', 'ALKEY:users#1', 'alkey:', 'alkey',
    'alkey:\u00e9#1', 'alkey:users#s:\u00e9',
]

URLS = [
    # \x01 is where fuzzcheck.url_input puts the password marker.
    'redis://localhost:6379/0', 'redis://:\x01@localhost:6379/0',
    'redis://user:\x01@host/1', 'redis://\x01@host',
    'redis://u:\x01@host:port', 'redis://u:\x01@host:99999',
    'redis://u:\x01@host/abc',
    'rediss://u:\x01@h:6380/2?ssl_ca_certs=/ca.pem&ssl_certfile=c'
    '&ssl_keyfile=k',
    'unix://:\x01@/run/redis.sock?db=3', 'unix://u:\x01@',
    'unix:///s?db=1&db=2',
    'redis://h?password=\x01', 'http://u:\x01@h', 'redis://:\x01@h?password=x',
    'rediss://:\x01\u2488@h', 'redis://u:\x01@[::1', 'redis://u:\x01@[v1.x]',
    'redis://u:\x01@[::1]:6379', 'redis://:\x01]@[::1]',
    'redis://u:\x01@[fe80::1%25eth0]',
    'redis://u%3A:\x01%40@h', 'redis://h/1?db=2', 'redis://h/1?db=1',
    'redis://h?socket_timeout=nan', 'redis://h?socket_timeout=0',
    'redis://h?socket_connect_timeout=1e309', 'redis://h?socket_timeout=0.1',
    'redis://h?max_connections=0', 'redis://h?max_connections=1_000',
    'redis://h?unknown=1', 'redis://h?ssl_keyfile=k', 'redis://h?db=\u0663',
    '  redis://h  ', '', ' ', 'redis://', 'redis:///0', 'redis://h:0',
    'redis://%68ost', 'REDIS://h', 'redis://h/1/2', 'redis://h/ 1',
    'redis://h\t:63\n79', 'redis://h#frag', 'redis://h?password=a&password=b',
]

#: Inputs on which fuzzing found the password in parse_url's
#: ConfigurationError; the ones still open are KNOWN_BUGS in
#: tests/test_fuzz_corpus.py.
REPRODUCERS = {
    # A lone userinfo is a password (redis-py's reading).
    'url/repro-lone-userinfo-bad-port': 'redis://\x01@host:99999',
    'url/repro-lone-userinfo-bad-scheme': 'http://\x01@localhost:6379',
    'url/repro-lone-userinfo-unix-no-path': 'unix://\x01@',
    # urlsplit's ValueError text quotes the netloc.
    'url/repro-nfkc-netloc': 'redis://u:\x01\uff0f@localhost',
    'url/repro-bracketed-host': 'redis://:x[\x01@[::1]:6379',
    # A redaction from the first '://': one after the userinfo (a scheme
    # left out or mistyped, a URL in the query) hid nothing.
    'url/repro-userinfo-before-first-scheme':
    '//u:\x01@localhost:6379/0?ssl_ca_certs=file:///etc/ca.pem',
    # The password= query option is shown as is.
    'url/repro-query-password-no-host': 'redis://?password=\x01',
    'url/repro-query-password-bad-scheme': 'http://h?password=\x01',
    # ... spelt with an escape (parse_qsl unquotes the name), or holding an
    # "@" (the userinfo redaction runs first and keeps what follows it).
    'url/repro-query-password-escaped-name': 'redis://?passw%6Frd=\x01',
    'url/repro-query-password-with-at': 'http://h?password=a@\x01',
}

KEYS = [
    (),
    ('alkey:users#1',),
    ('alkey:users#1', 'alkey:users#*', 'alkey:*#*', 'alkey:users#!',
     'alkey:*#!', 'alkey:public.users#s:a%2Fb'),
    ('a/b', 'c~d', '100%', 'alkey:users#1~x', 'alkey:users#01'),
    ('',),
    (1, '1', 1.0, True, None, b'1', bytearray(b'1')),
    ((1, 2), [1, 2], {1: 2}, {1, 2}, frozenset({1})),
    ((('a,b', 'c:d', '(x)'),), [['%'], ()], {'': ''}),
    ({'a': (1,), 'b': [2]}, {(1, 2): 'x', 'k': {3: None}}),
    # Equal keys and members: the first one stays, as in C.
    ({1: 'a', True: 'b', 1.0: 'c'}, {0, False, 0.0}),  # noqa: B033, F601
    ('\udcff', '\u00e9', '\U0001f600', '\ud800', '\ud83d\ude00'),
    (float('nan'), float('inf'), -0.0, 1e308, 5e-324, -float('inf')),
    (2 ** 200, -2 ** 200, 2 ** 63, -2 ** 63 - 1, 0, -1),
    (b'\x00\xff/%~', bytearray(b'A-z._'), b''),
    (['alkey:users#1'], ('alkey:users#1',), {'alkey:users#1': 1}),
    (frozenset({frozenset(), ()}), {float('nan'), 1}),
]


def nested(depth: int, leaf: object = ()) -> object:
    value = leaf
    for _ in range(depth):
        value = (value,)
    return value


def write(target: str, name: str, data: bytes) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def short(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:12]


def main() -> None:
    for oid in OIDS:
        data = oid.encode('utf-8')
        write('oid', 'seed-' + short(data), data)
        write('unpack', 'seed-' + short(data), data)
    for url in URLS:
        data = url.encode('utf-8')
        write('url', 'seed-' + short(data), data)
    for name, url in REPRODUCERS.items():
        target, _, name = name.partition('/')
        write(target, name, url.encode('utf-8'))
    for i, args in enumerate(KEYS):
        write('key', 'seed-%02d' % i, encode_args(args, split=i))
    # Issue 6: inner() escaped again at every level, so the key grew with
    # the depth times the escapes below (and the time with its cube).
    write('key', 'repro-nesting-amplification',
          encode_args((nested(40, '%' * 250),)))
    # At the encoder's nesting limit, and one level past it (refused).
    write('key', 'seed-deep', encode_args((nested(MAX_NESTING - 1), 'x')))
    write('key', 'seed-too-deep',
          encode_args((nested(MAX_NESTING, {'a,': '%'}), 'x')))

if __name__ == '__main__':
    main()
