"""Replay protection: each token id burns once, atomically, in SQLite (one host) or Redis (many hosts)."""

from __future__ import annotations

import itertools
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Entries outlive their token by this much: covers the whole last second of validity (itsdangerous compares
# whole seconds) and clock skew between the hosts that verify tokens and the store that expires entries.
DEFAULT_MARGIN = 60
# A token already expired when burned is rejected anyway, but its entry is still kept this long so that
# burn() never answers True twice in a row for one id.
EXPIRED_RETENTION = 60
# SQLite only: every this many burns in a process, expired rows are deleted in passing.
PURGE_EVERY = 1000
_SCHEMA = "CREATE TABLE IF NOT EXISTS burned(jti TEXT PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID"
_REDIS_PREFIX = "burn:"
_REDIS_PING_KEY = "burn-ping"  # outside the "burn:" namespace, so it can never shadow a token id
# SQLite connections inherited over fork, kept referenced so that they are never finalized (closed) in the
# child: SQLite forbids using a connection across fork, and closing one could disturb the parent's locks.
_INHERITED: list[sqlite3.Connection] = []


class BurnListUnavailable(ConnectionError):
    """The burn-list cannot answer now (down, too slow, read-only, full): fail closed."""


class BurnList(Protocol):
    """What the download path needs from a replay store."""

    def burn(self, token_id: str, expires_at: int) -> bool:
        """Record `token_id`; True only the first time, atomically across threads, processes and hosts."""
        ...

    def purge(self) -> int:
        """Remove expired entries and return how many were removed."""
        ...

    def ping(self) -> None:
        """Raise BurnListUnavailable unless the store is reachable and writable."""
        ...


def open_burnlist(url: str, timeout: float = 2.0, *, margin: int = DEFAULT_MARGIN) -> BurnList:
    """Return the burn-list named by `url`: sqlite:////abs/path.db, sqlite:///relative.db, redis://, rediss://."""
    if timeout <= 0:
        raise ValueError(f"burn-list timeout must be positive, got {timeout!r}")
    if url.startswith("sqlite:///"):
        return SqliteBurnList(_sqlite_path(url), timeout=timeout, margin=margin)
    if url.startswith(("redis://", "rediss://")):
        return RedisBurnList(url, timeout=timeout, margin=margin)
    raise ValueError(
        f"unsupported burn-list URL {url.split('://')[0]!r}: use sqlite:////abs/path.db, redis:// or rediss://"
    )


def _sqlite_path(url: str) -> str:
    """Return the absolute file path of a sqlite:/// URL (relative paths resolve against the cwd, once)."""
    path = url[len("sqlite:///") :]
    # An in-memory or query-string database would be private to one connection: no replay protection.
    if not path or path == ":memory:" or "?" in path or "#" in path or path.startswith("file:"):
        raise ValueError(f"burn-list URL needs a file path, e.g. sqlite:////var/lib/pkgdl/burn.db: {url!r}")
    return os.path.abspath(path)


def _keep_until(expires_at: int, margin: int, now: float) -> int:
    """Return the unix second after which an entry for a token expiring at `expires_at` may go."""
    keep = expires_at + margin
    return keep if keep >= now else math.floor(now) + EXPIRED_RETENTION


class SqliteBurnList:
    """Burn-list in one SQLite file (WAL, synchronous=FULL): safe across threads and processes of one host.

    WAL relies on shared memory, so the file must be on a local filesystem, never NFS or SMB.
    """

    def __init__(
        self,
        path: str,
        timeout: float = 2.0,
        margin: int = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._timeout = timeout
        self._margin = margin
        self._clock = clock
        # One connection per thread and per process: sqlite3 connections must not cross threads or a fork.
        self._local = threading.local()
        self._burns = itertools.count(1)
        # Threads of one process take turns before SQLite sees them: its busy handler sleeps with growing back-off,
        # so 16 threads contending inside SQLite starve some for seconds (measured: p99 ~100 ms, some "database is
        # locked" after the 2 s timeout); with this lock only the worker processes contend there.
        self._writer = threading.Lock()
        self._writer_pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it (and the schema) on first use in this process."""
        pid = os.getpid()
        if getattr(self._local, "pid", None) == pid:
            return self._local.connection
        inherited = self._local.__dict__.pop("connection", None)
        if inherited is not None:
            _INHERITED.append(inherited)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            self._use_wal(connection)
            # NORMAL may lose the last commit on power loss and so re-open a burned token.
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        self._local.pid, self._local.connection = pid, connection
        return connection

    def _process_writer_lock(self) -> threading.Lock:
        """The writer lock of this process (a lock inherited over fork might be held by a thread that is gone)."""
        if self._writer_pid != os.getpid():
            self._writer, self._writer_pid = threading.Lock(), os.getpid()
        return self._writer

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL (a persistent setting), retrying while other first-time openers hold it."""
        deadline = time.monotonic() + self._timeout
        while connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                # This switch fails at once with "database is locked" instead of waiting for busy_timeout.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _unavailable(self, exc: Exception) -> BurnListUnavailable:
        """Drop this thread's connection (the next call reopens it) and describe the fault."""
        self.close()
        return BurnListUnavailable(f"SQLite burn-list {self.path}: {exc}")

    def burn(self, token_id: str, expires_at: int) -> bool:
        """Insert `token_id`; a primary-key conflict means it was burned before."""
        keep = _keep_until(expires_at, self._margin, self._clock())
        writer = self._process_writer_lock()
        if not writer.acquire(timeout=self._timeout):
            raise BurnListUnavailable(f"SQLite burn-list {self.path}: too many burns waiting")
        try:
            connection = self._connect()
            connection.execute("INSERT INTO burned(jti, expires) VALUES (?, ?)", (token_id, keep))
        except sqlite3.IntegrityError:
            return False
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        finally:
            writer.release()
        if next(self._burns) % PURGE_EVERY == 0:
            try:
                self._delete_expired(connection)
            except sqlite3.Error:
                pass  # the burn is committed; a later purge retries the housekeeping
        return True

    def _delete_expired(self, connection: sqlite3.Connection) -> int:
        """Delete rows whose retention has passed and return how many."""
        now = math.floor(self._clock())
        return connection.execute("DELETE FROM burned WHERE expires < ?", (now,)).rowcount

    def purge(self) -> int:
        """Delete expired rows and return how many."""
        try:
            return self._delete_expired(self._connect())
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc

    def ping(self) -> None:
        """Write a row and roll it back: a read-only file grants BEGIN IMMEDIATE, only a write fails."""
        try:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                # "" is never a token id (those are 22 characters); the rollback discards it anyway.
                connection.execute("INSERT OR REPLACE INTO burned(jti, expires) VALUES ('', 0)")
            finally:
                connection.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Close the calling thread's connection, if it has one."""
        pid, connection = self._local.__dict__.pop("pid", None), self._local.__dict__.pop("connection", None)
        if connection is not None:
            if pid == os.getpid():
                connection.close()
            else:
                _INHERITED.append(connection)


class RedisBurnList:
    """Burn-list in Redis (`SET NX` with expiry): one answer for every process on every host."""

    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        margin: int = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._margin = margin
        self._clock = clock
        # (pid, client) in one attribute, so a thread never pairs a fresh pid with an inherited client.
        self._owned: tuple[int, redis.Redis] | None = None
        self._lock = threading.Lock()

    def _redis(self) -> redis.Redis:
        """Return this process's client, created on first use (after any fork)."""
        pid = os.getpid()
        owned = self._owned
        if owned is not None and owned[0] == pid:
            return owned[1]
        with self._lock:
            if self._owned is None or self._owned[0] != pid:
                client = redis.Redis.from_url(
                    self.url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    # redis-py retries 3 times with backoff by default, far past our timeout. One immediate
                    # retry on a connection error replaces a pooled connection that died in a Redis restart.
                    retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                )
                self._owned = (pid, client)
            return self._owned[1]

    def burn(self, token_id: str, expires_at: int) -> bool:
        """SET NX the id; the TTL is relative so that the Redis host's clock plays no part."""
        now = self._clock()
        # +1: a token is valid through the whole second expires_at.
        ttl = math.ceil(expires_at + 1 + self._margin - now)
        if ttl <= 0:
            ttl = EXPIRED_RETENTION
        try:
            return bool(self._redis().set(_REDIS_PREFIX + token_id, 1, nx=True, ex=ttl))
        except redis.RedisError as exc:
            raise BurnListUnavailable(f"Redis burn-list: {exc}") from exc

    def purge(self) -> int:
        """Nothing to do: Redis expires the keys itself."""
        return 0

    def ping(self) -> None:
        """Write a short-lived key: PING alone succeeds on a read-only replica or a full server."""
        try:
            self._redis().set(_REDIS_PING_KEY, os.getpid(), ex=60)
        except redis.RedisError as exc:
            raise BurnListUnavailable(f"Redis burn-list: {exc}") from exc

    def close(self) -> None:
        """Close this process's connections."""
        with self._lock:
            owned, self._owned = self._owned, None
        if owned is not None and owned[0] == os.getpid():
            owned[1].close()
