"""What the fuzz targets check, shared by the atheris targets and the corpus
replay (tests/test_fuzz_corpus.py).

Everything here is written from the key spec, not from alkey's code, so that
it can disagree with it:

- ``ref_kind``: the identifier grammar, a second implementation to compare
  with the C ``alkey_oid_kind`` (seen through ``valid_object_id``,
  ``valid_write_token`` and the slots ``encode_key`` makes).
- ``decode_args``: the key target's bytecode, the same as
  ``tests/fuzz/key_fuzzer.c`` (see its comment and the README).
- ``parse_key``: the readable key decoded back into values, so that a corpus
  replay proves the key it got names those arguments and no others.
- ``check_url`` / ``check_unpack``: what may come out of ``parse_url`` and
  ``unpack_object_id``.

A broken expectation raises ``Finding`` (an AssertionError), which atheris
reports as a crash and pytest as a failure.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import re
import struct
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

__all__ = [
    'EPOCH', 'Finding', 'GLOBAL', 'INSTANCE', 'MAX_NESTING', 'NONE', 'SECRET',
    'TABLE', 'check_key', 'check_key_size', 'check_oid', 'check_unpack', 'check_url',
    'decode_args', 'deep_recursion', 'encode_args', 'nesting', 'ref_kind',
    'text_input', 'token_for_slot', 'url_input',
]


class Finding(AssertionError):
    """A fuzz input broke an expectation; ``kind`` names the expectation
    (the same for every input that breaks it the same way)."""

    def __init__(self, message: str, kind: str = '') -> None:
        super().__init__(message)
        self.kind = kind or message.partition(':')[0]


def expect(condition: object, message: str, *args: object) -> None:
    if not condition:
        raise Finding(message % args if args else message, message)


# -- the identifier grammar (spec: "Identifiers") ----------------------------

NONE, INSTANCE, TABLE, GLOBAL, EPOCH = 0, 1, 2, 3, 4

_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
NAMECH = frozenset(_ALNUM + '_$-')
VALCH = frozenset(_ALNUM + "-_.:@+=!$&'()*;")
_HEX = '0123456789ABCDEF'
_TAGS = 'subdtnfx'


def _escaped_ok(text: str, raw: frozenset[str], min_units: int) -> bool:
    """True if text is 1*(raw | pct) (min_units 1) or *(...) (0), where a
    pct must be uppercase and name a byte that may not stand raw."""
    i = units = 0
    while i < len(text):
        c = text[i]
        if c in raw:
            i += 1
        elif (c == '%' and len(text) - i >= 3 and text[i + 1] in _HEX
              and text[i + 2] in _HEX
              and chr(int(text[i + 1:i + 3], 16)) not in raw):
            i += 3
        else:
            return False
        units += 1
    return units >= min_units


def _int_ok(part: str) -> bool:
    if part == '0':
        return True
    digits = part.removeprefix('-')
    return (digits != '' and all('0' <= c <= '9' for c in digits)
            and digits[0] != '0')


def ref_kind(text: object) -> int:
    """The ALKEY_OID_* kind of text, from the spec alone."""
    if not isinstance(text, str) or not text.startswith('alkey:'):
        return NONE
    rest = text[6:]
    if rest == '*#*':
        return GLOBAL
    if rest == '*#!':
        return EPOCH
    table, sep, pk = rest.partition('#')
    names = table.split('.')
    if not sep or len(names) > 2 or not all(
            _escaped_ok(name, NAMECH, 1) for name in names):
        return NONE
    if pk == '*':
        return TABLE
    if pk == '!':
        return EPOCH
    for part in pk.split(','):
        if _int_ok(part):
            continue
        if not (len(part) >= 2 and part[0] in _TAGS and part[1] == ':'
                and _escaped_ok(part[2:], VALCH, 0)):
            return NONE
    return INSTANCE


def _escape_bytes(data: bytes, raw: frozenset[str]) -> str:
    return ''.join(chr(b) if chr(b) in raw else '%%%02X' % b for b in data)


def text_input(data: bytes) -> str:
    """A fuzz input as text: UTF-8, other bytes as lone surrogates."""
    return data.decode('utf-8', 'surrogateescape')


def check_oid(text: str) -> int:
    """The C grammar (through the module functions) against ref_kind."""
    from alkey import _native

    kind = ref_kind(text)
    expect(_native.valid_object_id(text) is (kind == INSTANCE),
           'valid_object_id(%r) disagrees with the spec (kind %d)', text, kind)
    expect(_native.valid_write_token(text) is (kind in (TABLE, GLOBAL)),
           'valid_write_token(%r) disagrees with the spec (kind %d)',
           text, kind)
    # An identifier of any kind (epochs included) gets a slot.
    tokens = ['tok'] if kind != NONE else []
    key = _native.encode_key([text], tokens)
    if kind != NONE:
        expect(key == text + '~tok', 'identifier %r keyed as %r', text, key)
    return kind


# -- the key target's bytecode (tests/fuzz/key_fuzzer.c) ---------------------

#: Containers deeper than this are decoded empty (key_fuzzer.c says why):
#: past MAX_NESTING, so that the encoder's limit is reached.
MAX_DEPTH = 72
#: Top-level arguments read from one input.
MAX_ARGS = 64


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.depth = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def _decode_value(r: _Reader, depth: int) -> Any:
    r.depth = max(r.depth, depth)
    op = r.byte() % 16
    if op == 0:
        return r.take(r.byte()).decode('utf-8', 'surrogateescape')
    if op == 1:
        data = r.take(r.byte())
        try:
            return data.decode('utf-8', 'surrogatepass')
        except UnicodeDecodeError:
            return data.decode('latin-1')
    if op == 2:
        return 'alkey:' + r.take(r.byte()).decode('latin-1')
    if op == 3:
        count = r.byte() % 16
        chars = []
        for _ in range(count):
            b0, b1, b2 = r.byte(), r.byte(), r.byte()
            chars.append(chr((b0 | b1 << 8 | b2 << 16) % 0x110000))
        return ''.join(chars)
    if op == 4:
        return r.take(r.byte())
    if op == 5:
        return bytearray(r.take(r.byte()))
    if op == 6:
        return int.from_bytes(r.take(r.byte() % 33), 'little', signed=True)
    if op == 7:
        return struct.unpack('<d', r.take(8).ljust(8, b'\0'))[0]
    if op in (8, 9, 10):
        return (None, True, False)[op - 8]
    count = 0 if depth >= MAX_DEPTH else r.byte() % 8
    if op in (11, 12):
        items = [_decode_value(r, depth + 1) for _ in range(count)]
        return tuple(items) if op == 11 else items
    if op == 13:
        result: dict[Any, Any] = {}
        for _ in range(count):
            key = _decode_value(r, depth + 1)
            value = _decode_value(r, depth + 1)
            try:
                result[key] = value
            except TypeError:  # unhashable key: skipped, as in C
                pass
        return result
    members: set[Any] = set()
    for _ in range(count):
        item = _decode_value(r, depth + 1)
        try:
            members.add(item)
        except TypeError:
            pass
    return members if op == 14 else frozenset(members)


@contextmanager
def deep_recursion() -> Iterator[None]:
    """Room for the Python side's own recursion over MAX_DEPTH levels."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 4 * MAX_DEPTH))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def decode_args(data: bytes) -> tuple[int, list[Any], int]:
    """(split byte, arguments, deepest nesting) of a key target input."""
    r = _Reader(data)
    split = r.byte()
    args = []
    with deep_recursion():
        while r.pos < len(data) and len(args) < MAX_ARGS:
            args.append(_decode_value(r, 0))
    return split, args, r.depth


