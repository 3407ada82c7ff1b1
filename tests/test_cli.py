"""The ``alkey`` command against the suite's own redis-server: in-process
through ``alkey.cli.main`` and as a real program (``python -m alkey`` and
the installed ``alkey`` script)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alkey.cli import main
from alkey.constants import TOKEN_NAMESPACE
from alkey.events import _expand
from tests.conftest import free_port
from tests.models import User

TOKEN = re.compile(r'^[A-Za-z0-9_-]{22}$')
DAY = 86400
FORMS = "an identifier ('alkey:users#1')"


def run(capsys, *argv):
    """main(argv) in this process: (exit status, stdout, stderr)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys, *argv):
    status, out, err = run(capsys, *argv, '--json')
    assert status == 0, err
    return json.loads(out)


def token_key(oid, namespace=TOKEN_NAMESPACE):
    return f'{namespace}:{oid}'


# --------------------------------------------------------------------------
# ping


def test_ping_shows_the_server_version_and_the_median_round_trip(server, capsys):
    status, out, err = run(capsys, 'ping', '--count', '5')
    version = server.admin.info('server')['redis_version']
    assert status == 0, err
    assert out.startswith(
        f'PONG from {server.url}: Redis {version}, round trip median ')
    assert out.rstrip().endswith('over 5 pings')
    assert err == ''


def test_ping_json_has_the_documented_fields(server, capsys):
    server.reset_stats()
    doc = run_json(capsys, 'ping', '-c', '7')
    assert set(doc) == {'ok', 'url', 'redis_version', 'count', 'median_us',
                        'min_us', 'max_us'}
    assert doc['ok'] is True and doc['url'] == server.url and doc['count'] == 7
    assert doc['redis_version'] == server.admin.info('server')['redis_version']
    assert 0 < doc['min_us'] <= doc['median_us'] <= doc['max_us']
    assert server.command_counts().get('ping') == 8  # one to connect, 7 timed


def test_ping_against_a_dead_port_exits_1_at_once_naming_the_url(capsys):
    url = f'redis://127.0.0.1:{free_port()}/0'
    start = time.monotonic()
    status, out, err = run(capsys, 'ping', '--url', url)
    assert time.monotonic() - start < 1.0
    assert status == 1 and out == ''
    assert err.startswith(f'alkey ping: cannot reach Redis at {url}: ConnectionError: ')


def test_ping_against_a_stopped_server_gives_up_after_the_timeout(server, capsys):
    url = f'{server.url}/0?socket_timeout=3'  # --timeout wins over the URL's
    server.pause()
    start = time.monotonic()
    status, out, err = run(capsys, 'ping', '--url', url, '--timeout', '0.2', '--json')
    assert time.monotonic() - start < 1.5
    assert status == 1
    assert f'cannot reach Redis at {url}: TimeoutError' in err
    doc = json.loads(out)
    assert doc['ok'] is False and doc['error'] == 'TimeoutError'
    assert doc['url'] == url and doc['message']


def test_options_go_before_or_after_the_command(server, capsys):
    for argv in (['--json', 'ping'], ['ping', '--json'],
                 ['--url', server.url, 'ping', '--json'],
                 ['token', 'users', '--json', 'alkey:users#1']):
        status, out, err = run(capsys, *argv)
        assert status == 0, (argv, err)
        assert json.loads(out)['ok'] is True, argv
    doc = json.loads(run(capsys, 'token', 'users', '--json', 'alkey:users#1')[1])
    assert [e['identifier'] for e in doc['tokens']] == [
        'alkey:users#*', 'alkey:users#1']


# --------------------------------------------------------------------------
# Configuration and errors


def test_redis_db_comes_from_the_environment_like_the_library(
        server, monkeypatch, capsys):
    monkeypatch.setenv('REDIS_DB', '3')
    status, out, err = run(capsys, 'invalidate', 'alkey:users#1')
    assert status == 0, err
    db3 = server.client(db=3, decode_responses=True)
    try:
        assert TOKEN.match(db3.get(token_key('alkey:users#1')))
    finally:
        db3.close()
    assert server.admin.get(token_key('alkey:users#1')) is None
    assert f'{server.url}' in out


