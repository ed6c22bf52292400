"""Replay protection: one entry per download link, created once and then changed only by compare-and-swap,
atomically, in SQLite (one host) or Redis (many hosts). What the entries mean is app/link_rules.py's business; a
store keeps opaque strings, so every store runs the same rules."""

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

from app.link_rules import BURNED
from storage_backends.per_process import PerProcess

# Entries outlive their token by this much: covers the whole last second of validity (itsdangerous compares
# whole seconds) and clock skew between the hosts that verify tokens and the store that expires entries.
DEFAULT_MARGIN = 60
# A token already expired when burned is rejected anyway, but its entry is still kept this long so that
# burn() never answers True twice in a row for one id.
EXPIRED_RETENTION = 60
# SQLite only: every this many burns in a process, expired rows are deleted in passing.
PURGE_EVERY = 1000
# `state` NULL: a burn written before resumable links (read as BURNED).
_SCHEMA = "CREATE TABLE IF NOT EXISTS burned(jti TEXT PRIMARY KEY, expires INTEGER NOT NULL, state TEXT) WITHOUT ROWID"
_REDIS_PREFIX = "burn:"
_REDIS_PING_KEY = "burn-ping"  # outside the "burn:" namespace, so it can never shadow a token id


class BurnListUnavailable(ConnectionError):
    """The burn-list cannot answer now (down, too slow, read-only, full): fail closed."""


