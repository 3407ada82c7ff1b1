"""The fuzz corpora (tests/fuzz/corpus/<target>/) replayed through the
Python API, so that what fuzzing once found stays fixed in `make test`.

The checks are the atheris targets' own (tests/fuzz/fuzzcheck.py); the C
targets' inputs go through the same functions from Python: the oid corpus
through valid_object_id / valid_write_token / encode_key beside a reading
of the spec, the key corpus (the bytecode of key_fuzzer.c) through
encode_key, decoding the key back into the arguments.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FUZZ = Path(__file__).resolve().parent / 'fuzz'
CORPUS = FUZZ / 'corpus'


def _load_fuzzcheck() -> Any:
    spec = importlib.util.spec_from_file_location(
        'alkey_tests_fuzzcheck', FUZZ / 'fuzzcheck.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzzcheck = _load_fuzzcheck()

_QUERY_PASSWORD = ('parse_url shows a password= query option in its '
                   'ConfigurationError when the option name is spelt with '
                   'an escape or the value holds an "@" (_redact matches '
                   'the raw text, after cutting at the last "@")')

#: Reproducers of open bugs, by corpus path: the check they break (one of
#: CHECKS below, or a stricter one) and why.  Expected to fail until fixed;
#: then drop the entry, and the file joins the replay.  (Issue 6's
#: key/repro-nesting-amplification was one: fixed, it is replayed with the
#: key size check.)
KNOWN_BUGS: dict[str, tuple[str, str]] = {}


def check_oid(data: bytes) -> None:
    fuzzcheck.check_oid(fuzzcheck.text_input(data))


def check_unpack(data: bytes) -> None:
    fuzzcheck.check_unpack(fuzzcheck.text_input(data))


def check_url(data: bytes) -> None:
    fuzzcheck.check_url(fuzzcheck.url_input(data))


def check_key(data: bytes) -> None:
    # With the size bound: nesting must not multiply the key (issue 6).
    fuzzcheck.check_key_size(data)


CHECKS: dict[str, Callable[[bytes], None]] = {
    'oid': check_oid,
    'unpack': check_unpack,
    'url': check_url,
    'key': check_key,
}
STRICTER_CHECKS: dict[str, Callable[[bytes], None]] = {}


def corpus_files(target: str) -> list[Path]:
    return sorted(path for path in (CORPUS / target).iterdir()
                  if '%s/%s' % (target, path.name) not in KNOWN_BUGS)


def replay(target: str, check: Callable[[bytes], None]) -> None:
    files = corpus_files(target)
    assert files, 'no corpus in %s' % (CORPUS / target)
    failures = []
    for path in files:
        try:
            check(path.read_bytes())
        except Exception as exc:  # noqa: BLE001  (all files, then fail)
            failures.append('%s: %s: %.500s' % (path.name,
                                                type(exc).__name__, exc))
    assert not failures, '\n'.join(failures)


@pytest.mark.parametrize('target', sorted(CHECKS))
def test_fuzz_corpus_replays_cleanly(target):
    replay(target, CHECKS[target])


def test_identifier_corpora_agree_with_each_other():
    # The C target's identifiers through unpack_object_id, and the atheris
    # target's through the C grammar: one grammar for both.
    replay('oid', check_unpack)
    replay('unpack', check_oid)


@pytest.mark.parametrize('name', [
    pytest.param(name, marks=pytest.mark.xfail(
        strict=True, reason=reason, raises=fuzzcheck.Finding))
    for name, (_, reason) in sorted(KNOWN_BUGS.items())
])
def test_fuzz_reproducer_of_an_open_bug(name):
    check = KNOWN_BUGS[name][0]
    {**CHECKS, **STRICTER_CHECKS}[check]((CORPUS / name).read_bytes())


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = (leaf,)
    return leaf


def test_key_size_is_linear_in_nesting_depth():
    # Issue 6: 400 levels made a 322 kB key, 990 levels of dicts whose keys
    # hold ',:()%' 7.8 MB in 5 s, as every level escaped all below it
    # again.  Now a level adds its tag and the length of what it holds.
    from alkey import _native

    for leaf in ((), '%' * 1000, {',:()%' * 20: b'/' * 50}):
        sizes = [len(_native.encode_key([_nested(depth, leaf)], []))
                 for depth in range(fuzzcheck.MAX_NESTING - 1)]
        # A level wraps enc (n bytes) as "~t(<n>:" enc ")".
        for inner, outer in zip(sizes, sizes[1:]):
            assert outer == inner + 5 + len(str(inner)), (leaf, sizes)


def test_nesting_past_the_limit_is_a_clear_error():
    from alkey import _native

    for deep in (_nested(64, ()), _nested(400, ()), _nested(64, [{1: 2}])):
        with pytest.raises(ValueError, match=r'nested more than 64 deep'
                           r'.*flatten the value'):
            _native.encode_key([deep], [])


def test_known_bugs_have_their_reproducers():
    for name in KNOWN_BUGS:
        assert (CORPUS / name).is_file(), name


def test_key_bytecode_round_trips():
    # The seeds' encoder is the decoder's inverse (seeds.py relies on it).
    args = ('alkey:users#1', '\udcff', b'\x00', bytearray(b'x'), -2 ** 70,
            1.5, None, True, False, (1, [2]), {'k': frozenset({3})}, {4})
    split, decoded, depth = fuzzcheck.decode_args(
        fuzzcheck.encode_args(args, split=7))
    assert (split, depth) == (7, 2)
    assert decoded == list(args)
    assert [type(a) for a in decoded] == [type(a) for a in args]


def test_fuzz_directory_stays_small():
    total = sum(path.stat().st_size for path in FUZZ.rglob('*')
                if path.is_file() and '__pycache__' not in path.parts)
    assert total < 2 * 1024 * 1024, (
        'tests/fuzz is %d bytes: minimise the corpora (see its README)'
        % total)
