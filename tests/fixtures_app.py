"""App fixtures: settings in a tmp dir, a dict-backed fake storage, users, and a catalogued scan."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from app import create_app
from app.config import Settings
from app.importer import add_packages
from app.users import User, hash_password, save_users
from storage_backends import BlobSizeMismatch
from storage_backends.fsspec_storage import checked_path

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "root": "root-pw"}


@dataclass
class FakeStorage:
    """The Storage protocol over a dict; `fault` makes the next calls raise, `calls` records what was touched.
    It keeps the real backends' contract (tests/test_storage_contract.py runs it): paths checked by the same rule,
    a stored size that differs from the catalog's refused."""

    objects: dict[str, bytes] = field(default_factory=dict)
    fault: BaseException | None = None
    # An object replaced by a shorter one between the open-time size check and the reads: open hands out this many
    # bytes of it.
    shrink_after_open: int | None = None
    calls: list[str] = field(default_factory=list)

    def _touch(self, what: str, path: str) -> None:
        checked_path(path)
        self.calls.append(f"{what} {path}")
        if self.fault is not None and not path.endswith("packages.json"):
            raise self.fault

    def open_blob(self, path: str, size: int):
        self._touch("open", path)
        if path not in self.objects:
            raise FileNotFoundError("storage object not found")
        if len(self.objects[path]) != size:
            raise BlobSizeMismatch("storage object size differs from the catalog")
        return io.BytesIO(self.objects[path][: self.shrink_after_open])

    def read_bytes(self, path: str) -> bytes:
        checked_path(path)
        self.calls.append(f"read {path}")
        if path not in self.objects:
            raise FileNotFoundError("storage object not found")
        return self.objects[path]

    def write_bytes(self, path: str, data: bytes) -> None:
        self.objects[checked_path(path)] = bytes(data)

    def put_file(self, local_path: str, path: str) -> None:
        self.objects[checked_path(path)] = Path(local_path).read_bytes()

    def exists(self, path: str) -> bool:
        return checked_path(path) in self.objects

    def local_path(self, path: str) -> None:
        checked_path(path)
        return None

    def presigned_url(self, path: str, expires: int = 60) -> None:
        return None

    def read_versioned(self, path: str):
        return (self.objects[path], str(hash(self.objects[path]))) if path in self.objects else None

    def replace_if(self, path: str, data: bytes, version):
        current = self.read_versioned(path)
        if (current[1] if current else None) != version:
            return False
        self.objects[path] = bytes(data)
        return True

    def ping(self) -> None:
        if self.fault is not None:
            raise self.fault


@dataclass
class Scan:
    """A catalogued scan: its ids and its packages' bytes by pid."""

    uid: str
    siid: int
    sid: int
    blobs: dict[int, bytes]

    def bin_path(self, pid: int) -> str:
        return f"/users/{self.uid}/scannedinstances/{self.siid}/scans/{self.sid}/packages/{pid}/bin"

    def listing_path(self) -> str:
        return f"/users/{self.uid}/scannedinstances/{self.siid}/scans/{self.sid}/packages"


@pytest.fixture(scope="session")
def users_file(tmp_path_factory) -> Path:
    """alice and bob read their own scans, carol lacks the entitlement, root is an admin."""
    path = tmp_path_factory.mktemp("users") / "users.toml"
    save_users(path, [
        User("alice", hash_password(PASSWORDS["alice"]), frozenset({"migration_access"})),
        User("bob", hash_password(PASSWORDS["bob"]), frozenset({"migration_access"})),
        User("carol", hash_password(PASSWORDS["carol"]), frozenset()),
        User("root", hash_password(PASSWORDS["root"]), frozenset({"migration_access"}), admin=True),
    ])
    return path


@pytest.fixture
def settings(tmp_path, users_file) -> Settings:
    """Settings for one test: SQLite burn-list in tmp_path, a fixed key, no catalog cache."""
    return Settings(
        storage_url="memory://unused",
        secret_keys=("old-key", "test-signing-key"),
        token_max_age=3600,
        burnlist_url=f"sqlite:///{tmp_path / 'burnlist.sqlite3'}",
        users_file=str(users_file),
        public_url="https://dl.example.test",
        catalog_ttl=0,
    )


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
def scan(storage, tmp_path) -> Scan:
    """alice's scan 12/34 with three packages (one empty), catalogued by the real importer."""
    sizes = {"openssl-3.0.7-27.el9.x86_64.rpm": 3 * 1024 * 1024 + 17, "curl_7.88.1-10_amd64.deb": 5000,
             "empty-1.0-1.noarch.rpm": 0}
    files = []
    for name, size in sizes.items():
        path = tmp_path / name
        path.write_bytes(random.Random(name).randbytes(size))
        files.append(str(path))
    added = add_packages(storage, "alice", 12, 34, files)
    return Scan("alice", 12, 34, {p.db_id: Path(f).read_bytes() for p, f in zip(added, files, strict=True)})


@pytest.fixture
def app(settings, storage, scan):
    return create_app(settings, storage=storage)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_app(storage, scan, settings):
    """Build an app with some settings changed."""
    return lambda **changes: create_app(replace(settings, **changes), storage=storage)
