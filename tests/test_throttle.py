"""Failed-login throttling: per login and per address, shared through Redis, local when Redis is away."""

from __future__ import annotations

import socket

import pytest

from app.throttle import LoginThrottle


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


@pytest.mark.parametrize("blocked_by", ["login", "address"])
def test_more_than_the_limit_blocks(blocked_by):
    throttle = LoginThrottle("memory://", per_minute=3)
    for n in range(3):
        assert throttle.retry_after("alice", "10.0.0.1") is None
        if blocked_by == "login":
            throttle.failed("alice", f"10.0.0.{n + 10}")
        else:
            throttle.failed(f"user{n}", "10.0.0.1")
    retry = throttle.retry_after("alice", "10.0.0.1")
    assert retry is not None and 1 <= retry <= 60
    assert throttle.retry_after("bob", "10.0.0.2") is None


def test_counts_are_shared_through_redis(redis_server):
    first = LoginThrottle(redis_server.url, per_minute=2)
    second = LoginThrottle(redis_server.url, per_minute=2)
    first.failed("shared-user", "192.0.2.1")
    second.failed("shared-user", "192.0.2.2")
    assert first.retry_after("shared-user", "192.0.2.3") is not None


def test_redis_away_falls_back_to_local_counting():
    throttle = LoginThrottle(closed_port_url(), per_minute=1)
    assert throttle.retry_after("carol", "192.0.2.9") is None
    throttle.failed("carol", "192.0.2.9")
    assert throttle.retry_after("carol", "192.0.2.9") is not None


def test_sqlite_counts_are_shared_by_processes_of_one_machine(tmp_path):
    url = f"sqlite:///{tmp_path / 'failures.sqlite3'}"
    first, second = LoginThrottle(url, per_minute=2), LoginThrottle(url, per_minute=2)
    first.failed("dave", "192.0.2.1")
    assert second.retry_after("dave", "192.0.2.7") is None
    second.failed("dave", "192.0.2.2")
    retry = first.retry_after("dave", "192.0.2.3")
    assert retry is not None and 1 <= retry <= 60
    assert first.retry_after("erin", "192.0.2.4") is None


def test_sqlite_unusable_falls_back_to_local_counting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    throttle = LoginThrottle(f"sqlite:///{blocker}/failures.sqlite3", per_minute=1)
    throttle.failed("frank", "192.0.2.5")
    assert throttle.retry_after("frank", "192.0.2.5") is not None
