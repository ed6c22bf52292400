"""One contract for every burn-list store (SQLite file, real Redis), then each store's own faults."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import app.burnlist
from app.burnlist import (
    BURNED,
    EXPIRED_RETENTION,
    BurnList,
    BurnListUnavailable,
    RedisBurnList,
    SqliteBurnList,
    open_burnlist,
)
from deploy.processes import paused

FAR = int(time.time()) + 86400
BACKENDS = ["sqlite", "redis"]


def fresh_id() -> str:
    """A token id as TokenService makes them, so stores never share state between tests."""
    return secrets.token_urlsafe(16)


def wait_until(condition: Callable[[], bool], timeout: float = 6.0) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.integration) if name == "redis" else name
                        for name in BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'burnlist.sqlite3'}"
    return request.getfixturevalue("redis_server").url


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[..., BurnList]]:
    """Open burn-lists on the test's store, closing them afterwards."""
    opened: list[BurnList] = []

    def open_(**options: object) -> BurnList:
        burnlist = open_burnlist(store_url, **options)  # type: ignore[arg-type]
        opened.append(burnlist)
        return burnlist

    yield open_
    for burnlist in opened:
        burnlist.close()  # type: ignore[attr-defined]


@pytest.fixture
def burnlist(open_store: Callable[..., BurnList]) -> BurnList:
    return open_store()


# --- the contract, for every store ---------------------------------------------------------------


def test_first_burn_wins_and_every_later_one_loses(burnlist: BurnList) -> None:
    token_id = fresh_id()
    assert burnlist.burn(token_id, FAR) is True
    assert burnlist.burn(token_id, FAR) is False
    assert burnlist.burn(token_id, FAR) is False


def test_swap_changes_an_entry_only_from_the_expected_value(burnlist: BurnList) -> None:
    """Compare-and-swap: create when absent, change or remove only what the caller last saw."""
    token_id, other = fresh_id(), fresh_id()
    assert burnlist.swap(token_id, None, "a", FAR) is True
    assert burnlist.swap(token_id, None, "b", FAR) is False  # already there
    assert burnlist.swap(token_id, "b", "c", FAR) is False  # not what is there
    assert burnlist.read(token_id) == "a"
    assert burnlist.swap(token_id, "a", "c", FAR) is True
    assert burnlist.read(token_id) == "c"
    assert burnlist.swap(other, None, "x", FAR) is True
    assert burnlist.swap(token_id, "a", None, FAR) is False
    assert burnlist.swap(token_id, "c", None, FAR) is True  # removed: the link is unused again
    assert burnlist.read(token_id) is None
    assert burnlist.burn(token_id, FAR) is True
    assert burnlist.read(token_id) == BURNED
    assert burnlist.read(other) == "x"  # other entries untouched


def test_swap_refuses_to_expect_and_write_nothing(burnlist: BurnList) -> None:
    with pytest.raises(ValueError):
        burnlist.swap(fresh_id(), None, None, FAR)


def test_a_change_keeps_the_entry_expiry(backend: str, open_store: Callable[..., BurnList]) -> None:
    """An entry lives as long as its token, however often it changes."""
    now = [time.time()]
    store = open_store(margin=0)
    store._clock = lambda: now[0]  # type: ignore[attr-defined]
    token_id = fresh_id()
    assert store.swap(token_id, None, "a", int(now[0]) + 2)
    assert store.swap(token_id, "a", "b", int(now[0]) + 3600)
    if backend == "redis":
        assert wait_until(lambda: store.read(token_id) is None, timeout=8)
    else:
        now[0] += 4
        assert store.purge() >= 1
        assert store.read(token_id) is None


def test_read_reads_without_burning(burnlist: BurnList) -> None:
    token_id = fresh_id()
    assert burnlist.read(token_id) is None
    assert burnlist.read(token_id) is None  # reading twice burned nothing
    assert burnlist.burn(token_id, FAR) is True
    assert burnlist.read(token_id) == BURNED


def test_ids_are_independent(burnlist: BurnList) -> None:
    first, second = fresh_id(), fresh_id()
    assert burnlist.burn(first, FAR) is True
    assert burnlist.burn(second, FAR) is True
    assert burnlist.burn(first, FAR) is False