def _encode_value(value: Any) -> bytes:
    """The bytecode that decodes to value (for seeds)."""
    if isinstance(value, str):
        try:
            data = value.encode('utf-8')
        except UnicodeEncodeError:
            data = None
        if data is not None and len(data) < 256:
            return bytes([0, len(data)]) + data
        if len(value) < 16:
            return bytes([3, len(value)]) + b''.join(
                ord(c).to_bytes(3, 'little') for c in value)
        raise ValueError('no bytecode for the str %r' % (value,))
    if isinstance(value, (bytes, bytearray)) and len(value) < 256:
        return bytes([4 if type(value) is bytes else 5, len(value)]) + value
    if value is None or isinstance(value, bool):
        return bytes([{None: 8, True: 9, False: 10}[value]])
    if isinstance(value, int):
        n = (value.bit_length() + 8) // 8
        if n > 32:
            raise ValueError('int too large for the bytecode: %r' % value)
        return bytes([6, n]) + value.to_bytes(n, 'little', signed=True)
    if isinstance(value, float):
        return bytes([7]) + struct.pack('<d', value)
    ops = {tuple: 11, list: 12, dict: 13, set: 14, frozenset: 15}
    op = ops.get(type(value))
    if op is None or len(value) > 7:
        raise ValueError('no bytecode for %r' % (value,))
    if isinstance(value, dict):
        body = b''.join(_encode_value(k) + _encode_value(v)
                        for k, v in value.items())
    else:
        body = b''.join(_encode_value(e) for e in value)
    return bytes([op, len(value)]) + body


