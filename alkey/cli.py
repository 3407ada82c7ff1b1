"""The ``alkey`` command: look at and replace tokens in Redis.

    alkey ping [--count N]                  is Redis there, and how far?
    alkey token TARGET... [--global]        tokens and their time to live
    alkey invalidate TARGET... | --all      replace tokens, as a commit would
    alkey bench [--iterations N]            cache_key latency against a round trip

Redis is found as the library finds it (``REDIS_URL``, ``REDIS_DB``,
``REDIS_MAX_CONNECTIONS``, see :mod:`alkey.client`) unless ``--url`` names
it.  ``--json`` prints one JSON document on stdout instead of text.  Exit
status: 0 done, 1 Redis failed (unreachable, timed out, refused), 2 a usage
or configuration error.  No message or document ever shows a password.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import textwrap
import time
from typing import Any, Callable, NamedTuple, Sequence

from . import __version__, _native
from ._dml import epoch_id
from ._native import Client, ConfigurationError
from .client import _redact, get_redis_config, parse_url
from .constants import (
    DEFAULT_REDIS_URL,
    GLOBAL_EPOCH,
    GLOBAL_WRITE_TOKEN,
    MAX_CACHE_DURATION,
    TOKEN_NAMESPACE,
)
from .events import _expand, send
from .utils import get_table_id

__all__ = ['TargetError', 'main', 'parse_target']

#: Exit statuses.
OK, FAILED, USAGE = 0, 1, 2

_FORMS = ("an identifier ('alkey:users#1'), a table ('users', 'public.users' "
          "or 'alkey:users#*'), a table epoch ('alkey:users#!'), the global "
          "token 'alkey:*#*' or the global epoch 'alkey:*#!'")
# A bare table name holds none of these: anything else is given in the
# identifier form, escaped.
_NOT_IN_NAMES = frozenset(':#/*%~ \t\r\n\f\v')


class TargetError(ValueError):
    """A command-line target that names no token."""


class Target(NamedTuple):
    text: str        # as given
    oid: str         # the identifier whose token it names
    kind: str        # instance, table, table-epoch, global, global-epoch


def parse_target(text: str) -> Target:
    """The token a command-line target names; TargetError naming the target
    and the accepted forms otherwise."""
    kind = _native.oid_kind(text)
    if kind == 'epoch':
        kind = 'global-epoch' if text == GLOBAL_EPOCH else 'table-epoch'
    if kind is not None:
        return Target(text, text, kind)
    if text and not _NOT_IN_NAMES.intersection(text) and text.isprintable():
        try:
            oid = get_table_id(text)  # escaped: any such name has an identifier
        except ValueError:  # an empty name or schema: 'public.'
            pass
        else:
            return Target(text, oid, 'table')
    raise TargetError(f'{text!r} names no token; give {_FORMS}')


# --------------------------------------------------------------------------
# Connecting


class _Redis(NamedTuple):
    client: Client
    shown: str       # the URL as messages show it


def _address(client: Client) -> str:
    """Where ``client`` connects, as a URL without credentials."""
    if client.path is not None:
        return f'unix://{client.path}?db={client.db}'
    scheme = 'rediss' if client.ssl else 'redis'
    host = f'[{client.host}]' if ':' in (client.host or '') else client.host
    return f'{scheme}://{host}:{client.port}/{client.db}'


def _connect(args: argparse.Namespace) -> _Redis:
    """A client configured as the library's shared one, or from ``--url``.
    Raises ConfigurationError (with the URL redacted) for a bad one."""
    env = dict(os.environ)
    if args.url is not None:
        parse_url(args.url, '--url')  # so that its errors name --url
        env['REDIS_URL'] = args.url
    options = get_redis_config(env)
    if args.timeout is not None:
        options['socket_timeout'] = options['socket_connect_timeout'] = args.timeout
    client = Client(**options)
    url = env.get('REDIS_URL', '').strip() or DEFAULT_REDIS_URL
    # _redact() keeps a URL that cannot hold a secret; any other is shown
    # as the address the client was given, which holds none.
    return _Redis(client, url if _redact(url) == url else _address(client))


# --------------------------------------------------------------------------
# Output


def _emit(args: argparse.Namespace, document: dict[str, Any],
          text: Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(document, ensure_ascii=False))
    else:
        print(text())


def _table(header: Sequence[str], rows: list[Sequence[str]], right: str = '') -> str:
    """Columns padded to their widest cell; those whose index is in
    ``right`` (a string of digits) aligned right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.rjust(w) if str(i) in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append('  '.join(cells).rstrip())
    return '\n'.join(lines)


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)


