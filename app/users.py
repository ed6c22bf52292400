"""Users file (TOML), argon2id password hashes and a per-worker cache of verified credentials."""

from __future__ import annotations

import functools
import hmac
import json
import os
import secrets
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.ids import is_uid
from storage_backends.atomic import atomic_write

MIGRATION_ACCESS = "migration_access"
RECHECK_SECONDS = 1.0  # how often the users file's stat is looked at
# How long a request waits for another one checking the same credentials before checking them itself, unless the
# store says how long its longest check takes (`longest_check_seconds`: a directory's steps times its timeout).
VERIFY_WAIT_SECONDS = 5.0

# OWASP Password Storage Cheat Sheet, argon2id minimum: 19 MiB, 2 iterations, 1 lane (~25 ms here). The cache below
# keeps this cost off the per-request path; only the first request of a login (and every wrong password) pays it.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)


@dataclass(frozen=True)
class User:
    """One account of the users file."""

    login: str
    password_hash: str
    entitlements: frozenset[str] = frozenset()
    admin: bool = False

    def may_read(self, uid: str) -> bool:
        """Whether this user may read the scans of ``uid``: migration_access, and own uid or admin."""
        return MIGRATION_ACCESS in self.entitlements and (self.admin or self.login == uid)


def hash_password(password: str) -> str:
    """An argon2id hash with the parameters above."""
    return HASHER.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# Unknown logins are checked against this hash so that they cost the same time as a wrong password.
@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, made on first use (not at import: it costs a KDF run, ~20-40 ms)."""
    return hash_password(secrets.token_urlsafe(16))


class CredentialStore(Protocol):
    """Where users come from: the users file (UserDirectory) or a directory server (app/ldap_directory.py). A store
    whose check can take longer than VERIFY_WAIT_SECONDS says so in `longest_check_seconds`."""

    def verify(self, login: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None; the same answer, in about the same time, for an unknown
        login. May raise when the store cannot tell (the caller answers 503, never 401)."""

    def current(self, user: User) -> User | None:
        """A user verified earlier, as the store has them now; None when that verification no longer holds."""


class UserDirectory:
    """The users file, re-read when it changes on disk (so `pkgdl users add` needs no restart)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._stamp: tuple | None = None
        self._next_check = 0.0
        self._users: dict[str, User] = {}
        self._lock = threading.Lock()

    def get(self, login: str) -> User | None:
        """The user called ``login``, or None."""
        self._refresh()
        return self._users.get(login)

    def all(self) -> list[User]:
        """Every user, sorted by login."""
        self._refresh()
        return sorted(self._users.values(), key=lambda user: user.login)

    def verify(self, login: str, password: str) -> User | None:
        """The user if ``password`` matches their hash (unknown logins are checked against a dummy hash)."""
        user = self.get(login)
        if user is None:
            _verify(_dummy_hash(), password)
            return None
        return user if _verify(user.password_hash, password) else None

    def current(self, user: User) -> User | None:
        """The user as the file has them now, if their hash is unchanged: a password change, or removal,
        invalidates a remembered verification at once."""
        now = self.get(user.login)
        return now if now is not None and hmac.compare_digest(now.password_hash, user.password_hash) else None

    def _refresh(self) -> None:
        # A stat per request is measurable on the 304 path; looking once a second still applies `pkgdl users`
        # changes within a second.
        if time.monotonic() < self._next_check:
            return
        with self._lock:
            # The next check is moved only once the users are loaded: threads that come meanwhile wait here instead
            # of reading the users of before (at a worker's start: none, so a right password got a 401).
            if time.monotonic() < self._next_check:
                return
            try:
                try:
                    stat = self.path.stat()
                    stamp: tuple | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                except FileNotFoundError:
                    stamp = None
                if stamp != self._stamp:
                    self._users = load_users(self.path) if stamp else {}
                    self._stamp = stamp
            finally:
                self._next_check = time.monotonic() + RECHECK_SECONDS


def load_users(path: Path) -> dict[str, User]:
    """Parse the users file; a malformed file is a configuration error with a clear message."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"users file {path} is not valid TOML: {exc}") from None
    users = {}
    for login, table in (document.get("users") or {}).items():
        if not is_uid(login) or not isinstance(table, dict):
            raise ValueError(f"users file {path}: invalid user entry {login!r}")
        users[login] = User(
            login=login,
            password_hash=str(table.get("password_hash", "")),
            entitlements=frozenset(str(e) for e in table.get("entitlements", [])),
            admin=bool(table.get("admin", False)),
        )
    return users