def encode_args(args: tuple[Any, ...] | list[Any], split: int = 0) -> bytes:
    """A key target input that decodes to args (the inverse of
    decode_args, for seeds)."""
    with deep_recursion():
        return bytes([split]) + b''.join(_encode_value(a) for a in args)


def token_for_slot(i: int) -> str:
    """The dummy token of slot i: bytes the key must escape, and some
    empty ones."""
    return '' if i % 4 == 3 else 'T%d/~%%.\u00e9' % i


# -- the readable key decoded (spec: "Readable cache key") -------------------

#: Containers nested deeper than this are refused (ALKEY_KEY_MAX_NESTING).
MAX_NESTING = 64


def nesting(value: Any) -> int:
    """How many containers deep value goes (a scalar 0, () 1)."""
    if isinstance(value, (tuple, list, set, frozenset)):
        return 1 + max((nesting(e) for e in value), default=0)
    if isinstance(value, dict):
        return 1 + max((max(nesting(k), nesting(v))
                        for k, v in value.items()), default=0)
    return 0


def _canon(value: Any) -> Any:
    """A hashable, comparable form of a decoded argument: the key's view of
    it (bytearray is bytes, frozenset is set, floats by repr)."""
    if isinstance(value, str):
        return ('s', value)
    if isinstance(value, (bytes, bytearray)):
        return ('b', bytes(value))
    if value is None or isinstance(value, bool):
        return ({None: 'N', True: 'T', False: 'F'}[value],)
    if isinstance(value, int):
        return ('i', value)
    if isinstance(value, float):
        return ('f', repr(value))
    if isinstance(value, tuple):
        return ('t', tuple(_canon(e) for e in value))
    if isinstance(value, list):
        return ('l', tuple(_canon(e) for e in value))
    if isinstance(value, (set, frozenset)):
        return ('S', tuple(sorted((_canon(e) for e in value), key=repr)))
    if isinstance(value, dict):
        return ('D', tuple(sorted(((_canon(k), _canon(v))
                                   for k, v in value.items()), key=repr)))
    raise TypeError('no canonical form for %r' % (value,))


_LENGTH = re.compile(rb'(0|[1-9][0-9]*):')


def _element(data: bytes, pos: int, text: bytes) -> tuple[bytes, int]:
    """The elem() at data[pos:] ("<len>:" and len bytes): (its enc(),
    where it ends)."""
    m = _LENGTH.match(data, pos)
    expect(m, 'no element length at %d in %r', pos, text)
    assert m is not None
    end = m.end() + int(m.group(1))
    expect(end <= len(data), 'an element overruns %r', text)
    return data[m.end():end], end