def _p90(values: Sequence[float]) -> float:
    """The 90th percentile, nearest rank (defined for one value too)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


# --------------------------------------------------------------------------
# Commands


def _server_version(client: Client) -> str | None:
    info = client.execute_command('INFO', 'server')
    if isinstance(info, bytes):
        info = info.decode('utf-8', 'replace')
    for line in str(info).splitlines():
        name, _, value = line.partition(':')
        if name == 'redis_version':
            return value.strip()
    return None


def cmd_ping(args: argparse.Namespace, redis: _Redis) -> int:
    client = redis.client
    client.ping()  # connects: not a round trip to time
    version = _server_version(client)
    times = []
    for _ in range(args.count):
        start = time.perf_counter()
        client.ping()
        times.append(time.perf_counter() - start)
    document = {
        'ok': True,
        'url': redis.shown,
        'redis_version': version,
        'count': args.count,
        'median_us': _us(statistics.median(times)),
        'min_us': _us(min(times)),
        'max_us': _us(max(times)),
    }
    _emit(args, document, lambda: (
        f"PONG from {redis.shown}: Redis {version or '(version unknown)'}, "
        f"round trip median {document['median_us']:.1f} µs "
        f"(min {document['min_us']:.1f}, max {document['max_us']:.1f}) "
        f"over {args.count} ping{'s' if args.count != 1 else ''}"))
    return OK


def _targets(args: argparse.Namespace) -> list[Target]:
    try:
        targets = [parse_target(text) for text in args.targets]
    except TargetError as exc:
        args.parser.error(str(exc))
    return targets


def cmd_token(args: argparse.Namespace, redis: _Redis) -> int:
    targets = _targets(args)
    if args.all_global:
        targets += [parse_target(GLOBAL_WRITE_TOKEN), parse_target(GLOBAL_EPOCH)]
    if not targets:
        args.parser.error('name at least one target, or give --global')
    unique: dict[str, Target] = {}
    for target in targets:
        unique.setdefault(target.oid, target)
    targets = list(unique.values())
    client = redis.client
    keys = [f'{args.namespace}:{t.oid}' for t in targets]
    values = client.mget(keys)
    entries = []
    for target, key, value in zip(targets, keys, values):
        ttl = client.ttl(key) if value is not None else -2
        token = (value.decode('utf-8', 'backslashreplace')
                 if value is not None and ttl != -2 else None)
        entries.append({
            'target': target.text,
            'identifier': target.oid,
            'kind': target.kind,
            'key': key,
            'token': token,
            'ttl': ttl if token is not None and ttl >= 0 else None,
        })
    document = {'ok': True, 'url': redis.shown, 'namespace': args.namespace,
                'tokens': entries}

    def text() -> str:
        rows = []
        for e in entries:
            if e['token'] is None:
                rows.append([e['identifier'], e['kind'], '(missing)', ''])
            else:
                ttl = 'no expiry' if e['ttl'] is None else f"{e['ttl']} s"
                rows.append([e['identifier'], e['kind'], e['token'], ttl])
        return (f'{redis.shown}, namespace {args.namespace}\n'
                + _table(['identifier', 'kind', 'token', 'ttl'], rows, right='3'))

    _emit(args, document, text)
    return OK


def cmd_invalidate(args: argparse.Namespace, redis: _Redis) -> int:
    if args.all and args.targets:
        args.parser.error('--all replaces every key already: give it alone, '
                          'without targets')
    if args.all:
        oids = [GLOBAL_EPOCH, GLOBAL_WRITE_TOKEN]
    else:
        targets = _targets(args)
        if not targets:
            args.parser.error('name at least one target, or give --all')
        for target in targets:
            if target.kind == 'global-epoch':
                args.parser.error(f'{target.text!r} is the global epoch: use --all '
                                  f'to replace it (and with it every key)')
            if target.kind == 'table-epoch':
                table = target.oid[:-1] + '*'
                args.parser.error(f'{target.text!r} is an epoch: name its table '
                                  f'({table!r}), which replaces the table token '
                                  f'and its epoch')
        oids = _expand(t.oid for t in targets)
    replaced = send(redis.client, oids, args.namespace, args.ttl)
    document = {'ok': True, 'url': redis.shown, 'namespace': args.namespace,
                'all': bool(args.all), 'replaced': replaced, 'identifiers': oids}
    _emit(args, document, lambda: (
        f"replaced {replaced} token{'s' if replaced != 1 else ''} under "
        f"{args.namespace} at {redis.shown}:\n"
        + '\n'.join(f'  {oid}' for oid in oids)))
    return OK


class _Case(NamedTuple):
    name: str
    args: int                  # cache_key arguments (0: a bare command)
    keys: int                  # keys read
    call: Callable[[], Any]
    baseline: str | None       # the MGET of the same keys


def _bench_cases(client: Client, namespace: str) -> list[_Case]:
    cases = [_Case('PING', 0, 0, client.ping, None)]
    for n in (1, 10):
        oids = [f'alkey:bench#{i}' for i in range(1, n + 1)]
        # What cache_key reads: each token, the table epoch, the global epoch.
        keys = [f'{namespace}:{oid}' for oid in
                [*oids, epoch_id('alkey:bench#*'), GLOBAL_EPOCH]]
        mget = f'MGET, {len(keys)} keys'
        cases.append(_Case(mget, 0, len(keys),
                           lambda keys=keys: client.mget(keys), None))
        cases.append(_Case(
            f"cache_key, {n} arg{'s' if n != 1 else ''}", n, len(keys),
            lambda oids=oids: _native.cache_key(client, oids, namespace,
                                                MAX_CACHE_DURATION, False),
            mget))
    return cases


def cmd_bench(args: argparse.Namespace, redis: _Redis) -> int:
    client = redis.client
    client.ping()  # fails now, rather than the keys failing open
    namespace = f'alkey.bench.{_native.random_token()}'
    cases = _bench_cases(client, namespace)
    times: dict[str, list[float]] = {case.name: [] for case in cases}
    try:
        for case in cases:  # creates the tokens and warms the connection
            case.call()
        for i in range(args.iterations):
            # Each case once per iteration, in an order rotated each time,
            # so that a slow spell of the machine hits them all alike.
            k = i % len(cases)
            for case in cases[k:] + cases[:k]:
                start = time.perf_counter()
                case.call()
                times[case.name].append(time.perf_counter() - start)
    finally:
        client.delete(*(f'{namespace}:{oid}' for oid in
                        [*(f'alkey:bench#{i}' for i in range(1, 11)),
                         'alkey:bench#!', GLOBAL_EPOCH]))
    median = {name: statistics.median(values) for name, values in times.items()}
    rows = []
    for case in cases:
        m = median[case.name]
        rows.append({
            'case': case.name,
            'args': case.args,
            'keys': case.keys,
            'median_us': _us(m),
            'p90_us': _us(_p90(times[case.name])),
            'vs_mget': round(m / median[case.baseline], 2) if case.baseline else None,
            'vs_ping': round(m / median['PING'], 2),
        })
    document = {'ok': True, 'url': redis.shown, 'iterations': args.iterations,
                'namespace': namespace, 'cases': rows}

    def text() -> str:
        table = [[r['case'], str(r['keys'] or ''), f"{r['median_us']:.1f}",
                  f"{r['p90_us']:.1f}",
                  '' if r['vs_mget'] is None else f"{r['vs_mget']:.2f}",
                  f"{r['vs_ping']:.2f}"] for r in rows]
        return (f'{redis.shown}, {args.iterations} iterations; ÷ MGET: the '
                f'time of an MGET of the same keys\n'
                + _table(['case', 'keys', 'median µs', 'p90 µs', '÷ MGET', '÷ PING'],
                         table, right='12345'))

    _emit(args, document, text)
    return OK


# --------------------------------------------------------------------------
# Arguments


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'not a number: {text!r}') from None
        if not value > 0 or value != value or value == float('inf'):
            raise argparse.ArgumentTypeError(f'must be above 0, got {text!r}')
        return value
    convert.__name__ = kind.__name__
    return convert


def _namespace(text: str) -> str:
    if not text or not text.isprintable() or ' ' in text:
        raise argparse.ArgumentTypeError(
            f'must be a non-empty prefix without spaces, got {text!r}')
    return text


_DESCRIPTION = """\
Look at and replace alkey's tokens in Redis.  Redis is found as the library
finds it, from REDIS_URL, REDIS_DB and REDIS_MAX_CONNECTIONS, unless --url
is given."""

_TARGETS = """\
targets (token, invalidate):
  alkey:users#1         a row's identifier (see alkey.utils.get_object_id)
  users, public.users   a table: the same as alkey:users#*, alkey:public.users#*
  alkey:users#*         a table's token
  alkey:users#!         a table's epoch (token only)
  alkey:*#*             the global token, which any write replaces
  alkey:*#!             the global epoch (token only; invalidate --all)"""