def test_a_bad_url_is_a_configuration_error_exit_2_naming_where_it_came_from(
        server, monkeypatch, capsys):
    monkeypatch.setenv('REDIS_URL', 'http://127.0.0.1:6379')
    status, out, err = run(capsys, 'ping')
    assert status == 2 and out == ''
    assert 'REDIS_URL must start with redis://' in err
    status, out, err = run(capsys, 'ping', '--url', 'redis://127.0.0.1:notaport')
    assert status == 2 and '--url is not a valid Redis URL' in err


@pytest.mark.parametrize('command', [['ping'], ['token', 'users'],
                                     ['invalidate', 'users'], ['bench', '-n', '1']])
def test_url_password_is_never_shown(server, capsys, command):
    dead = free_port()
    for url, status in [
            (f'redis://:s3cret-pw@127.0.0.1:{dead}/0', 1),              # unreachable
            (f'redis://app:s3cret-pw@127.0.0.1:{server.port}/0', 1),   # refused AUTH
            (f'redis://:s3cret-pw@127.0.0.1:{dead}/0?db=x', 2),       # malformed
            (f'redis://127.0.0.1:{dead}/0?password=s3cret-pw', 1)]:
        for json_flag in ([], ['--json']):
            got, out, err = run(capsys, *command, '--url', url, *json_flag)
            assert got == status, (url, err)
            assert 's3cret' not in out + err, url
            assert err.startswith(f'alkey {command[0]}: '), err
            if status == 1:
                port = dead if 'app' not in url else server.port
                assert f'redis://127.0.0.1:{port}/0' in err


# --------------------------------------------------------------------------
# token


def test_token_is_missing_until_a_cache_key_creates_it(server, kg, capsys):
    before = run_json(capsys, 'token', 'alkey:users#1')['tokens']
    assert before == [{'target': 'alkey:users#1', 'identifier': 'alkey:users#1',
                       'kind': 'instance', 'key': token_key('alkey:users#1'),
                       'token': None, 'ttl': None}]
    status, out, _ = run(capsys, 'token', 'alkey:users#1')
    assert status == 0
    assert re.search(r'^alkey:users#1 +instance +\(missing\)$', out, re.M), out

    kg('alkey:users#1', 'fragment')
    [entry] = run_json(capsys, 'token', 'alkey:users#1')['tokens']
    assert entry['token'] == server.admin.get(token_key('alkey:users#1'))
    assert TOKEN.match(entry['token'])
    assert DAY - 60 < entry['ttl'] <= DAY
    status, out, _ = run(capsys, 'token', 'alkey:users#1')
    row = rf"^alkey:users#1 +instance +{entry['token']} +\d+ s$"
    assert re.search(row, out, re.M), out


def test_token_accepts_every_form_of_target(server, kg, capsys):
    kg(User, 'alkey:users#1', 'alkey:public.users#*', 'alkey:*#*')
    doc = run_json(capsys, 'token', 'users', 'alkey:users#*', 'public.users',
                   'alkey:users#!', 'alkey:users#1', 'alkey:*#*', '--global')
    assert doc['namespace'] == TOKEN_NAMESPACE and doc['url'] == server.url
    rows = [(e['target'], e['identifier'], e['kind']) for e in doc['tokens']]
    assert rows == [  # one row per identifier, first naming first
        ('users', 'alkey:users#*', 'table'),
        ('public.users', 'alkey:public.users#*', 'table'),
        ('alkey:users#!', 'alkey:users#!', 'table-epoch'),
        ('alkey:users#1', 'alkey:users#1', 'instance'),
        ('alkey:*#*', 'alkey:*#*', 'global'),
        ('alkey:*#!', 'alkey:*#!', 'global-epoch'),
    ]
    for entry in doc['tokens']:
        assert entry['token'] == server.admin.get(entry['key']), entry
        assert TOKEN.match(entry['token']) and entry['ttl'] > 0, entry


@pytest.mark.parametrize('name, oid', [
    ('users', 'alkey:users#*'), ('public.users', 'alkey:public.users#*'),
    ('a.b.c', 'alkey:a.b%2Ec#*'), ('caf\u00e9', 'alkey:caf%C3%A9#*'),
    ('users$2', 'alkey:users$2#*')])
def test_a_table_name_names_the_table_identifier_get_table_id_gives(server, capsys,
                                                                   name, oid):
    [entry] = run_json(capsys, 'token', name)['tokens']
    assert (entry['target'], entry['identifier'], entry['kind']) == (name, oid, 'table')