def _members(body: bytes, text: bytes, pairs: bool) -> list[tuple[bytes, ...]]:
    """The elem()s of "(" elem *("," elem) ")" (pairs: elem "=" elem), each
    with the text it spans last."""
    expect(body[:1] == b'(' and body[-1:] == b')',
           'container %r is not parenthesised', text)
    members: list[tuple[bytes, ...]] = []
    pos = 1
    while pos < len(body) - 1:
        if members:
            expect(body[pos:pos + 1] == b',', 'no "," at %d in %r', pos, text)
            pos += 1
        start = pos
        first, pos = _element(body, pos, text)
        if pairs:
            expect(body[pos:pos + 1] == b'=', 'dict entry without "=" in %r',
                   text)
            second, pos = _element(body, pos + 1, text)
            members.append((first, second, body[start:pos]))
        else:
            members.append((first, body[start:pos]))
    expect(pos == len(body) - 1, 'junk after the elements of %r', text)
    return members


def _parse_value(data: bytes) -> Any:
    """The canonical form of one encoded value (spec's enc()), from its
    UTF-8 bytes."""
    if not data.startswith(b'~'):
        expect(data != b'', 'an empty encoding')
        expect(b'/' not in data, 'a raw "/" in %r', data)
        return ('s', unquote_to_bytes(data).decode('utf-8'))
    tag, body = data[1:2].decode('latin-1'), data[2:]
    if tag in ('E', 'T', 'F', 'N'):
        expect(body == b'', 'junk after ~%s in %r', tag, data)
        return ('s', '') if tag == 'E' else (tag,)
    if tag == 'x':
        return ('s', unquote_to_bytes(body).decode('utf-8', 'surrogatepass'))
    if tag == 'i':
        expect(re.fullmatch(rb'0|-?[1-9][0-9]*', body), 'bad int %r', data)
        return ('i', int(body))
    if tag == 'f':
        text = body.decode('ascii')
        expect(repr(float(text)) == text, 'float not in repr form: %r', data)
        return ('f', text)
    if tag == 'b':
        expect(re.fullmatch(rb'(?:[A-Za-z0-9._-]|%[0-9A-F]{2})*', body),
               'bad bytes %r', data)
        return ('b', unquote_to_bytes(body))
    if tag in ('t', 'l'):
        return (tag, tuple(_parse_value(e)
                           for e, _ in _members(body, data, False)))
    if tag in ('s', 'd'):
        members = _members(body, data, tag == 'd')
        spans = [m[-1] for m in members]
        expect(spans == sorted(spans), 'unsorted %r', data)
        if tag == 's':
            return ('S', tuple(sorted((_parse_value(e) for e, _ in members),
                                      key=repr)))
        return ('D', tuple(sorted(((_parse_value(k), _parse_value(v))
                                   for k, v, _ in members), key=repr)))
    raise Finding('unknown tag in %r' % (data,))


def parse_key(key: str) -> list[Any]:
    """The canonical forms of the arguments a readable key names."""
    if key == '':
        return []
    result = []
    for segment in key.split('/'):
        if '~' in segment[1:] and not segment.startswith('~'):
            oid, _, token = segment.partition('~')
            result.append(('oid', oid,
                           unquote_to_bytes(token).decode('utf-8')))
        else:
            result.append(_parse_value(segment.encode('utf-8')))
    return result


