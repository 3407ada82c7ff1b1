"""atheris targets for alkey's Python parsers.

    python tests/fuzz/py_fuzzer.py url    [libFuzzer options] [corpus dirs]
    python tests/fuzz/py_fuzzer.py unpack [libFuzzer options] [corpus dirs]

url: ``alkey.client.parse_url`` on the input as text (UTF-8, invalid bytes
kept by surrogateescape), every \\x01 byte replaced by a password marker:
only ConfigurationError may come out, and its text never shows a password.

unpack: ``alkey.utils.unpack_object_id`` on the input as text, beside the C
grammar (``valid_object_id``, ``valid_write_token``, ``encode_key``) and a
reading of the spec: they agree, only ValueError comes out, and a decoded
identifier spells its text again.

The checks live in fuzzcheck.py, which tests/test_fuzz_corpus.py replays
over the corpora.  With ALKEY_FUZZ_KEEP_GOING=<dir>, a broken check does not
stop the run: the first input of each kind of finding is written to <dir>
(for triage while a bug is open; never for `make fuzz`).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shlex
import sys
import types
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=['alkey']):
    # alkey.cache installs the resolver, as in use; fuzzcheck imports the
    # rest where it needs them.
    import alkey.cache
    import alkey.client
    import alkey.utils  # noqa: F401

# Imported before atheris could hook it: instrumented in main().
import urllib.parse

import fuzzcheck


def instrument_module(module: types.ModuleType) -> None:
    """Instrument the functions and methods a module defines (for modules
    imported before atheris could hook them)."""
    for obj in list(vars(module).values()):
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            atheris.instrument_func(obj)
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for member in vars(obj).values():
                if isinstance(member, property) and member.fget is not None:
                    member = member.fget
                if inspect.isfunction(member):
                    atheris.instrument_func(member)


def fuzz_url(data: bytes) -> None:
    fuzzcheck.check_url(fuzzcheck.url_input(data))


def fuzz_unpack(data: bytes) -> None:
    fuzzcheck.check_unpack(fuzzcheck.text_input(data))


TARGETS = {'url': fuzz_url, 'unpack': fuzz_unpack}


def keep_going(target: Callable[[bytes], None],
               directory: str) -> Callable[[bytes], None]:
    """For triage while a bug is open: record the first input of each kind
    of Finding in directory (and say so on stderr) instead of stopping."""
    seen: set[str] = set()
    os.makedirs(directory, exist_ok=True)

    def run(data: bytes) -> None:
        try:
            target(data)
        except fuzzcheck.Finding as finding:
            if finding.kind in seen:
                return
            seen.add(finding.kind)
            name = 'finding-' + hashlib.sha1(data).hexdigest()
            with open(os.path.join(directory, name), 'wb') as f:
                f.write(data)
            sys.stderr.write('FINDING %s: %s\n  %s\n'
                             % (name, finding.kind, finding))

    return run


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit('usage: py_fuzzer.py {%s} [libFuzzer options]'
                 % ','.join(TARGETS))
    name = sys.argv.pop(1)
    target = TARGETS[name]
    # libFuzzer runs argv[0] through the shell for -merge and -fork
    # children: make it this interpreter, this script and this target.
    sys.argv[0] = ' '.join(shlex.quote(word) for word in (
        sys.executable, os.path.abspath(__file__), name))
    findings = os.environ.get('ALKEY_FUZZ_KEEP_GOING')
    if findings:
        target = keep_going(target, findings)
    instrument_module(urllib.parse)
    atheris.enabled_hooks.add('RegEx')
    atheris.enabled_hooks.add('str')
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