def save_users(path: Path, users: Iterable[User]) -> None:
    """Write the users file atomically (temp file + rename), readable by the owner only."""
    lines = ["# pkgdl users; manage with `pkgdl users add|remove|list`.", ""]
    for user in sorted(users, key=lambda u: u.login):
        lines += [
            f"[users.{json.dumps(user.login)}]",
            f"password_hash = {json.dumps(user.password_hash)}",
            f"entitlements = {json.dumps(sorted(user.entitlements))}",
            f"admin = {'true' if user.admin else 'false'}",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Mode 0600: the file holds password hashes.
    atomic_write(path, lambda out: out.write("\n".join(lines).encode("utf-8")), mode=0o600)


class Authenticator:
    """Checks Basic credentials; remembers verified ones for a short time so the KDF (or the directory's bind) does
    not run per request."""

    def __init__(self, store: CredentialStore, cache_ttl: float = 60.0, cache_size: int = 4096) -> None:
        self.store = store
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        # The cache key is an HMAC under a per-process secret: a memory dump shows no password or plain digest.
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, tuple[float, User]] = OrderedDict()
        self._verifying: dict[bytes, threading.Event] = {}  # credentials being checked now -> set when done
        self._lock = threading.Lock()

    def remembered(self, login: str, password: str) -> User | None:
        """The user when these exact credentials were verified moments ago (no KDF run, no bind), else None."""
        return self._remembered(self._key(login, password))

    def authenticate(self, login: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (unknown users cost as much as wrong passwords).

        Concurrent requests with the same credentials verify them once: the first runs the KDF (or binds), the others
        wait for it and take the remembered user. A migration client opens 8 connections with one login at once, and
        each worker's cache starts empty and expires: without this, every thread ran its own ~25 ms KDF (or bind) on
        the same 2 cores at the same moment (bench-scan's Basic p99). Only a success is shared: after a failure or
        an outage each waiting request verifies on its own, so a wrong password costs every request its KDF run."""
        key = self._key(login, password)
        remembered = self._remembered(key)
        if remembered is not None:
            return remembered
        with self._lock:
            running = self._verifying.get(key)
            if running is None:
                self._verifying[key] = threading.Event()
        if running is not None:
            # As long as the first check can take: a waiter that gave up early would ask a slow directory again.
            running.wait(getattr(self.store, "longest_check_seconds", VERIFY_WAIT_SECONDS))
            return self._remembered(key) or self._verify_and_remember(key, login, password)
        try:
            return self._verify_and_remember(key, login, password)
        finally:
            with self._lock:
                self._verifying.pop(key).set()

    def _verify_and_remember(self, key: bytes, login: str, password: str) -> User | None:
        user = self.store.verify(login, password)
        if user is not None:
            self._remember(key, user)
        return user

    def _remembered(self, key: bytes) -> User | None:
        entry = self._verified.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return self.store.current(entry[1])

    def _key(self, login: str, password: str) -> bytes:
        # hmac.digest is the one-shot C implementation: a third of hmac.new(...).digest()'s cost on this hot path.
        return hmac.digest(self._cache_key, f"{login}\0{password}".encode("utf-8", "surrogatepass"), "sha256")

    def _remember(self, key: bytes, user: User) -> None:
        with self._lock:
            self._verified[key] = (time.monotonic() + self.cache_ttl, user)
            self._verified.move_to_end(key)
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