def test_token_reads_another_namespace_and_shows_tokens_without_expiry(server, capsys):
    server.admin.set(token_key('alkey:users#1', 'other.ns'), 'handmade')
    doc = run_json(capsys, 'token', '--namespace', 'other.ns', 'alkey:users#1')
    [entry] = doc['tokens']
    assert doc['namespace'] == 'other.ns'
    assert entry['key'] == 'other.ns:alkey:users#1'
    assert entry['token'] == 'handmade' and entry['ttl'] is None
    status, out, _ = run(capsys, 'token', 'alkey:users#1', '--namespace', 'other.ns')
    assert re.search(r'^alkey:users#1 +instance +handmade +no expiry$', out, re.M), out
    assert run_json(capsys, 'token', 'alkey:users#1')['tokens'][0]['token'] is None


def test_token_sends_nothing_but_reads(server, capsys):
    server.reset_stats()
    run_json(capsys, 'token', 'users', 'alkey:users#1', '--global')
    counts = server.command_counts()
    assert counts.get('mget') == 1
    assert not {'set', 'del', 'setex'} & set(counts), counts


@pytest.mark.parametrize('target', [
    'alkey:users#x', 'alkey:users', 'users:1', 'users#1', 'alkey:users#1/2',
    'two words', '', '*', 'alkey:#*', 'alkey:users#!!', 'public.', '.users'])
@pytest.mark.parametrize('command', ['token', 'invalidate'])
def test_a_bad_target_exits_2_naming_it_and_the_accepted_forms(server, capsys,
                                                               command, target):
    server.reset_stats()
    status, out, err = run(capsys, command, 'alkey:users#1', target)
    assert status == 2 and out == ''
    assert f'alkey {command}: error: {target!r} names no token; give {FORMS}' in err
    assert "'alkey:*#!'" in err
    assert not {'set', 'mget'} & set(server.command_counts())


def test_token_without_a_target_is_a_usage_error(server, capsys):
    status, _, err = run(capsys, 'token')
    assert status == 2 and 'name at least one target, or give --global' in err


# --------------------------------------------------------------------------
# invalidate


def test_invalidate_an_identifier_changes_its_key_and_its_table_key(server, kg, capsys):
    keys = {t: kg(t, 'x') for t in ('alkey:users#1', 'alkey:users#2', 'alkey:users#*',
                                    'alkey:*#*', 'alkey:tags#s:a')}
    status, out, err = run(capsys, 'invalidate', 'alkey:users#1')
    assert status == 0, err
    assert out == (f'replaced 3 tokens under {TOKEN_NAMESPACE} at {server.url}:\n'
                   f'  alkey:users#1\n  alkey:users#*\n  alkey:*#*\n')
    changed = {t for t, key in keys.items() if kg(t, 'x') != key}
    assert changed == {'alkey:users#1', 'alkey:users#*', 'alkey:*#*'}
    assert kg(User) != keys['alkey:users#*'].replace('/x', '')


def test_invalidate_a_table_changes_every_key_of_its_rows(server, kg, capsys):
    kg(User)
    targets = ('alkey:users#1', 'alkey:users#2', 'alkey:users#*', 'alkey:tags#s:a',
               'alkey:tags#*')
    keys = {t: kg(t) for t in targets}
    user_key = kg(User)
    doc = run_json(capsys, 'invalidate', 'users')
    assert doc == {'ok': True, 'url': server.url, 'namespace': TOKEN_NAMESPACE,
                   'all': False, 'replaced': 3,
                   'identifiers': ['alkey:users#*', 'alkey:users#!', 'alkey:*#*']}
    assert doc['identifiers'] == _expand([User])
    changed = {t for t, key in keys.items() if kg(t) != key}
    assert changed == {'alkey:users#1', 'alkey:users#2', 'alkey:users#*'}
    assert kg(User) != user_key


def test_invalidate_all_changes_the_keys_of_unrelated_identifiers(server, kg, capsys):
    targets = ('alkey:users#1', 'alkey:tags#s:a', 'alkey:documents#u:x',
               'alkey:orders#*', 'alkey:*#*')
    keys = {t: kg(t, 'fragment') for t in targets}
    epoch = server.admin.get(token_key('alkey:*#!'))
    status, out, err = run(capsys, 'invalidate', '--all')
    assert status == 0, err
    assert out.startswith('replaced 2 tokens under ')
    assert out.endswith('  alkey:*#!\n  alkey:*#*\n')
    assert server.admin.get(token_key('alkey:*#!')) not in (None, epoch)
    assert [t for t in targets if kg(t, 'fragment') == keys[t]] == []
    assert DAY - 60 < server.admin.ttl(token_key('alkey:*#!')) <= DAY


