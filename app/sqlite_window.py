"""A moving-window counter in SQLite, so the workers of one machine share failed-login counts without Redis.

It offers the three calls of `limits`' MovingWindowRateLimiter that app/throttle.py uses.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import NamedTuple

from limits import RateLimitItem

from storage_backends.per_process import PerProcess

# Rows are purged once they leave the window, so the table holds about a minute of failures; this caps it even under
# a flood (each row needs a failed KDF run first): past it the oldest rows go, which can only forget old failures.
MAX_ROWS = 200_000
TRIM_EVERY = 1024  # inserts between two looks at the table's size


class WindowStats(NamedTuple):
    """When the oldest counted hit leaves the window, and how many hits are left."""

    reset_time: float
    remaining: int


class SqliteMovingWindow:
    """Hits as rows (key, time); a key is over its limit while the window holds `amount` rows or more."""

    def __init__(self, path: str, timeout: float = 1.0) -> None:
        self.path = path
        self.timeout = timeout
        # One connection per thread and process: sqlite3 connections must not cross a fork or a thread.
        self._locals: PerProcess[threading.local] = PerProcess(threading.local)

    def _db(self) -> sqlite3.Connection:
        local = self._locals.get()
        if getattr(local, "db", None) is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS hits(key TEXT NOT NULL, at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS hits_by_key ON hits(key, at)")
            db.execute("CREATE INDEX IF NOT EXISTS hits_by_time ON hits(at)")
            local.db = db
        return local.db

    def _window(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> tuple[str, float, int, float | None]:
        key = item.key_for(*identifiers)
        since = time.time() - item.get_expiry()
        count, oldest = self._db().execute("SELECT count(*), min(at) FROM hits WHERE key = ? AND at > ?",
                                           (key, since)).fetchone()
        return key, since, count, oldest

    def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        """True while one more hit would stay within the limit."""
        return self._window(item, identifiers)[2] < item.amount

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Record a hit, and forget every hit that left the window (whatever its key: an attacker's one-off keys
        must not stay behind)."""
        key = item.key_for(*identifiers)
        db = self._db()
        self.purge(item.get_expiry())
        row = db.execute("INSERT INTO hits(key, at) VALUES (?, ?)", (key, time.time())).lastrowid
        if row and row % TRIM_EVERY == 0:
            db.execute("DELETE FROM hits WHERE rowid <= (SELECT max(rowid) FROM hits) - ?", (MAX_ROWS,))
        return True

    def purge(self, window: float = 60.0) -> int:
        """Delete the hits older than ``window`` seconds; return how many went."""
        return self._db().execute("DELETE FROM hits WHERE at <= ?", (time.time() - window,)).rowcount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """When the window frees a place, and how many places are left."""
        _, _, count, oldest = self._window(item, identifiers)
        reset = (oldest or time.time()) + item.get_expiry()
        return WindowStats(reset, max(0, item.amount - count))
