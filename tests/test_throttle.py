"""Failed-login throttling: per (login, address), per address, and per login only for addresses that failed; shared
through Redis or SQLite, local when the store is away."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest

from app import sqlite_window
from app import throttle as throttle_module
from app.throttle import ACCOUNT_FACTOR, LoginThrottle, purge_failures


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


@pytest.mark.parametrize("blocked_by", ["login-from-address", "address"])
def test_more_than_the_limit_blocks_the_address(blocked_by):
    throttle = LoginThrottle("memory://", per_minute=3)
    for n in range(3):
        assert throttle.retry_after("alice", "10.0.0.1") is None
        throttle.failed("alice" if blocked_by == "login-from-address" else f"user{n}", "10.0.0.1")
    retry = throttle.retry_after("alice", "10.0.0.1")
    assert retry is not None and 1 <= retry <= 60
    assert throttle.retry_after("bob", "10.0.0.2") is None


def test_an_attacker_on_one_address_never_locks_the_owner_out_on_another():
    """The review's finding: 10 wrong passwords from 127.0.0.2 locked alice out everywhere."""
    throttle = LoginThrottle("memory://", per_minute=10)
    for n in range(10):
        throttle.failed("alice", "127.0.0.2")
    assert throttle.retry_after("alice", "127.0.0.2") is not None
    assert throttle.retry_after("alice", "127.0.0.3") is None


def test_guessing_one_login_from_many_addresses_stays_bounded_and_spares_clean_addresses():
    throttle = LoginThrottle("memory://", per_minute=3)
    account_limit = 3 * ACCOUNT_FACTOR
    for n in range(account_limit):  # one guess from each of many addresses: under every per-address limit
        assert throttle.retry_after("alice", f"198.51.100.{n}") is None
        throttle.failed("alice", f"198.51.100.{n}")
    assert all(throttle.retry_after("alice", f"198.51.100.{n}") is not None for n in range(account_limit))
    assert throttle.retry_after("alice", "203.0.113.7") is None  # the owner's address, which never failed
    throttle.failed("alice", "203.0.113.8")  # a fresh address gets its one guess, then it is refused too
    assert throttle.retry_after("alice", "203.0.113.8") is not None
    assert throttle.retry_after("bob", "198.51.100.1") is None  # other accounts are not affected


def test_keys_have_a_fixed_size_and_expired_rows_go(tmp_path, monkeypatch):
    """Attacker-chosen logins neither grow the table with their length nor stay behind after their window."""
    path = tmp_path / "failures.sqlite3"
    throttle = LoginThrottle(f"sqlite:///{path}", per_minute=10)
    clock = [1_000_000.0]
    monkeypatch.setattr(sqlite_window.time, "time", lambda: clock[0])
    monkeypatch.setattr(throttle_module.time, "time", lambda: clock[0])
    for n in range(5):
        throttle.failed("x" * 5800 + str(n), "192.0.2.1")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT max(length(key)) FROM hits").fetchone()[0] < 120
        assert db.execute("SELECT count(*) FROM hits").fetchone()[0] == 15
    clock[0] += 61
    throttle.failed("someone else", "192.0.2.2")  # any later failure purges every expired row
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM hits").fetchone()[0] == 3


def test_purge_failures_removes_rows_that_left_the_window(tmp_path):
    burnlist_url = f"sqlite:///{tmp_path / 'burnlist.sqlite3'}"
    LoginThrottle(f"sqlite:///{tmp_path / 'login-failures.sqlite3'}", per_minute=10).failed("a", "192.0.2.1")
    assert purge_failures(burnlist_url) == 0
    with sqlite3.connect(tmp_path / "login-failures.sqlite3") as db:
        db.execute("UPDATE hits SET at = ?", (time.time() - 120,))
    assert purge_failures(burnlist_url) == 3
    assert purge_failures("redis://127.0.0.1:1/0") == 0  # Redis expires its own keys


def test_the_table_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_window, "MAX_ROWS", 50)
    monkeypatch.setattr(sqlite_window, "TRIM_EVERY", 10)
    path = tmp_path / "failures.sqlite3"
    throttle = LoginThrottle(f"sqlite:///{path}", per_minute=1000)
    for n in range(60):
        throttle.failed(f"user{n}", f"192.0.2.{n}")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM hits").fetchone()[0] <= 50 + 10 * 3


def test_counts_are_shared_through_redis(redis_server):
    first = LoginThrottle(redis_server.url, per_minute=2)
    second = LoginThrottle(redis_server.url, per_minute=2)
    first.failed("shared-user", "192.0.2.1")
    second.failed("shared-user", "192.0.2.1")
    assert first.retry_after("shared-user", "192.0.2.1") is not None
    assert second.retry_after("shared-user", "192.0.2.3") is None


def test_redis_away_falls_back_to_local_counting():
    throttle = LoginThrottle(closed_port_url(), per_minute=1)
    assert throttle.retry_after("carol", "192.0.2.9") is None
    throttle.failed("carol", "192.0.2.9")
    assert throttle.retry_after("carol", "192.0.2.9") is not None


def test_sqlite_counts_are_shared_by_processes_of_one_machine(tmp_path):
    url = f"sqlite:///{tmp_path / 'failures.sqlite3'}"
    first, second = LoginThrottle(url, per_minute=2), LoginThrottle(url, per_minute=2)
    first.failed("dave", "192.0.2.1")
    assert second.retry_after("dave", "192.0.2.1") is None
    second.failed("erin", "192.0.2.1")
    retry = first.retry_after("frank", "192.0.2.1")  # the address's two failures, counted by two processes
    assert retry is not None and 1 <= retry <= 60
    assert first.retry_after("erin", "192.0.2.4") is None


def test_sqlite_unusable_falls_back_to_local_counting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    throttle = LoginThrottle(f"sqlite:///{blocker}/failures.sqlite3", per_minute=1)
    throttle.failed("frank", "192.0.2.5")
    assert throttle.retry_after("frank", "192.0.2.5") is not None
