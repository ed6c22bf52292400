"""Users file, argon2id verification, the verified-credentials cache, and equal work for unknown users."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import app.users as users_module
from app.users import Authenticator, User, UserDirectory, hash_password, load_users, save_users


@pytest.fixture
def directory(tmp_path):
    path = tmp_path / "users.toml"
    save_users(path, [User("alice", hash_password("pw"), frozenset({"migration_access"})),
                      User("root", hash_password("rootpw"), frozenset({"migration_access"}), admin=True)])
    return UserDirectory(path)


@pytest.fixture
def kdf_calls(monkeypatch):
    calls = []
    real = users_module._verify

    def counting(password_hash, password):
        calls.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(users_module, "_verify", counting)
    return calls


def test_round_trip_and_hash_parameters(directory):
    alice = directory.get("alice")
    assert alice.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert alice.entitlements == {"migration_access"} and not alice.admin
    assert directory.get("root").admin


@pytest.mark.parametrize("login, uid, allowed", [
    ("alice", "alice", True), ("alice", "bob", False), ("root", "bob", True),
])
def test_may_read(directory, login, uid, allowed):
    assert directory.get(login).may_read(uid) is allowed


def test_admin_without_entitlement_may_not_read():
    assert not User("x", "", frozenset(), admin=True).may_read("x")


def test_kdf_runs_once_per_cached_credential(directory, kdf_calls):
    auth = Authenticator(directory)
    assert [auth.authenticate("alice", "pw") for _ in range(5)] == [directory.get("alice")] * 5
    assert len(kdf_calls) == 1


def test_wrong_password_is_never_cached(directory, kdf_calls):
    auth = Authenticator(directory)
    assert auth.authenticate("alice", "nope") is None
    assert auth.authenticate("alice", "nope") is None
    assert len(kdf_calls) == 2


def _at_once(count: int, call):  # noqa: ANN001, ANN202
    """`call()` in `count` threads released together; their results (or exceptions), in order."""
    start = threading.Barrier(count)

    def run(_: int) -> object:
        start.wait()
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - returned for the test to look at
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def slow_kdf(kdf_calls, monkeypatch):
    """Each KDF run takes 0.2 s more: concurrent sign-ins overlap for sure."""
    counting = users_module._verify

    def slow(password_hash, password):
        time.sleep(0.2)
        return counting(password_hash, password)

    monkeypatch.setattr(users_module, "_verify", slow)
    return kdf_calls


def test_concurrent_sign_ins_with_the_same_credentials_run_the_kdf_once(directory, slow_kdf):
    auth = Authenticator(directory)
    assert _at_once(8, lambda: auth.authenticate("alice", "pw")) == [directory.get("alice")] * 8
    assert len(slow_kdf) == 1
    assert _at_once(2, lambda: auth.authenticate("root", "rootpw")) == [directory.get("root")] * 2
    assert len(slow_kdf) == 2  # another login is its own check


def test_concurrent_wrong_passwords_each_run_the_kdf(directory, slow_kdf):
    """Only a success is shared: every guess costs its own KDF run."""
    auth = Authenticator(directory)
    assert _at_once(4, lambda: auth.authenticate("alice", "guess")) == [None] * 4
    assert len(slow_kdf) == 4


class _FlakyStore:
    """A credential store whose first check fails (a directory timing out), the next ones succeed."""

    def __init__(self, user: User) -> None:
        self.user, self.calls = user, 0

    def verify(self, login: str, password: str) -> User | None:
        self.calls += 1
        time.sleep(0.2)
        if self.calls == 1:
            raise TimeoutError("directory")
        return self.user

    def current(self, user: User) -> User | None:
        return user


class _SlowStore(_FlakyStore):
    """Checks that take 1 s, never failing, and a store that says so."""

    longest_check_seconds = 3.0

    def verify(self, login: str, password: str) -> User | None:
        self.calls += 1
        time.sleep(1.0)
        return self.user


def test_waiters_wait_as_long_as_the_store_says_a_check_takes(directory, monkeypatch):
    """A directory's sign-in can outlast VERIFY_WAIT_SECONDS (several steps, each with its timeout): the others
    wait for it instead of asking a slow directory again."""
    monkeypatch.setattr(users_module, "VERIFY_WAIT_SECONDS", 0.2)
    store = _SlowStore(directory.get("alice"))
    auth = Authenticator(store)
    assert _at_once(4, lambda: auth.authenticate("alice", "pw")) == [store.user] * 4
    assert store.calls == 1


def test_requests_waiting_on_a_failed_check_check_for_themselves(directory):
    store = _FlakyStore(directory.get("alice"))
    auth = Authenticator(store)
    results = _at_once(4, lambda: auth.authenticate("alice", "pw"))
    assert sum(isinstance(result, TimeoutError) for result in results) == 1  # the failure is not shared
    assert [result for result in results if not isinstance(result, TimeoutError)] == [store.user] * 3
    assert store.calls >= 2


def test_unknown_user_costs_a_kdf_run_too(directory, kdf_calls):
    assert Authenticator(directory).authenticate("mallory", "pw") is None
    assert len(kdf_calls) == 1


def test_password_change_invalidates_the_cache(directory, monkeypatch):
    auth = Authenticator(directory)
    assert auth.authenticate("alice", "pw")
    users = load_users(directory.path)
    users["alice"] = User("alice", hash_password("new"), frozenset({"migration_access"}))
    save_users(directory.path, users.values())
    assert auth.authenticate("alice", "pw")  # the file is looked at once a second, not per request
    real_monotonic = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + users_module.RECHECK_SECONDS)
    assert auth.authenticate("alice", "pw") is None
    assert auth.authenticate("alice", "new")


def test_cache_entries_expire(directory, kdf_calls):
    auth = Authenticator(directory, cache_ttl=0)
    auth.authenticate("alice", "pw")
    auth.authenticate("alice", "pw")
    assert len(kdf_calls) == 2


def test_missing_file_means_no_users(tmp_path):
    assert UserDirectory(tmp_path / "absent.toml").get("alice") is None


def test_malformed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text("[users.alice\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_users(path)


def test_threads_arriving_during_the_first_load_wait_for_it(directory, monkeypatch):
    # Regression: the first thread moved the next-check time before loading, so threads arriving meanwhile read the
    # empty directory of a fresh worker and a right password got a 401 (seen in a profile under gunicorn).
    import threading

    real_load = users_module.load_users
    loading = threading.Event()

    def slow_load(path):
        loading.set()
        time.sleep(0.3)
        return real_load(path)

    monkeypatch.setattr(users_module, "load_users", slow_load)
    found = []
    first = threading.Thread(target=lambda: found.append(directory.get("alice")))
    first.start()
    assert loading.wait(5)
    others = [threading.Thread(target=lambda: found.append(directory.get("alice"))) for _ in range(4)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(5)
    assert [user.login if user else None for user in found] == ["alice"] * 5


def test_a_file_that_becomes_malformed_keeps_the_last_users(directory):
    assert directory.get("alice") is not None
    directory.path.write_text("[users.alice\n")
    directory._next_check = 0.0
    with pytest.raises(ValueError, match="not valid TOML"):
        directory.get("alice")
    assert directory.get("alice") is not None  # the next request within the recheck interval uses the last users


def test_users_file_is_written_through_an_unpredictable_temp_file(tmp_path, monkeypatch):
    """A file or symlink planted at the old predictable temp name (.users.toml.<pid>.tmp) is neither followed nor
    used; the result is mode 0600 and nothing is left behind."""
    path = tmp_path / "users.toml"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    planted = tmp_path / f".users.toml.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    save_users(path, [User("alice", hash_password("pw"), frozenset({"migration_access"}))])
    assert victim.read_text() == "keep me"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "alice" in load_users(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".users.toml." + f"{os.getpid()}.tmp", "users.toml",
                                                                 "victim"])


@pytest.mark.parametrize("login", ["alice\n", "alice\r", " alice", "al/ice", "ålice", "a" * 65, ""])
def test_the_users_file_refuses_logins_the_url_refuses(tmp_path, login):
    """One rule (app/ids.py) for the URL, the CLI and the users file: "alice\n" once passed `^...$` with match."""
    path = tmp_path / "users.toml"
    path.write_text(f'[users.{json.dumps(login)}]\npassword_hash = "x"\nentitlements = []\nadmin = false\n')
    with pytest.raises(ValueError):
        load_users(path)
