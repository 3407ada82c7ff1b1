"""The redis-server fixtures of conftest.py do what the other tests rely on."""

from __future__ import annotations

import os

import pytest
import redis

pytestmark = pytest.mark.usefixtures("redis_server_clean")


def test_fixture_server_is_not_the_machines_redis(redis_server_clean):
    assert redis_server_clean.port != 6379
    assert os.environ["REDIS_URL"] == redis_server_clean.url
    assert "REDIS_DB" not in os.environ
    assert "REDIS_MAX_CONNECTIONS" not in os.environ


def test_unix_socket_reaches_the_same_server(redis_server_clean):
    with redis_server_clean.client() as tcp, redis_server_clean.client(unix=True) as unix:
        tcp.set("alkey:probe", "tcp")
        assert unix.get("alkey:probe") == b"tcp"


def test_paused_server_times_out_until_resumed(redis_server_clean):
    with redis_server_clean.client(socket_timeout=0.2) as c:
        assert c.ping()
        redis_server_clean.pause()
        with pytest.raises(redis.TimeoutError):
            c.ping()
        redis_server_clean.resume()
        assert c.ping()


def test_killed_server_refuses_until_restarted_empty(redis_server_clean):
    port = redis_server_clean.port
    with redis_server_clean.client(socket_timeout=1) as c:
        c.set("alkey:probe", "before")
        redis_server_clean.kill()
        with pytest.raises(redis.ConnectionError):
            c.ping()
        redis_server_clean.restart()
        assert redis_server_clean.port == port
        assert c.get("alkey:probe") is None
        assert c.dbsize() == 0


def test_command_counts_count_a_set_and_nothing_of_the_fixture(redis_server_clean):
    assert redis_server_clean.command_counts() == {}
    with redis_server_clean.client() as c:
        c.set("alkey:probe", "1")
    assert redis_server_clean.command_counts() == {"set": 1}
    redis_server_clean.reset_stats()
    assert redis_server_clean.command_counts() == {}


def test_command_counts_resume_a_paused_server(redis_server_clean):
    redis_server_clean.pause()
    assert redis_server_clean.command_counts() == {}
    assert not redis_server_clean.paused


def test_config_set_is_undone_for_the_next_test_first(redis_server_clean):
    redis_server_clean.config_set("maxmemory-policy", "allkeys-lru")
    with redis_server_clean.client(decode_responses=True) as c:
        c.execute_command("ACL", "SETUSER", "alkey-probe", "on", ">secret", "~*", "+@all")
        c.set("alkey:probe", "written")


def test_config_set_is_undone_for_the_next_test_second(redis_server_clean):
    admin = redis_server_clean.admin
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert admin.acl_users() == ["default"]
    assert admin.get("alkey:probe") is None


def test_locked_out_fixture_restarts_the_server_first(redis_server_clean):
    redis_server_clean.config_set("requirepass", "locked")
    redis_server_clean.admin.connection_pool.disconnect()
    with redis_server_clean.client() as c, pytest.raises(redis.AuthenticationError):
        c.ping()


def test_locked_out_fixture_restarts_the_server_second(redis_server_clean):
    with redis_server_clean.client() as c:
        assert c.ping()


def test_data_written_by_one_test(redis_server_clean):
    with redis_server_clean.client() as c:
        c.set("alkey:flush-probe", "left behind")
        assert c.dbsize() == 1


def test_is_flushed_before_the_next_test(redis_server_clean):
    with redis_server_clean.client() as c:
        assert c.get("alkey:flush-probe") is None
        assert c.dbsize() == 0