def check_key(data: bytes) -> str | None:
    """Replays one key target input through ``_native.encode_key``: the key
    decodes back to exactly the arguments, the hashed form is the SHA-256 of
    the readable one, no reference is gained or lost; arguments that nest
    containers deeper than MAX_NESTING are refused with a ValueError that
    names the limit, and only they are.  Returns the key (None when
    refused)."""
    from alkey import _native

    _, args, _ = decode_args(data)
    expected = []
    nslots = 0
    with deep_recursion():
        deepest = max((nesting(arg) for arg in args), default=0)
        for arg in args:
            if isinstance(arg, str) and ref_kind(arg) != NONE:
                expected.append(('oid', arg, token_for_slot(nslots)))
                nslots += 1
            else:
                expected.append(_canon(arg))
    tokens = [token_for_slot(i) for i in range(nslots)]
    refs = [sys.getrefcount(a) for a in args]
    try:
        key = _native.encode_key(args, tokens)
        hashed = _native.encode_key(tuple(args), tokens, True)
    except RecursionError:
        # Not within MAX_NESTING under the default recursion limit (1000).
        raise Finding('RecursionError at nesting depth %d'
                      % deepest) from None
    except ValueError as exc:
        expect(deepest > MAX_NESTING,
               'ValueError at nesting depth %d: %s', deepest, exc)
        expect('nested more than %d deep' % MAX_NESTING in str(exc),
               'the nesting error does not name the limit: %s', exc)
        del exc
        after = [sys.getrefcount(a) for a in args]
        expect(refs == after, 'reference counts changed: %r -> %r',
               refs, after)
        return None
    expect(deepest <= MAX_NESTING, 'containers %d deep were keyed', deepest)
    expect(type(key) is str, 'encode_key returned %r', key)
    expect(hashed == hashlib.sha256(key.encode('utf-8')).hexdigest(),
           'hashed key %r is not the SHA-256 of %r', hashed, key)
    # The key may be a shared one-character str that is an argument too:
    # count references without it.
    key_utf8 = key.encode('utf-8')
    del key, hashed
    after = [sys.getrefcount(a) for a in args]
    expect(refs == after, 'reference counts changed: %r -> %r', refs, after)
    key = key_utf8.decode('utf-8')
    with deep_recursion():
        got = parse_key(key)
        expect(got == expected, 'key %r decodes to %r, not the arguments %r',
               key, got, expected)
    return key


def check_key_size(data: bytes) -> str | None:
    """check_key, and the key stays within a constant factor of the input
    (nesting must not multiply it)."""
    key = check_key(data)
    size = len(key.encode('utf-8')) if key is not None else 0
    expect(size <= 32 * len(data) + 64,
           'a %d-byte input makes a %d-byte key', len(data), size)
    return key


# -- parse_url (alkey.client) ------------------------------------------------

#: A password the URL target puts wherever its input has a \x01 byte; it
#: is never part of any message text by chance.
SECRET = 'Zq7SecretPw'
_C0_OR_SPACE = ''.join(map(chr, range(0x21)))


def url_input(data: bytes) -> str:
    """A URL target input as text, with every \\x01 made the password
    marker."""
    return text_input(data).replace('\x01', SECRET)


def _password_fields(url: str) -> list[tuple[str, str]]:
    """(where, raw text) of what a Redis URL reader treats as passwords,
    found the way urllib.parse.urlsplit splits (but never raising): the
    userinfo password, or a lone userinfo (redis-py: a password without a
    user), and every ``password=`` query value."""
    text = url.strip().lstrip(_C0_OR_SPACE)
    for c in '\t\r\n':
        text = text.replace(c, '')
    fields = []
    m = re.match(r'[A-Za-z][A-Za-z0-9+.-]*:', text)
    rest = text[m.end():] if m else text
    if rest.startswith('//'):
        end = len(rest)
        for c in '/?#':
            at = rest.find(c, 2)
            if at >= 0:
                end = min(end, at)
        netloc, rest = rest[2:end], rest[end:]
        userinfo, at, _ = netloc.rpartition('@')
        if at:
            user, colon, password = userinfo.partition(':')
            fields.append(('userinfo password', password) if colon
                          else ('lone userinfo', user))
    query = rest.partition('#')[0].partition('?')[2]
    for pair in query.split('&'):
        name, _, value = pair.partition('=')
        if unquote_plus(name) == 'password':
            fields.append(('password= query option', value))
    return fields