def test_a_second_handle_on_the_same_store_sees_the_burn(open_store: Callable[..., BurnList]) -> None:
    token_id = fresh_id()
    assert open_store().burn(token_id, FAR) is True
    assert open_store().burn(token_id, FAR) is False


def test_twenty_threads_racing_on_one_id_get_one_true(burnlist: BurnList) -> None:
    for _ in range(5):
        token_id, barrier, results = fresh_id(), threading.Barrier(20), []

        def race(token_id: str = token_id, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=10)
            results.append(burnlist.burn(token_id, FAR))

        threads = [threading.Thread(target=race) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == [False] * 19 + [True]


def _burn_all(burnlist: BurnList | str, token_ids: list[str], start: object, results: object) -> None:
    """Child process body: wait for the start signal, burn every id, report (id, won) pairs."""
    if isinstance(burnlist, str):
        burnlist = open_burnlist(burnlist)
    token_ids = random.sample(token_ids, len(token_ids))
    start.wait(30)  # type: ignore[attr-defined]
    results.put([(token_id, burnlist.burn(token_id, FAR)) for token_id in token_ids])  # type: ignore[attr-defined]


def _race_processes(method: str, target: BurnList | str, processes: int = 4, ids: int = 25) -> dict[str, int]:
    """Burn the same ids from several processes at once; return how many processes won each id."""
    context = multiprocessing.get_context(method)
    token_ids = [fresh_id() for _ in range(ids)]
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_burn_all, args=(target, token_ids, start, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    wins = dict.fromkeys(token_ids, 0)
    for outcome in outcomes:
        for token_id, won in outcome:
            wins[token_id] += won
    return wins


def test_four_spawned_processes_racing_get_one_true_per_id(store_url: str) -> None:
    wins = _race_processes("spawn", store_url)
    assert set(wins.values()) == {1}


def test_forked_processes_open_their_own_connections(burnlist: BurnList) -> None:
    # The parent's connection exists before the fork; children must not reuse it (gunicorn preload_app).
    before = fresh_id()
    assert burnlist.burn(before, FAR) is True
    wins = _race_processes("fork", burnlist)
    assert set(wins.values()) == {1}
    assert burnlist.burn(before, FAR) is False
    assert burnlist.burn(fresh_id(), FAR) is True


def test_entries_outlive_their_token_then_go(backend: str, open_store: Callable[..., BurnList]) -> None:
    burnlist = open_store(margin=0)
    token_id = fresh_id()
    expires_at = int(time.time()) + 1
    assert burnlist.burn(token_id, expires_at) is True
    burnlist.purge()
    assert burnlist.burn(token_id, expires_at) is False  # the token is still valid, so is its entry
    purged = []

    def gone() -> bool:
        purged.append(burnlist.purge())
        return burnlist.burn(token_id, expires_at) is True

    assert wait_until(gone), "entry still present several seconds after its token expired"
    assert sum(purged) >= (1 if backend == "sqlite" else 0)


def test_an_already_expired_token_is_still_recorded(burnlist: BurnList) -> None:
    token_id = fresh_id()
    expired = int(time.time()) - 1000
    assert burnlist.burn(token_id, expired) is True
    burnlist.purge()
    assert burnlist.burn(token_id, expired) is False


def test_purge_keeps_live_entries(burnlist: BurnList) -> None:
    token_id = fresh_id()
    burnlist.burn(token_id, FAR)
    assert burnlist.purge() == 0  # nothing expired here (Redis expires keys itself: always 0)
    assert burnlist.burn(token_id, FAR) is False


def test_ping_passes_on_a_healthy_store(burnlist: BurnList) -> None:
    burnlist.ping()


# --- opening ----------------------------------------------------------------------------------------------


def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_burnlist("sqlite:////srv/pkgdl/burn.db")
    assert isinstance(absolute, SqliteBurnList)
    assert absolute.path == "/srv/pkgdl/burn.db"  # lazy: nothing is created until the first burn
    monkeypatch.chdir(tmp_path)
    relative = open_burnlist("sqlite:///var/burn.db")
    monkeypatch.chdir("/")
    assert isinstance(relative, SqliteBurnList)
    assert relative.path == str(tmp_path / "var" / "burn.db")  # resolved once, at open time
    assert relative.burn(fresh_id(), FAR) is True
    assert (tmp_path / "var" / "burn.db").exists()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis://:secret@cache:6379/2", "rediss://cache:6380/0"])
def test_redis_urls_open_lazily(url: str) -> None:
    assert isinstance(open_burnlist(url), RedisBurnList)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///burn.db?mode=ro",
        "sqlite:///file:burn.db",
        "sqlite://host/burn.db",
        "SQLITE:////burn.db",
        "/var/lib/pkgdl/burn.db",
        "postgresql://db/pkgdl",
        "memory://",
        "unix:///run/redis.sock",
        "http://127.0.0.1:6379",
    ],
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        open_burnlist(url)


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        open_burnlist(f"sqlite:///{tmp_path}/b.db", timeout=0)


# --- SQLite specifics -------------------------------------------------------------------------------------


class FrozenClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sqlite_settings_and_schema(tmp_path: Path) -> None:
    burnlist = SqliteBurnList(str(tmp_path / "b.db"))
    burnlist.burn(fresh_id(), FAR)
    connection = burnlist._connect()
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert connection.execute("PRAGMA busy_timeout").fetchone() == (2000,)
    (schema,) = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'burned'").fetchone()
    assert "WITHOUT ROWID" in schema
    burnlist.close()


def test_sqlite_file_from_before_resumable_links_keeps_its_burns(tmp_path: Path) -> None:
    """A burn-list written by the previous release (no state column): its burns read as spent, new links work."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE burned(jti TEXT PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID")
        old.execute("INSERT INTO burned VALUES ('old-burn', ?)", (FAR,))
    burnlist = SqliteBurnList(str(path))
    assert burnlist.read("old-burn") == BURNED
    assert burnlist.burn("old-burn", FAR) is False
    assert burnlist.swap("new-link", None, '{"x":1}', FAR) is True
    assert burnlist.swap("new-link", '{"x":1}', '{"x":2}', FAR) is True
    assert burnlist.read("new-link") == '{"x":2}'
    assert SqliteBurnList(str(path)).read("old-burn") == BURNED  # a second opener finds the column there
    burnlist.close()


@pytest.mark.integration
def test_redis_burn_from_before_resumable_links_reads_as_burned(redis_server: object,
                                                                 redis_admin: redis.Redis) -> None:
    token_id = fresh_id()
    redis_admin.set("burn:" + token_id, 1, ex=600)  # what the previous release wrote
    burnlist = open_burnlist(redis_server.url)  # type: ignore[attr-defined]
    assert burnlist.read(token_id) == BURNED
    assert burnlist.burn(token_id, FAR) is False


def test_sqlite_keeps_rows_for_a_margin_past_expiry(tmp_path: Path) -> None:
    burnlist = SqliteBurnList(str(tmp_path / "b.db"), clock=FrozenClock(1_000))
    burnlist.burn("live", 5_000)
    burnlist.burn("expired", 500)
    rows = dict(burnlist._connect().execute("SELECT jti, expires FROM burned"))
    assert rows == {"live": 5_000 + app.burnlist.DEFAULT_MARGIN, "expired": 1_000 + EXPIRED_RETENTION}
    burnlist.close()


def test_sqlite_purges_in_passing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.burnlist, "PURGE_EVERY", 3)
    clock = FrozenClock(1_000)
    burnlist = SqliteBurnList(str(tmp_path / "b.db"), margin=0, clock=clock)
    burnlist.burn("old-1", 1_001)
    burnlist.burn("old-2", 1_001)
    clock.now = 1_002
    count = burnlist._connect().execute("SELECT count(*) FROM burned")
    assert count.fetchone() == (2,)
    burnlist.burn("new", 9_999)  # the third burn also deletes what expired
    assert [jti for (jti,) in burnlist._connect().execute("SELECT jti FROM burned")] == ["new"]
    assert burnlist.purge() == 0
    burnlist.close()


def test_sqlite_purge_boundary(tmp_path: Path) -> None:
    clock = FrozenClock(1_000)
    burnlist = SqliteBurnList(str(tmp_path / "b.db"), margin=0, clock=clock)
    burnlist.burn("edge", 1_010)
    clock.now = 1_010.9  # a token expiring at 1_010 is still valid during second 1_010
    assert burnlist.purge() == 0
    clock.now = 1_011
    assert burnlist.purge() == 1
    burnlist.close()


def test_sqlite_one_connection_per_thread(tmp_path: Path) -> None:
    burnlist = SqliteBurnList(str(tmp_path / "b.db"))
    seen: list[object] = []  # the connections themselves: a freed object's id() can be reused

    def use() -> None:
        burnlist.burn(fresh_id(), FAR)
        seen.append(burnlist._connect())
        burnlist.close()

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    burnlist.burn(fresh_id(), FAR)
    assert len({id(connection) for connection in seen}) == 3


def test_sqlite_many_first_openers_of_a_new_file(tmp_path: Path) -> None:
    # Switching a new file to WAL can fail at once (no busy wait) while another connection is doing it;
    # unfixed, about one round in 150 lost a burn, so this catches a regression sometimes, not always.
    for attempt in range(20):
        burnlist = SqliteBurnList(str(tmp_path / f"b{attempt}.db"))
        barrier, errors = threading.Barrier(20), []

        def open_and_burn(burnlist: SqliteBurnList = burnlist, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=10)
            try:
                burnlist.burn(fresh_id(), FAR)
            except BurnListUnavailable as exc:
                errors.append(exc)
            finally:
                burnlist.close()

        threads = [threading.Thread(target=open_and_burn) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []


def test_sqlite_locked_past_the_timeout_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    burnlist = SqliteBurnList(str(path), timeout=0.3)
    burnlist.burn(fresh_id(), FAR)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holding the write lock, e.g. a stuck purge
    try:
        started = time.monotonic()
        with pytest.raises(BurnListUnavailable, match="locked"):
            burnlist.burn(fresh_id(), FAR)
        assert time.monotonic() - started < 3.0  # bounded by the 0.3 s timeout, with room for a loaded machine
        with pytest.raises(BurnListUnavailable):
            burnlist.ping()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert burnlist.burn(fresh_id(), FAR) is True
    burnlist.ping()
    burnlist.close()


class _HeldFirstCommit:
    """Wraps a SqliteBurnList's group commit: records each group, holds the first one until released."""

    def __init__(self, burnlist: SqliteBurnList) -> None:
        self.groups: list[list[str]] = []
        self.first_started, self.release = threading.Event(), threading.Event()
        self._commit = burnlist._commit
        burnlist._commit = self  # type: ignore[method-assign]

    def __call__(self, batch: list[tuple[str, int, str]]) -> list[bool]:
        self.groups.append([row[0] for row in batch])
        if len(self.groups) == 1:
            self.first_started.set()
            assert self.release.wait(timeout=10)
        return self._commit(batch)


def _burn_in_threads(burnlist: SqliteBurnList, token_ids: list[str]) -> tuple[list[threading.Thread], dict]:
    results: dict[int, bool | BaseException] = {}

    def burn(index: int, token_id: str) -> None:
        try:
            results[index] = burnlist.burn(token_id, FAR)
        except BurnListUnavailable as exc:
            results[index] = exc

    threads = [threading.Thread(target=burn, args=pair) for pair in enumerate(token_ids)]
    for thread in threads:
        thread.start()
    return threads, results


def _waiting(burnlist: SqliteBurnList, count: int) -> bool:
    return wait_until(lambda: len(burnlist._process_group()._pending) == count)


def test_sqlite_burns_arriving_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    burnlist = SqliteBurnList(str(tmp_path / "b.db"))
    held = _HeldFirstCommit(burnlist)
    first, results = _burn_in_threads(burnlist, ["first"])
    assert held.first_started.wait(timeout=10)
    ids = [fresh_id() for _ in range(8)] + ["twice", "twice"]
    queued, queued_results = _burn_in_threads(burnlist, ids)
    assert _waiting(burnlist, len(ids))
    held.release.set()
    for thread in first + queued:
        thread.join(timeout=10)
    assert held.groups[0] == ["first"] and sorted(held.groups[1]) == sorted(ids)  # one fsync for all ten
    assert len(held.groups) == 2
    assert results == {0: True}
    assert [queued_results[index] for index in range(8)] == [True] * 8
    assert sorted([queued_results[8], queued_results[9]]) == [False, True]  # the same id twice in one group
    rows = burnlist._connect().execute("SELECT count(*) FROM burned").fetchone()[0]
    assert rows == 10
    burnlist.close()


def test_sqlite_a_failed_group_answers_every_member_and_writes_nothing(tmp_path: Path) -> None:
    burnlist = SqliteBurnList(str(tmp_path / "b.db"), timeout=0.3)
    burnlist.purge()  # the file exists in WAL mode: the group fails at its insert, not while opening the file
    held = _HeldFirstCommit(burnlist)
    first, _ = _burn_in_threads(burnlist, ["first"])
    assert held.first_started.wait(timeout=10)
    ids = [fresh_id() for _ in range(5)]
    queued, results = _burn_in_threads(burnlist, ids)
    assert _waiting(burnlist, len(ids))
    writer = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the group's commit will find the file locked
    try:
        held.release.set()
        for thread in first + queued:
            thread.join(timeout=10)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert all(isinstance(results[index], BurnListUnavailable) for index in range(len(ids)))
    assert [burnlist.burn(token_id, FAR) for token_id in ids] == [True] * len(ids)  # none was burned
    burnlist.close()


def test_sqlite_a_burn_never_taken_into_a_group_gives_up_at_its_timeout(tmp_path: Path) -> None:
    burnlist = SqliteBurnList(str(tmp_path / "b.db"), timeout=0.3)
    held = _HeldFirstCommit(burnlist)
    first, _ = _burn_in_threads(burnlist, ["first"])
    assert held.first_started.wait(timeout=10)
    started = time.monotonic()
    with pytest.raises(BurnListUnavailable, match="waiting"):
        burnlist.burn("late", FAR)
    assert time.monotonic() - started < 3.0
    assert burnlist._process_group()._pending == []  # it left the queue: no later group writes it
    held.release.set()
    for thread in first:
        thread.join(timeout=10)
    assert burnlist.burn("late", FAR) is True
    burnlist.close()


def test_sqlite_an_id_burned_by_another_process_between_read_and_insert(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    burnlist = SqliteBurnList(str(tmp_path / "b.db"))
    other = SqliteBurnList(str(tmp_path / "b.db"))
    assert other.burn("raced", FAR) is True
    # The read saw nothing (the other process had not committed yet); the one-statement insert then conflicts.
    monkeypatch.setattr(SqliteBurnList, "_burned_among", staticmethod(lambda connection, token_ids: set()))
    fresh = fresh_id()
    batch = [(fresh, FAR, BURNED), ("raced", FAR, BURNED), (fresh, FAR, BURNED)]
    assert burnlist._commit(batch) == [True, False, False]
    rows = dict(burnlist._connect().execute("SELECT jti, expires FROM burned"))
    assert set(rows) == {fresh, "raced"}
    burnlist.close()
    other.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that an unprivileged user can reach (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="pkgdl-burnlist-"))
    directory.chmod(0o755)
    yield directory
    subprocess.run(["chattr", "-R", "-i", str(directory)], capture_output=True, check=False)
    directory.chmod(0o755)
    shutil.rmtree(directory)


def _read_only_probe(path: Path, burned: str) -> dict[str, object]:
    """Check that the file is still readable, then try every writing call; return what happened."""
    # immutable=1 reads without the -shm file, which a read-only directory would not let us create.
    reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    readable = reader.execute("SELECT count(*) FROM burned WHERE jti = ?", (burned,)).fetchone() == (1,)
    reader.close()
    burnlist = SqliteBurnList(str(path), timeout=0.5)
    outcome: dict[str, object] = {"readable": readable}
    for name, call in [("burn", lambda: burnlist.burn(fresh_id(), FAR)), ("ping", burnlist.ping)]:
        try:
            call()
            outcome[name] = "ok"
        except BurnListUnavailable as exc:
            outcome[name] = f"unavailable: {exc}"
    return outcome


def _probe_as_nobody(path: Path, burned: str) -> dict[str, object]:
    """Run the probe in a forked child that dropped root, the way a service user meets a root-owned file."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            report = _read_only_probe(path, burned)
        except BaseException as exc:  # noqa: BLE001 - anything must reach the parent
            report = {"error": repr(exc)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read()
    os.waitpid(child, 0)
    return json.loads(report)


@pytest.mark.parametrize("method", ["immutable", "permissions"])
def test_sqlite_read_only_file_is_unavailable(shared_dir: Path, method: str) -> None:
    # Tests often run as root, for whom chmod 0444 changes nothing. Two real ways to a read-only file:
    # "immutable" sets chattr +i (refused even to root, when the filesystem supports it); "permissions"
    # chmods file and directory and probes from a child that dropped root to nobody (or as is, if not root).
    path = shared_dir / "burn.db"
    seed = SqliteBurnList(str(path))
    burned = fresh_id()
    assert seed.burn(burned, FAR) is True
    seed.close()  # the last close checkpoints the WAL into the file
    if method == "immutable":
        if os.geteuid() != 0:
            pytest.skip("chattr +i needs root")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i not supported here: {done.stderr.strip()}")
        outcome = _read_only_probe(path, burned)
    else:
        path.chmod(0o444)
        shared_dir.chmod(0o555)
        outcome = _probe_as_nobody(path, burned) if os.geteuid() == 0 else _read_only_probe(path, burned)
    assert outcome.get("readable") is True, outcome  # so the failures below come from writing, not opening
    assert str(outcome["burn"]).startswith("unavailable"), outcome
    assert str(outcome["ping"]).startswith("unavailable"), outcome


def test_sqlite_recovers_once_the_file_is_writable_again(shared_dir: Path) -> None:
    if os.geteuid() != 0 or subprocess.run(["chattr", "-i", str(shared_dir)], capture_output=True).returncode:
        pytest.skip("needs root and chattr")
    path = shared_dir / "burn.db"
    burnlist = SqliteBurnList(str(path), timeout=0.5)
    assert burnlist.burn(fresh_id(), FAR) is True
    burnlist.close()
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("chattr +i not supported here")
    with pytest.raises(BurnListUnavailable, match="readonly"):
        burnlist.burn(fresh_id(), FAR)
    subprocess.run(["chattr", "-i", str(path)], check=True)
    assert burnlist.burn(fresh_id(), FAR) is True  # the failed connection was dropped, not kept read-only


@pytest.mark.parametrize("layout", ["parent_is_a_file", "path_is_a_directory"])
def test_sqlite_unopenable_path_is_unavailable_then_recovers(tmp_path: Path, layout: str) -> None:
    if layout == "parent_is_a_file":
        (tmp_path / "blocker").write_text("not a directory")
        path = tmp_path / "blocker" / "burn.db"
    else:
        path = tmp_path / "burn.db"
        path.mkdir()
    burnlist = open_burnlist(f"sqlite:///{path}", timeout=0.5)
    for call in (lambda: burnlist.burn(fresh_id(), FAR), burnlist.ping, burnlist.purge):
        with pytest.raises(BurnListUnavailable):
            call()
    shutil.rmtree(path) if path.is_dir() else (tmp_path / "blocker").unlink()
    assert burnlist.burn(fresh_id(), FAR) is True


# --- Redis specifics --------------------------------------------------------------------------------------


@pytest.fixture
def redis_admin(redis_server: object) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)  # type: ignore[attr-defined]
    yield client
    client.close()


def test_redis_key_is_the_jti_with_a_relative_ttl(redis_server: object, redis_admin: redis.Redis) -> None:
    burnlist = RedisBurnList(redis_server.url, clock=lambda: 1_000.0)  # type: ignore[attr-defined]
    token_id = fresh_id()
    assert burnlist.burn(token_id, 1_000 + 300) is True
    assert redis_admin.get(f"burn:{token_id}") == b"1"
    # 300 s of validity + the last second + the margin, counted by Redis from now.
    assert redis_admin.ttl(f"burn:{token_id}") in range(300 + 1 + app.burnlist.DEFAULT_MARGIN - 2, 362)
    expired = fresh_id()
    assert burnlist.burn(expired, 1_000 - 5_000) is True
    assert 0 < redis_admin.ttl(f"burn:{expired}") <= EXPIRED_RETENTION
    assert burnlist.burn(expired, 1_000 - 5_000) is False
    burnlist.close()


def test_redis_stopped_is_unavailable_quickly_then_recovers(redis_server: object) -> None:
    server = redis_server
    burnlist = open_burnlist(server.url, timeout=0.5)  # type: ignore[attr-defined]
    burned = fresh_id()
    assert burnlist.burn(burned, FAR) is True  # leaves a pooled connection that the restart will kill
    server.stop()  # type: ignore[attr-defined]
    try:
        for call in (lambda: burnlist.burn(fresh_id(), FAR), burnlist.ping):
            started = time.monotonic()
            with pytest.raises(BurnListUnavailable):
                call()
            assert time.monotonic() - started < 3.0  # bounded by the 0.5 s timeout, with room for a loaded machine
    finally:
        server.start()  # type: ignore[attr-defined]
    assert burnlist.burn(fresh_id(), FAR) is True
    burnlist.ping()
    assert burnlist.burn(burned, FAR) is False
    burnlist.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("change", ["claim", "swap"])
def test_redis_write_that_timed_out_never_lands_later(redis_server: object, redis_admin: redis.Redis,
                                                      change: str) -> None:
    """Redis paused (found by `make soak`): the write times out and the download answers 503 (nothing streamed),
    but the command sits in Redis's socket buffer and would run when Redis resumes, claiming a link nobody got a
    byte of (the next plain GET: 403). A write Redis runs after the caller gave up must change nothing."""
    burnlist = open_burnlist(redis_server.url, timeout=0.5)  # type: ignore[attr-defined]
    token_id = fresh_id()
    if change == "swap":
        assert burnlist.swap(token_id, None, "claimed", FAR) is True
        assert burnlist.swap(token_id, "claimed", "claimed", FAR) is True  # the script loaded
    burnlist.ping()  # a pooled connection (and whatever the store learns of Redis) before the pause
    with paused(redis_server.process):  # type: ignore[attr-defined]
        with pytest.raises(BurnListUnavailable):
            if change == "claim":
                burnlist.swap(token_id, None, "claimed", FAR)
            else:
                burnlist.swap(token_id, "claimed", "more", FAR)
        time.sleep(0.5)
    time.sleep(0.3)  # Redis runs what waited in its buffers
    assert redis_admin.get(f"burn:{token_id}") == (None if change == "claim" else b"claimed")
    assert burnlist.swap(token_id, None, "claimed", FAR) is (change == "claim")  # and it works again
    burnlist.close()  # type: ignore[attr-defined]


def test_redis_burn_survives_a_restart(redis_server: object) -> None:
    burnlist = open_burnlist(redis_server.url)  # type: ignore[attr-defined]
    token_id = fresh_id()
    assert burnlist.burn(token_id, FAR) is True
    redis_server.stop()  # type: ignore[attr-defined]  # SHUTDOWN: the AOF is flushed, no RDB (--save "")
    redis_server.start()  # type: ignore[attr-defined]
    assert burnlist.burn(token_id, FAR) is False
    burnlist.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("break_it", "repair"),
    [
        (["REPLICAOF", "127.0.0.1", "1"], ["REPLICAOF", "NO", "ONE"]),  # READONLY, as on a demoted primary
        (["CONFIG", "SET", "maxmemory", "1"], ["CONFIG", "SET", "maxmemory", "0"]),  # OOM under noeviction
    ],
    ids=["read_only_replica", "out_of_memory"],
)
def test_redis_refusing_writes_is_unavailable(
    redis_server: object, redis_admin: redis.Redis, break_it: list[str], repair: list[str]
) -> None:
    burnlist = open_burnlist(redis_server.url, timeout=1.0)  # type: ignore[attr-defined]
    burnlist.ping()  # PING alone would pass below: ping() must prove the store takes writes
    redis_admin.execute_command(*break_it)
    try:
        with pytest.raises(BurnListUnavailable):
            burnlist.burn(fresh_id(), FAR)
        with pytest.raises(BurnListUnavailable):
            burnlist.ping()
    finally:
        redis_admin.execute_command(*repair)
    assert burnlist.burn(fresh_id(), FAR) is True
    burnlist.close()  # type: ignore[attr-defined]


def test_redis_nobody_listening_is_unavailable_quickly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    burnlist = open_burnlist(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BurnListUnavailable):
        burnlist.burn(fresh_id(), FAR)
    assert time.monotonic() - started < 3.0  # bounded by the 0.5 s timeout, with room for a loaded machine


def test_redis_too_slow_is_unavailable_within_the_timeout() -> None:
    # A listener that accepts (through the kernel backlog) but never answers, like a wedged server.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        burnlist = open_burnlist(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(BurnListUnavailable):
            burnlist.burn(fresh_id(), FAR)
        assert time.monotonic() - started < 3.0  # bounded by the 0.5 s timeout, with room for a loaded machine