_EXIT = """\
exit status: 0 done, 1 Redis failed (unreachable, timed out, refused),
2 a usage or configuration error (a bad target or URL)."""


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: options may come between targets
    (``alkey token users --json alkey:users#1``)."""

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inner:
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def build_parser() -> argparse.ArgumentParser:
    # Options every command takes, before or after its name: SUPPRESS keeps
    # a subcommand from overwriting one given before it with its default.
    common = argparse.ArgumentParser(add_help=False,
                                     argument_default=argparse.SUPPRESS)
    common.add_argument(
        '--url', metavar='URL',
        help='the Redis URL (redis://, rediss://, unix://), instead of $REDIS_URL')
    common.add_argument(
        '--timeout', metavar='SECONDS', type=_positive(float),
        help='seconds to connect and to wait for a reply (default: the URL\'s '
             'options, else 0.25 and 0.5)')
    common.add_argument('--json', action='store_true',
                        help='print one JSON document on stdout instead of text')

    parser = argparse.ArgumentParser(
        prog='alkey', description=_DESCRIPTION, epilog=f'{_TARGETS}\n\n{_EXIT}',
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action='version', version=f'alkey {__version__}')
    commands = parser.add_subparsers(title='commands', dest='command',
                                     metavar='COMMAND', required=True,
                                     parser_class=_CommandParser)

    def command(name: str, run: Callable[..., int], summary: str, description: str,
                targets: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary,
                                  description=textwrap.fill(description, 76),
                                  epilog=f'{_TARGETS}\n\n{_EXIT}' if targets else _EXIT,
                                  parents=[common],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=run, parser=sub)
        return sub

    ping = command('ping', cmd_ping,
                   'check that Redis answers; its version and round trip',
                   'Connect, read the server version (INFO server) and time N '
                   'PINGs; prints their median round trip.  Exit 1 when Redis '
                   'cannot be reached within the timeout.')
    ping.add_argument('--count', '-c', type=_positive(int), default=10, metavar='N',
                      help='PINGs to time (default 10)')

    namespace_help = (f'prefix of the token keys, <NAMESPACE>:<identifier> '
                      f'(default {TOKEN_NAMESPACE})')
    token = command('token', cmd_token, 'show tokens and their time to live',
                    'Show the token of each target and its time to live, or '
                    '(missing): a missing token is created by the next cache_key '
                    'that needs it.  Reads only.', targets=True)
    token.add_argument('targets', nargs='*', metavar='TARGET',
                       help='what to show (forms below)')
    token.add_argument('--global', dest='all_global', action='store_true',
                       help='also show the global token alkey:*#* and the global '
                            'epoch alkey:*#!')
    token.add_argument('--namespace', type=_namespace, default=TOKEN_NAMESPACE,
                       help=namespace_help)

    invalidate = command(
        'invalidate', cmd_invalidate, 'replace tokens, so that keys naming them change',
        'Replace tokens as a commit would (alkey.invalidate): a row also replaces '
        'its table\'s token, a table its token and epoch (every key of its rows), '
        'and every target the global token.  --all replaces the global epoch and '
        'global token: every key changes.  Prints what it replaced.', targets=True)
    invalidate.add_argument('targets', nargs='*', metavar='TARGET',
                            help='what to invalidate (forms below; no epochs)')
    invalidate.add_argument('--all', action='store_true',
                            help='invalidate every key (alone, without targets)')
    invalidate.add_argument('--namespace', type=_namespace, default=TOKEN_NAMESPACE,
                            help=namespace_help)
    invalidate.add_argument('--ttl', type=_positive(int), default=MAX_CACHE_DURATION,
                            metavar='SECONDS',
                            help=f'lifetime of the new tokens '
                                 f'(default {MAX_CACHE_DURATION})')

    bench = command('bench', cmd_bench, 'time cache_key against a bare round trip',
                    'Time cache_key (the native client) with 1 and 10 identifiers '
                    'against a PING and an MGET of the keys it reads, interleaved; '
                    'prints the median and p90 and their ratios.  Uses tokens '
                    'under a throwaway namespace (alkey.bench.<random>) and '
                    'deletes them after.')
    bench.add_argument('--iterations', '-n', type=_positive(int), default=1000,
                       metavar='N',
                       help='timed calls of each case (default 1000)')
    return parser


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return OK
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns
    the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        for name, default in (('url', None), ('timeout', None), ('json', False)):
            if not hasattr(args, name):
                setattr(args, name, default)
        try:
            redis = _connect(args)
        except ConfigurationError as exc:
            print(f'alkey {args.command}: {exc}', file=sys.stderr)
            return USAGE
        try:
            return args.run(args, redis)
        except _native.Error as exc:
            what = ('cannot reach' if isinstance(exc, _native.ConnectionError)
                    else 'error from')
            print(f'alkey {args.command}: {what} Redis at {redis.shown}: '
                  f'{type(exc).__name__}: {exc}', file=sys.stderr)
            if args.json:
                print(json.dumps({'ok': False, 'url': redis.shown,
                                  'error': type(exc).__name__, 'message': str(exc)},
                                 ensure_ascii=False))
            return FAILED
        finally:
            redis.client.close()
    except SystemExit as exc:
        return _exit_status(exc)
    except KeyboardInterrupt:
        return 128 + 2