def check_url(url: str) -> dict[str, Any] | None:
    """parse_url(url) returns options or raises ConfigurationError, whose
    text shows no password."""
    from alkey._native import ConfigurationError
    from alkey.client import parse_url

    try:
        options = parse_url(url)
    except ConfigurationError as exc:
        message = str(exc)
        fields = [(where, text) for where, text in _password_fields(url)
                  if SECRET in text]
        if (fields and SECRET in message and url.count(SECRET)
                == sum(text.count(SECRET) for _, text in fields)):
            # The kind: where the password was, and the message up to
            # where it shows the URL.
            template = re.split(r', got |: ', message, maxsplit=1)[0]
            raise Finding('the password shows in the error for %r: %s'
                          % (url, message),
                          'password (%s) in "%s"'
                          % (', '.join(sorted({w for w, _ in fields})),
                             template))
        return None
    expect(isinstance(options, dict), 'parse_url returned %r', options)
    if 'port' in options:
        expect(isinstance(options['port'], int)
               and 0 <= options['port'] <= 65535, 'port %r', options)
    if 'db' in options:
        expect(isinstance(options['db'], int) and options['db'] >= 0,
               'db %r', options)
    for name in ('socket_timeout', 'socket_connect_timeout'):
        if name in options:
            expect(0 < options[name] < float('inf'), '%s %r', name, options)
    expect(('path' in options) != ('host' in options),
           'neither or both of host and path: %r', options)
    return options


# -- unpack_object_id (alkey.utils) ------------------------------------------

def _check_decoded_part(part: str, value: Any) -> None:
    """A part whose text the grammar makes canonical decodes to a value
    that spells it again."""
    if _int_ok(part):
        expect(type(value) is int and str(value) == part,
               'int part %r decoded to %r', part, value)
        return
    tag, text = part[0], part[2:]
    if tag in 'sx':
        expect(type(value) is str, '%r decoded to %r', part, value)
        expect(_escape_bytes(value.encode('utf-8', 'surrogatepass'), VALCH)
               == text, '%r decoded to %r, which spells otherwise',
               part, value)
    elif tag == 'b':
        expect(type(value) is bytes and _escape_bytes(value, VALCH) == text,
               '%r decoded to %r', part, value)
    elif tag == 'u':
        expect(type(value) is uuid.UUID and str(value) == text,
               '%r decoded to %r', part, value)
    else:
        types = {'d': datetime.date, 't': datetime.datetime,
                 'n': decimal.Decimal, 'f': float}
        expect(type(value) is types[tag], '%r decoded to %r', part, value)


def check_unpack(text: str) -> None:
    """unpack_object_id(text): a (table, pk) matching the text for a valid
    identifier, else ValueError; never another exception."""
    from alkey.utils import unpack_object_id

    kind = check_oid(text)
    try:
        table, pk = unpack_object_id(text)
    except ValueError as exc:
        # Epochs are identifiers without a (table, pk): either answer.
        if kind in (INSTANCE, TABLE, GLOBAL):
            expect('does not decode' in str(exc),
                   'unpack_object_id refused the valid %r: %s', text, exc)
        return
    expect(kind in (INSTANCE, TABLE, GLOBAL, EPOCH),
           'unpack_object_id accepted %r as (%r, %r)', text, table, pk)
    if kind == GLOBAL:
        expect((table, pk) == ('*', None), 'global token as %r', (table, pk))
        return
    table_text, _, pk_text = text[6:].partition('#')
    names = [unquote_to_bytes(n).decode('utf-8', 'surrogatepass')
             for n in table_text.split('.')]
    expect(table == '.'.join(names), '%r: table %r', text, table)
    if kind != INSTANCE:
        expect(pk is None, '%r: pk %r', text, pk)
        return
    parts = pk_text.split(',')
    values = list(pk) if len(parts) > 1 else [pk]
    expect(len(values) == len(parts) and (len(parts) == 1
                                          or type(pk) is tuple),
           '%r: pk %r', text, pk)
    for part, value in zip(parts, values):
        _check_decoded_part(part, value)