def test_invalidate_all_json(server, capsys):
    doc = run_json(capsys, 'invalidate', '--all')
    assert doc == {'ok': True, 'url': server.url, 'namespace': TOKEN_NAMESPACE,
                   'all': True, 'replaced': 2,
                   'identifiers': ['alkey:*#!', 'alkey:*#*']}


def test_invalidate_all_with_targets_is_refused_and_sends_nothing(server, capsys):
    server.reset_stats()
    status, out, err = run(capsys, 'invalidate', '--all', 'alkey:users#1')
    assert status == 2 and out == ''
    assert 'alkey invalidate: error: --all replaces every key already' in err
    status, _, err = run(capsys, 'invalidate')
    assert status == 2 and 'name at least one target, or give --all' in err
    assert 'set' not in server.command_counts()
    assert server.admin.keys('*') == []


def test_invalidate_refused_by_redis_exits_1_without_the_password(server, capsys):
    server.admin_command('ACL', 'SETUSER', 'reader', 'on', '>s3cret-pw', '~*',
                         '+@read', '+ping')
    url = f'redis://reader:s3cret-pw@127.0.0.1:{server.port}/0'
    assert run(capsys, 'token', 'users', '--url', url)[0] == 0
    status, out, err = run(capsys, 'invalidate', 'users', '--url', url, '--json')
    assert status == 1
    assert err.startswith(f'alkey invalidate: error from Redis at '
                          f'redis://127.0.0.1:{server.port}/0: ReplyError: ')
    assert 'NOPERM' in err
    assert json.loads(out)['error'] == 'ReplyError'
    assert 's3cret' not in out + err
    assert server.admin.keys('*') == []


@pytest.mark.parametrize('target, hint', [
    ('alkey:users#!', "name its table ('alkey:users#*')"),
    ('alkey:*#!', 'use --all')])
def test_invalidate_refuses_epochs_with_a_hint(server, capsys, target, hint):
    status, out, err = run(capsys, 'invalidate', target)
    assert status == 2 and hint in err
    assert server.admin.keys('*') == []


def test_invalidate_in_another_namespace_with_a_ttl(server, capsys):
    doc = run_json(capsys, 'invalidate', 'alkey:users#1', '--namespace', 'app2',
                   '--ttl', '60')
    assert doc['namespace'] == 'app2' and doc['replaced'] == 3
    assert sorted(server.admin.keys('*')) == [
        'app2:alkey:*#*', 'app2:alkey:users#*', 'app2:alkey:users#1']
    assert 0 < server.admin.ttl('app2:alkey:users#1') <= 60


# --------------------------------------------------------------------------
# bench


def test_bench_prints_ratios_and_deletes_its_keys(server, kg, capsys):
    app_key = kg('alkey:users#1')
    app_keys = sorted(server.admin.keys('*'))
    status, out, err = run(capsys, 'bench', '--iterations', '5')
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == (f'{server.url}, 5 iterations; '
                        f'÷ MGET: the time of an MGET of the same keys')
    assert lines[1].split() == ['case', 'keys', 'median', 'µs', 'p90', 'µs',
                                '÷', 'MGET', '÷', 'PING']
    number, ratio = r'\d+\.\d', r'\d+\.\d\d'
    for line, case in zip(lines[2:], ['PING', 'MGET, 3 keys', 'cache_key, 1 arg',
                                      'MGET, 12 keys', 'cache_key, 10 args']):
        assert line.startswith(case), line
    assert re.fullmatch(rf'cache_key, 1 arg +3 +{number} +{number} +{ratio} +{ratio}',
                        lines[4]), lines[4]
    assert re.fullmatch(rf'cache_key, 10 args +12 +{number} +{number} +{ratio} +{ratio}',
                        lines[6]), lines[6]
    assert len(lines) == 7
    assert sorted(server.admin.keys('*')) == app_keys
    assert kg('alkey:users#1') == app_key