class BurnList(Protocol):
    """What the download path needs from a replay store."""

    def burn(self, token_id: str, expires_at: int) -> bool:
        """Record `token_id` as BURNED; True only the first time, atomically across threads, processes and hosts."""
        ...

    def read(self, token_id: str) -> str | None:
        """The entry of `token_id`, None when there is none."""
        ...

    def swap(self, token_id: str, expected: str | None, new: str | None, expires_at: int,
             durable: bool = True) -> bool:
        """Replace the entry `expected` (None: no entry) by `new` (None: remove it), atomically; False (and nothing
        changed) when the entry is not `expected` any more. A new entry lives until the token expires (plus a
        margin); a changed one keeps its expiry. `durable=False`: the change may be lost if the machine loses
        power (never if a process dies), for bookkeeping that errs towards spent when lost."""
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
        self._locals: PerProcess[threading.local] = PerProcess(threading.local)
        self._burns = itertools.count(1)
        # Burns of one process are committed in groups by one thread at a time (see _GroupCommit); a group
        # inherited over fork might wait for a leader thread that is gone.
        self._groups: PerProcess[_GroupCommit] = PerProcess(_GroupCommit)

    def _connect(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it (and the schema) on first use in this process."""
        local = self._locals.get()
        connection = getattr(local, "connection", None)
        if connection is not None:
            return connection
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            self._use_wal(connection)
            # NORMAL may lose the last commit on power loss and so re-open a burned token.
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(_SCHEMA)
            _add_state_column(connection)
        except BaseException:
            connection.close()
            raise
        local.connection = connection
        return connection

    def _process_group(self) -> _GroupCommit:
        """The group of this process."""
        return self._groups.get()

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
        """Insert `token_id` as BURNED; an id already there means it was burned before."""
        return self.swap(token_id, None, BURNED, expires_at)

    def swap(self, token_id: str, expected: str | None, new: str | None, expires_at: int,
             durable: bool = True) -> bool:
        """New entries go in through the group commit; changes are one conditional statement (autocommit), without
        an fsync of their own when not `durable` (synchronous=NORMAL: in WAL mode a commit survives a process crash,
        only a power loss can undo it; measured: a settle per download with an fsync each halved token downloads)."""
        if expected is None:
            if new is None:
                raise ValueError("swap needs an entry to expect or one to write")
            return self._insert(token_id, new, expires_at)
        if new is None:
            sql, values = "DELETE FROM burned WHERE jti = ? AND coalesce(state, ?) = ?", (token_id, BURNED, expected)
        else:
            sql = "UPDATE burned SET state = ? WHERE jti = ? AND coalesce(state, ?) = ?"
            values = (new, token_id, BURNED, expected)
        try:
            connection = self._connect()
            # One writer per process at a time (the group's commits included): threads wait on a lock that wakes
            # them at once, not in SQLite's busy handler, whose sleeps grow to tens of milliseconds.
            with self._process_group().writing:
                if durable:
                    return connection.execute(sql, values).rowcount == 1
                connection.execute("PRAGMA synchronous=NORMAL")
                try:
                    return connection.execute(sql, values).rowcount == 1
                finally:
                    connection.execute("PRAGMA synchronous=FULL")
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _insert(self, token_id: str, state: str, expires_at: int) -> bool:
        """Insert an entry unless one is there (grouped with this process's other inserts in one commit)."""
        keep = _keep_until(expires_at, self._margin, self._clock())
        fresh = self._process_group().burn(token_id, keep, state, self._commit, self._timeout)
        if fresh and next(self._burns) % PURGE_EVERY == 0:
            try:
                self._delete_expired(self._connect())
            except (sqlite3.Error, OSError):
                pass  # the burn is committed; a later purge retries the housekeeping
        return fresh

    def _commit(self, batch: list[tuple[str, int, str]]) -> list[bool]:
        """Insert a group of (id, keep-until, state) with ONE fsync; True where the id was new.

        Ids burned before are found by a read (no write lock); the new ones go in by one statement in autocommit, so
        SQLite's write lock is held only inside that statement, never while this thread waits for the GIL between
        statements (measured under gunicorn: token downloads +65-85% req/s over BEGIN, INSERT per id, COMMIT). If
        another process burned one of them in between, the statement fails whole and the group goes row by row.
        """
        try:
            connection = self._connect()
            seen = self._burned_among(connection, [row[0] for row in batch])
            fresh, rows = [], []
            for row in batch:
                fresh.append(row[0] not in seen)
                if row[0] not in seen:
                    seen.add(row[0])  # the same id twice in one group: the first one burns it
                    rows.append(row)
            if rows:
                placeholders = ",".join(["(?, ?, ?)"] * len(rows))  # only placeholders: the values are bound
                try:
                    connection.execute(f"INSERT INTO burned(jti, expires, state) VALUES {placeholders}",  # noqa: S608
                                       [value for row in rows for value in row])
                except sqlite3.IntegrityError:
                    return self._commit_row_by_row(connection, batch)
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        return fresh

    @staticmethod
    def _burned_among(connection: sqlite3.Connection, token_ids: list[str]) -> set[str]:
        """Which of these ids are in the burn-list already."""
        query = f"SELECT jti FROM burned WHERE jti IN ({','.join('?' * len(token_ids))})"  # noqa: S608 - placeholders
        return {token_id for (token_id,) in connection.execute(query, token_ids)}

    @staticmethod
    def _commit_row_by_row(connection: sqlite3.Connection, batch: list[tuple[str, int, str]]) -> list[bool]:
        """The group in one transaction, one insert per id (the answer per id comes from each insert)."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            fresh = [connection.execute("INSERT OR IGNORE INTO burned(jti, expires, state) VALUES (?, ?, ?)",
                                        row).rowcount == 1
                     for row in batch]
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return fresh

    def _delete_expired(self, connection: sqlite3.Connection) -> int:
        """Delete rows whose retention has passed and return how many."""
        now = math.floor(self._clock())
        return connection.execute("DELETE FROM burned WHERE expires < ?", (now,)).rowcount

    def read(self, token_id: str) -> str | None:
        """The row's state (BURNED for a row written before states existed)."""
        try:
            row = self._connect().execute("SELECT coalesce(state, ?) FROM burned WHERE jti = ?",
                                          (BURNED, token_id)).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        return None if row is None else row[0]

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
                connection.execute("INSERT OR REPLACE INTO burned(jti, expires, state) VALUES ('', 0, NULL)")
            finally:
                connection.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Close the calling thread's connection, if it has one."""
        connection = self._locals.get().__dict__.pop("connection", None)
        if connection is not None:
            connection.close()


def _add_state_column(connection: sqlite3.Connection) -> None:
    """A burn-list file from before resumable links has no state column: add it (its rows stay burned)."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(burned)")}
    if "state" not in columns:
        try:
            connection.execute("ALTER TABLE burned ADD COLUMN state TEXT")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it first
                raise


class _GroupCommit:
    """Group commit: burns that arrive while a commit is in flight are written together by the next one.

    With synchronous=FULL every commit waits for an fsync (~1-2 ms), which bounds one-burn-per-commit to a few
    hundred burns per second per process; a group costs one fsync whatever its size. One thread at a time leads
    (commits a group); the others wait for their answer. This also keeps the threads of one process out of SQLite's
    busy handler, whose growing sleeps starved some for seconds when 16 threads contended there.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: list[_PendingBurn] = []
        self._leading = False
        self.writing = threading.Lock()  # held by whoever writes for this process: a group's commit or a change

    def burn(self, token_id: str, keep: int, state: str, commit: Callable[[list[tuple[str, int, str]]], list[bool]],
             timeout: float) -> bool:
        """Queue the burn, lead a commit when no one else does, and return its answer."""
        mine = _PendingBurn(token_id, keep, state)
        deadline = time.monotonic() + timeout
        with self._changed:
            self._pending.append(mine)
            while not mine.answered:
                if not self._leading:
                    self._leading = True
                    group, self._pending = self._pending, []
                    for burn in group:
                        burn.taken = True
                    break
                if mine.taken:
                    self._changed.wait()  # its commit is under way, bounded by SQLite's busy timeout
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._pending.remove(mine)  # nothing written for it yet: give up cleanly
                    raise BurnListUnavailable("SQLite burn-list: too many burns waiting")
                self._changed.wait(remaining)
            else:
                return mine.answer()
        try:
            with self.writing:
                self._lead(group, commit)
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()
        return mine.answer()

    @staticmethod
    def _lead(group: list[_PendingBurn], commit: Callable[[list[tuple[str, int, str]]], list[bool]]) -> None:
        """Commit one group and hand every member its answer (or the fault)."""
        try:
            answers = commit([(burn.token_id, burn.keep, burn.state) for burn in group])
            if len(answers) != len(group):
                raise BurnListUnavailable("SQLite burn-list: a commit answered for another number of burns")
        except BaseException as exc:
            # Every member must get an answer, whatever went wrong, or it would wait forever.
            error = exc if isinstance(exc, BurnListUnavailable) else BurnListUnavailable(f"SQLite burn-list: {exc!r}")
            for burn in group:  # one exception object per waiter: raised in several threads, tracebacks would pile up
                burn.error = BurnListUnavailable(str(error))
            if not isinstance(exc, Exception):
                raise
        else:
            for burn, fresh in zip(group, answers, strict=True):
                burn.fresh = fresh


class _PendingBurn:
    """One burn waiting in a group: its row, then its answer."""

    __slots__ = ("token_id", "keep", "state", "taken", "fresh", "error")

    def __init__(self, token_id: str, keep: int, state: str) -> None:
        self.token_id, self.keep, self.state = token_id, keep, state
        self.taken = False  # a leader is committing it
        self.fresh: bool | None = None
        self.error: BurnListUnavailable | None = None

    @property
    def answered(self) -> bool:
        return self.fresh is not None or self.error is not None

    def answer(self) -> bool:
        if self.error is not None:
            raise self.error
        assert self.fresh is not None
        return self.fresh


# KEYS[1]: the link; ARGV: the expected value, the new one, "1" to delete. The TTL set at creation is kept.
# Every write carries a deadline on the Redis host's clock (ARGV[1]): when its caller has given up waiting (a paused
# or overloaded Redis), it has answered 503 and streamed nothing, so a command Redis runs later from its socket
# buffer must change nothing: a claim landing then would spend a link nobody received a byte of. -1: too late.
_TOO_LATE = """
local now = redis.call('TIME')
if tonumber(now[1]) + tonumber(now[2]) / 1000000 > tonumber(ARGV[1]) then return -1 end
"""
_CLAIM_SCRIPT = _TOO_LATE + """
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3]) then return 1 end
return 0
"""
_SWAP_SCRIPT = _TOO_LATE + """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if ARGV[4] == '1' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL') end
return 1
"""
# How often a process measures again how far the Redis host's clock is from its own monotonic clock.
CLOCK_CHECK_EVERY = 60.0


class _RedisClock:
    """The Redis host's time as seen from this process: an offset to time.monotonic(), measured with TIME (half a
    round trip of uncertainty) and measured again every CLOCK_CHECK_EVERY seconds. Deadlines need no clock sync
    between hosts."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.measured = 0.0

    def now(self, client: redis.Redis) -> float:
        if self.offset is None or time.monotonic() - self.measured > CLOCK_CHECK_EVERY:
            before = time.monotonic()
            seconds, microseconds = client.time()
            after = time.monotonic()
            self.offset, self.measured = seconds + microseconds / 1e6 - (before + after) / 2, after
        return time.monotonic() + self.offset


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
        self._clients: PerProcess[redis.Redis] = PerProcess(self._new_client)
        self._scripts: PerProcess[tuple[redis.commands.core.Script, redis.commands.core.Script]] = PerProcess(
            lambda: (self._redis().register_script(_CLAIM_SCRIPT), self._redis().register_script(_SWAP_SCRIPT)))
        self._redis_clock: PerProcess[_RedisClock] = PerProcess(_RedisClock)

    def _redis(self) -> redis.Redis:
        """Return this process's client, created on first use (after any fork)."""
        return self._clients.get()

    def _new_client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            # redis-py retries 3 times with backoff by default, far past our timeout. One immediate
            # retry on a connection error replaces a pooled connection that died in a Redis restart.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )

    def burn(self, token_id: str, expires_at: int) -> bool:
        """SET NX the id to BURNED."""
        return self.swap(token_id, None, BURNED, expires_at)

    def swap(self, token_id: str, expected: str | None, new: str | None, expires_at: int,
             durable: bool = True) -> bool:
        """A new entry is SET NX with a relative TTL, a change a compare-and-swap: each one Lua script on the link's
        one key (so a Redis Cluster can shard the burn-list by link), which does nothing once the deadline of this
        call has passed on the Redis host (_TOO_LATE)."""
        if expected is None and new is None:
            raise ValueError("swap needs an entry to expect or one to write")
        key = _REDIS_PREFIX + token_id
        try:
            # The reply must be back before the socket timeout: Redis must not act later than this.
            deadline = self._redis_clock.get().now(self._redis()) + self._timeout * 0.75
            claim, change = self._scripts.get()
            if expected is None:
                # +1: a token is valid through the whole second expires_at.
                ttl = math.ceil(expires_at + 1 + self._margin - self._clock())
                answer = claim(keys=[key], args=[repr(deadline), new, ttl if ttl > 0 else EXPIRED_RETENTION])
            else:
                delete = new is None
                answer = change(keys=[key], args=[repr(deadline), expected, "" if delete else new,
                                                  "1" if delete else "0"])
        except redis.RedisError as exc:
            raise BurnListUnavailable(f"Redis burn-list: {exc}") from exc
        if answer == -1:
            raise BurnListUnavailable("Redis burn-list: answered too late, nothing written")
        return bool(answer)

    def read(self, token_id: str) -> str | None:
        """GET the id's key."""
        try:
            value = self._redis().get(_REDIS_PREFIX + token_id)
        except redis.RedisError as exc:
            raise BurnListUnavailable(f"Redis burn-list: {exc}") from exc
        return None if value is None else value.decode()

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
        client = self._clients.take()
        if client is not None:
            client.close()