def test_bench_json_has_the_documented_fields(server, capsys):
    server.reset_stats()
    doc = run_json(capsys, 'bench', '-n', '3')
    assert set(doc) == {'ok', 'url', 'iterations', 'namespace', 'cases'}
    assert doc['iterations'] == 3 and doc['namespace'].startswith('alkey.bench.')
    assert [(c['case'], c['args'], c['keys']) for c in doc['cases']] == [
        ('PING', 0, 0), ('MGET, 3 keys', 0, 3), ('cache_key, 1 arg', 1, 3),
        ('MGET, 12 keys', 0, 12), ('cache_key, 10 args', 10, 12)]
    for case in doc['cases']:
        assert set(case) == {'case', 'args', 'keys', 'median_us', 'p90_us', 'vs_mget',
                             'vs_ping'}
        assert 0 < case['median_us'] <= case['p90_us']
        assert (case['vs_mget'] is None) == (case['args'] == 0)
    ping = doc['cases'][0]['median_us']
    ratio = doc['cases'][4]['median_us'] / ping
    assert abs(doc['cases'][4]['vs_ping'] - ratio) < 0.02 * ratio + 0.01
    counts = server.command_counts()
    # 3 timed + 1 warming call of each MGET and cache_key case (each cache_key
    # one MGET: the first call created its tokens with SET NX, never SET)
    assert counts['mget'] == 4 * 4 + 2 and counts.get('set', 0) == 12
    assert server.admin.keys('*') == []


def test_bench_fails_with_exit_1_when_redis_is_unreachable(capsys):
    url = f'redis://127.0.0.1:{free_port()}/0'
    status, out, err = run(capsys, 'bench', '--url', url, '-n', '2')
    assert status == 1 and out == ''
    assert f'cannot reach Redis at {url}' in err


# --------------------------------------------------------------------------
# Help and usage


def test_help_explains_the_program_and_each_command(capsys):
    status, out, _ = run(capsys, '--help')
    assert status == 0
    for word in ('ping', 'token', 'invalidate', 'bench', '--url', '--json', 'REDIS_URL',
                 'exit status'):
        assert word in out, word
    for command, options in [('ping', ['--count']),
                             ('token', ['--global', '--namespace', 'alkey:users#!']),
                             ('invalidate', ['--all', '--ttl', 'alkey:*#*']),
                             ('bench', ['--iterations', 'throwaway namespace'])]:
        status, out, _ = run(capsys, command, '--help')
        assert status == 0
        assert out.startswith(f'usage: alkey {command} ')
        out = ' '.join(out.split())
        for option in options + ['--url', '--json', '--timeout']:
            assert option in out, (command, option)


@pytest.mark.parametrize('argv', [
    [], ['frobnicate'], ['ping', '--count', '0'], ['ping', '--count', 'x'],
    ['bench', '-n', '-1'], ['ping', '--timeout', 'nan'], ['token', '--namespace', '']])
def test_usage_errors_exit_2(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ''
    assert 'usage: alkey' in err


# --------------------------------------------------------------------------
# As a program


def program_env(server):
    env = {k: v for k, v in os.environ.items()
           if k not in ('REDIS_DB', 'REDIS_MAX_CONNECTIONS')}
    env['REDIS_URL'] = server.url
    return env


def test_python_m_alkey_runs_the_command(server, kg):
    key = kg('alkey:users#1')
    env = program_env(server)
    done = subprocess.run([sys.executable, '-m', 'alkey', 'invalidate', 'alkey:users#1',
                           '--json'],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['replaced'] == 3
    assert kg('alkey:users#1') != key
    done = subprocess.run([sys.executable, '-m', 'alkey', 'token', 'alkey:users#x'],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and 'names no token' in done.stderr


def test_the_installed_alkey_script(server):
    script = Path(sys.executable).parent / 'alkey'
    assert script.exists(), f'{script} missing: pip install -e . installs it'
    env = program_env(server)
    done = subprocess.run([str(script), 'ping', '--json'], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['url'] == server.url
    env['REDIS_URL'] = f'redis://:s3cret-pw@127.0.0.1:{free_port()}/0'
    start = time.monotonic()
    done = subprocess.run([str(script), 'token', 'users'], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ''
    assert 'alkey token: cannot reach Redis at redis://127.0.0.1:' in done.stderr
    assert 's3cret' not in done.stderr
    assert time.monotonic() - start < 30
