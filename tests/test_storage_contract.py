"""One contract for every storage backend (local, memory, S3 on SeaweedFS, HTTP on nginx), and outages."""

from __future__ import annotations

import os
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import s3fs
from fsspec.implementations.memory import MemoryFileSystem

from deploy.processes import free_port
from storage_backends import BlobSizeMismatch, open_storage
from storage_backends.fsspec_storage import READ_AHEAD, FsspecStorage
from tests.fixtures_app import FakeStorage

MiB = 1024 * 1024
BIG = random.Random(7).randbytes(3 * MiB + 123)  # several 1 MiB chunks, not a multiple of the chunk size
BLOB = "blobs/sha256/ab/ab12cd"
MANIFEST = "alice/12/34/packages.json"
# Outage tests skip retry backoff (defaults retry once: a separate test checks they still end in seconds).
QUICK = {"retries": 1, "config_kwargs": {"connect_timeout": 2, "retries": {"max_attempts": 1}}}


@dataclass
class Backend:
    """A storage under test, how to put bytes in behind its back, what its messages must never show."""

    name: str
    storage: FsspecStorage
    seed: Callable[[str, bytes], None]
    writable: bool = True
    delete: Callable[[str], None] | None = None  # remove an object behind its back (remote backends)
    secrets: list[str] = field(default_factory=list)

    def assert_generic(self, exc: BaseException, *paths: str) -> None:
        """The message names no bucket, key, endpoint or local path."""
        for secret in [*self.secrets, *paths]:
            assert secret not in str(exc), f"{secret!r} leaked into {exc!r}"


def _clear_memory() -> None:
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


@pytest.fixture
def memory_store() -> Iterator[None]:
    """fsspec's memory store is global to the process: start and end each test empty."""
    _clear_memory()
    yield
    _clear_memory()


def _local(request, tmp_path: Path) -> Backend:
    root = tmp_path / "packages"
    root.mkdir()
    storage = FsspecStorage(root.as_uri())

    def seed(path: str, data: bytes) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    return Backend("local", storage, seed, secrets=[str(tmp_path)])


def _memory(request, tmp_path: Path) -> Backend:
    request.getfixturevalue("memory_store")
    storage = FsspecStorage("memory://pkgdl-test")
    return Backend("memory", storage, storage.write_bytes, secrets=["pkgdl-test"])


def _s3(request, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("seaweedfs")
    prefix = f"t-{uuid.uuid4().hex[:12]}"  # one prefix per test: the bucket is shared by the session
    storage = FsspecStorage(server.url(prefix), server.options)
    endpoint = server.endpoint_url.removeprefix("http://")
    admin = s3fs.S3FileSystem(skip_instance_cache=True, **server.options)

    def delete(path: str) -> None:
        admin.rm_file(f"{server.bucket}/{prefix}/{path}")

    secrets = [server.bucket, prefix, endpoint, server.secret]
    return Backend("s3", storage, storage.write_bytes, delete=delete, secrets=secrets)


def _behind_its_back(directory: Path) -> tuple[Callable[[str, bytes], None], Callable[[str], None]]:
    """Seed and delete objects in the directory a server exports, without going through the server."""

    def seed(path: str, data: bytes) -> None:
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def delete(path: str) -> None:
        (directory / path).unlink()

    return seed, delete


def _http(request, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("nginx_static")
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    storage = FsspecStorage(f"{server.base_url}/{prefix}")
    seed, delete = _behind_its_back(server.root / prefix)
    endpoint = server.base_url.removeprefix("http://")
    secrets = [prefix, endpoint, str(server.root)]
    return Backend("http", storage, seed, writable=False, delete=delete, secrets=secrets)


def _exported(kind: str):
    """A WebDAV or SFTP server exporting a directory: bytes seeded and deleted behind its back on that directory."""

    def factory(request, tmp_path: Path) -> Backend:
        server = request.getfixturevalue(f"{kind}_server")
        prefix = f"t-{uuid.uuid4().hex[:12]}"
        storage = FsspecStorage(server.url(prefix), server.options)
        (server.root / prefix).mkdir()  # the root directory exists, as after `pkgdl catalog add` or an operator
        seed, delete = _behind_its_back(server.root / prefix)

        secrets = [prefix, f"127.0.0.1:{server.port}", str(server.root), server.password]
        # An SFTP server keeps an open file's bytes after unlink, as a local file does: no "deleted behind its back".
        return Backend(kind, storage, seed, delete=delete if kind == "webdav" else None, secrets=secrets)

    return factory


def _gcs(request, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("gcs_server")
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    storage = FsspecStorage(server.url(prefix), server.options)

    def delete(path: str) -> None:
        storage._filesystem().rm_file(f"{server.bucket}/{prefix}/{path}")

    secrets = [server.bucket, prefix, f"127.0.0.1:{server.port}"]
    return Backend("gcs", storage, storage.write_bytes, delete=delete, secrets=secrets)


def _azure(request, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("azurite")
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    storage = FsspecStorage(server.url(prefix), server.options)

    def delete(path: str) -> None:
        storage._filesystem().rm_file(f"{server.container}/{prefix}/{path}")

    secrets = [server.container, prefix, f"127.0.0.1:{server.port}", "devstoreaccount1"]
    return Backend("azure", storage, storage.write_bytes, delete=delete, secrets=secrets)


def _fake(request, tmp_path: Path) -> Backend:
    """The view tests' dict-backed FakeStorage (tests/fixtures_app.py): it must keep the same contract."""
    storage = FakeStorage()
    return Backend("fake", storage, storage.write_bytes)


FACTORIES = {"local": _local, "memory": _memory, "s3": _s3, "http": _http, "webdav": _exported("webdav"),
             "sftp": _exported("sftp"), "gcs": _gcs, "azure": _azure, "fake": _fake}


# These backends need real servers: their cases are integration tests (`make test-fast` skips them).
_REAL_SERVERS = {"s3", "http", "webdav", "sftp", "gcs", "azure"}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.integration) if name in _REAL_SERVERS else name
                        for name in FACTORIES])
def backend(request, tmp_path: Path) -> Backend:
    """Each contract test runs once per backend."""
    return FACTORIES[request.param](request, tmp_path)


def _store(backend: Backend, path: str, data: bytes, tmp_path: Path) -> None:
    """Put ``data`` in through the storage's own write path where it has one (put_file for big objects)."""
    if not backend.writable:
        backend.seed(path, data)
    elif len(data) > MiB:
        source = tmp_path / "upload.bin"
        source.write_bytes(data)
        backend.storage.put_file(str(source), path)
    else:
        backend.storage.write_bytes(path, data)


def _read_all(blob, chunk: int = MiB) -> bytes:
    parts = []
    while piece := blob.read(chunk):
        parts.append(piece)
    return b"".join(parts)


# --- the contract ---


def test_multi_mib_round_trip_reads_in_chunks_and_seeks(backend: Backend, tmp_path: Path) -> None:
    _store(backend, BLOB, BIG, tmp_path)
    with backend.storage.open_blob(BLOB, len(BIG)) as blob:
        assert _read_all(blob) == BIG
        assert blob.seek(MiB + 5) == MiB + 5
        assert blob.read(100) == BIG[MiB + 5 : MiB + 105]
        assert blob.tell() == MiB + 105
        blob.seek(len(BIG) - 10)
        assert blob.read(MiB) == BIG[-10:]
        assert blob.read(MiB) == b""


def test_empty_object_round_trip(backend: Backend, tmp_path: Path) -> None:
    _store(backend, BLOB, b"", tmp_path)
    with backend.storage.open_blob(BLOB, 0) as blob:
        assert blob.read(MiB) == b""
    assert backend.storage.read_bytes(BLOB) == b""


def test_read_bytes_returns_what_was_written(backend: Backend, tmp_path: Path) -> None:
    _store(backend, MANIFEST, b'{"packages": []}', tmp_path)
    assert backend.storage.read_bytes(MANIFEST) == b'{"packages": []}'
    if backend.writable:
        backend.storage.write_bytes(MANIFEST, b'{"packages": [1]}')
        assert backend.storage.read_bytes(MANIFEST) == b'{"packages": [1]}'


def test_exists(backend: Backend, tmp_path: Path) -> None:
    _store(backend, MANIFEST, b"{}", tmp_path)
    assert backend.storage.exists(MANIFEST) is True
    assert backend.storage.exists("alice/12/34/other.json") is False
    assert backend.storage.exists("nobody/1/2/packages.json") is False


@pytest.mark.parametrize("operation", ["open_blob", "read_bytes"])
def test_missing_object_is_file_not_found(backend: Backend, operation: str) -> None:
    missing = "blobs/sha256/00/missing"
    with pytest.raises(FileNotFoundError) as caught:
        if operation == "open_blob":
            backend.storage.open_blob(missing, 10)
        else:
            backend.storage.read_bytes(missing)
    assert not isinstance(caught.value, ConnectionError)
    backend.assert_generic(caught.value, missing)


@pytest.mark.parametrize("promised", [9, 11, 0])
def test_size_mismatch_is_refused(backend: Backend, tmp_path: Path, promised: int) -> None:
    _store(backend, BLOB, b"0123456789", tmp_path)
    with pytest.raises(BlobSizeMismatch) as caught:
        backend.storage.open_blob(BLOB, promised)
    backend.assert_generic(caught.value, BLOB)


def test_odd_names_stay_one_path(backend: Backend, tmp_path: Path) -> None:
    """'?', '#', '%' and spaces are part of the name, not a query or fragment (HTTP quotes them)."""
    odd = "pool/a b+c%41?d#e;f.rpm"
    if backend.name == "webdav":  # such names are refused there, never misread (storage_backends/webdav.py)
        with pytest.raises(ValueError):
            backend.storage.write_bytes(odd, b"odd")
        with pytest.raises(ValueError):
            backend.storage.read_bytes(odd)
        odd = "pool/a+b_c~d@e.rpm"
    _store(backend, odd, b"odd", tmp_path)
    assert backend.storage.read_bytes(odd) == b"odd"
    assert backend.storage.open_blob(odd, 3).read(MiB) == b"odd"
    assert backend.storage.exists(odd)


def test_ping_ok(backend: Backend) -> None:
    backend.storage.ping()


def test_local_path_only_for_local_roots(backend: Backend, tmp_path: Path) -> None:
    found = backend.storage.local_path(BLOB)
    if backend.name == "local":
        assert found == str(tmp_path / "packages" / "blobs/sha256/ab/ab12cd")
    else:
        assert found is None


BAD_PATHS = ["../etc/passwd", "a/../../b", "/etc/passwd", "a\\b", "a\x00b", "", "a//b", "./a", "a/.."]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_path_escape_is_value_error(backend: Backend, bad: str) -> None:
    calls = [
        lambda: backend.storage.open_blob(bad, 1),
        lambda: backend.storage.read_bytes(bad),
        lambda: backend.storage.exists(bad),
        lambda: backend.storage.local_path(bad),
        lambda: backend.storage.write_bytes(bad, b"x"),
        lambda: backend.storage.put_file(__file__, bad),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_blob_reader_is_bounded(backend: Backend, tmp_path: Path) -> None:
    """Reading a whole remote object in 1 MiB chunks never holds more than a chunk and a small buffer."""
    big = random.Random(8).randbytes(24 * MiB + 5)  # larger than any bound below
    _store(backend, BLOB, big, tmp_path)
    with backend.storage.open_blob(BLOB, len(big)) as blob:
        tracemalloc.start()
        try:
            received = 0
            while chunk := blob.read(MiB):
                received += len(chunk)
                del chunk
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert received == len(big)
    if backend.name == "s3":  # one streamed GET: a chunk and the socket buffer
        assert peak <= 2 * MiB + READ_AHEAD, f"peak {peak / MiB:.1f} MiB while streaming"
    if backend.name in ("gcs", "azure"):  # fsspec buffered files, one read-ahead block at a time
        assert peak <= 4 * (MiB + READ_AHEAD), f"peak {peak / MiB:.1f} MiB while streaming"
    if backend.name == "http":  # fsspec's HTTPFile reads each read-ahead block whole (measured: 15 MiB flat)
        assert peak <= 4 * (MiB + READ_AHEAD), f"peak {peak / MiB:.1f} MiB while streaming"


def test_object_deleted_after_open_fails_translated(backend: Backend, tmp_path: Path) -> None:
    """Errors raised by read() are translated too (remote only: an open local file survives unlink)."""
    if backend.delete is None:
        pytest.skip("an open local or in-memory file keeps its bytes after deletion")
    data = BIG * 3  # larger than what the first reads fetch ahead
    _store(backend, BLOB, data, tmp_path)
    with backend.storage.open_blob(BLOB, len(data)) as blob:
        blob.read(MiB)
        backend.delete(BLOB)
        with pytest.raises((FileNotFoundError, ConnectionError)) as caught:
            blob.seek(len(data) - MiB)
            blob.read(MiB)
    backend.assert_generic(caught.value, BLOB)


def test_replace_if_is_compare_and_swap(backend: Backend) -> None:
    """The manifest's concurrency control: a write succeeds only on the version it was based on."""
    if not backend.writable:
        pytest.skip("read-only backend")
    assert backend.storage.read_versioned(MANIFEST) is None
    assert backend.storage.replace_if(MANIFEST, b"first", None)
    assert not backend.storage.replace_if(MANIFEST, b"again", None)  # it exists now
    data, version = backend.storage.read_versioned(MANIFEST)
    assert data == b"first"
    assert backend.storage.replace_if(MANIFEST, b"second", version)
    assert not backend.storage.replace_if(MANIFEST, b"stale", version)  # based on an old version
    assert backend.storage.read_versioned(MANIFEST)[0] == b"second"
    assert backend.storage.read_bytes(MANIFEST) == b"second"


def test_writes_on_http_are_refused(backend: Backend, tmp_path: Path) -> None:
    if backend.writable:
        pytest.skip("writable backend")
    with pytest.raises(PermissionError):
        backend.storage.write_bytes(MANIFEST, b"{}")
    source = tmp_path / "x"
    source.write_bytes(b"x")
    with pytest.raises(PermissionError):
        backend.storage.put_file(str(source), BLOB)


# --- construction ---


@pytest.mark.parametrize(
    "url",
    [
        "nosuchfs://host/dir",
        "gs://",
        "relative/dir",
        "/abs/without/scheme",
        "file://relative",
        "s3://",
        "http://",
    ],
)
def test_bad_url_fails_at_construction(url: str) -> None:
    with pytest.raises(ValueError):
        open_storage(url)


def test_construction_does_no_io() -> None:
    """Nothing answers on this port, yet building the storage (and its filesystem) succeeds."""
    closed = f"http://127.0.0.1:{free_port()}"
    s3 = FsspecStorage("s3://bucket/prefix", {"endpoint_url": closed, "key": "k", "secret": "s"})
    s3._filesystem()
    FsspecStorage(f"{closed}/packages")._filesystem()
    FsspecStorage("file:///nonexistent/root")


def test_filesystem_is_rebuilt_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """Async filesystems must not cross a fork: a new pid gets a new filesystem."""
    storage = FsspecStorage("s3://bucket", {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s"})
    first = storage._filesystem()
    assert storage._filesystem() is first
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    assert storage._filesystem() is not first


def test_timeouts_are_set_unless_overridden() -> None:
    s3 = FsspecStorage("s3://bucket", {"key": "k", "secret": "s", "config_kwargs": {"read_timeout": 7}})
    config = s3._filesystem().config_kwargs
    assert (config["connect_timeout"], config["read_timeout"]) == (5, 7)
    http = FsspecStorage("https://example.invalid/pkgs")
    timeout = http._filesystem().client_kwargs["timeout"]
    assert (timeout.connect, timeout.sock_read) == (5, 30)


# --- outages: never a 404 ---


def _assert_outage(storage: FsspecStorage, *secrets: str, expected: tuple = (ConnectionError,)) -> None:
    """Every read path reports the outage as ConnectionError/TimeoutError, never FileNotFoundError."""
    calls = {
        "open_blob": lambda: storage.open_blob(BLOB, 10),
        "read_bytes": lambda: storage.read_bytes(MANIFEST),
        "exists": lambda: storage.exists(MANIFEST),
        "ping": storage.ping,
    }
    for name, call in calls.items():
        with pytest.raises(expected) as caught:
            call()
        assert not isinstance(caught.value, FileNotFoundError), name
        for secret in secrets:
            assert secret not in str(caught.value), f"{name}: {secret!r} leaked into {caught.value!r}"


def test_local_root_missing_is_an_outage(tmp_path: Path) -> None:
    root = tmp_path / "unmounted"
    _assert_outage(FsspecStorage(root.as_uri()), str(tmp_path))


def test_http_closed_port_is_an_outage() -> None:
    port = free_port()
    _assert_outage(FsspecStorage(f"http://127.0.0.1:{port}/packages"), str(port))


def test_http_503_is_an_outage(nginx_static) -> None:
    _assert_outage(FsspecStorage(nginx_static.broken_url), str(nginx_static.port))


def test_s3_closed_port_is_an_outage(seaweedfs) -> None:
    port = free_port()
    options = {**seaweedfs.options, "endpoint_url": f"http://127.0.0.1:{port}"}
    _assert_outage(FsspecStorage(seaweedfs.url("p"), {**options, **QUICK}), str(port), seaweedfs.bucket)


def test_s3_outage_with_default_retries_ends_in_seconds(seaweedfs) -> None:
    options = {**seaweedfs.options, "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        FsspecStorage(seaweedfs.url("p"), options).ping()
    assert time.monotonic() - started < 10


def test_s3_missing_bucket_is_an_outage(seaweedfs) -> None:
    _assert_outage(FsspecStorage("s3://no-such-bucket-pkgdl/p", seaweedfs.options), "no-such-bucket-pkgdl")


def test_s3_wrong_secret_is_permission_error(seaweedfs) -> None:
    options = {**seaweedfs.options, "secret": "not-the-secret"}
    _assert_outage(FsspecStorage(seaweedfs.url("p"), options), seaweedfs.bucket, expected=(PermissionError,))


def test_s3_paused_server_times_out(seaweedfs) -> None:
    """A server that accepts connections but never answers: TimeoutError, within the configured timeouts."""
    quick = {**QUICK, "config_kwargs": {**QUICK["config_kwargs"], "read_timeout": 1}}
    root = seaweedfs.url(f"t-{uuid.uuid4().hex[:8]}")
    # The object goes in with the usual timeouts: a 9 MiB upload to a freshly started SeaweedFS can take over 1 s
    # (5 failures in 15 runs of this test alone), and the 1 s timeout is what is tested, on the reads below.
    FsspecStorage(root, {**seaweedfs.options, **QUICK}).write_bytes(BLOB, BIG * 3)
    storage = FsspecStorage(root, {**seaweedfs.options, **quick})
    blob = storage.open_blob(BLOB, len(BIG) * 3)
    blob.read(MiB)
    with seaweedfs.paused():
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            blob.seek(len(BIG) * 2)
            blob.read(MiB)
        with pytest.raises(TimeoutError):
            storage.open_blob(BLOB, len(BIG) * 3)
        assert time.monotonic() - started < 15
    blob.close()


def test_s3_stopped_server_is_an_outage(seaweedfs) -> None:
    storage = FsspecStorage(seaweedfs.url("p"), {**seaweedfs.options, **QUICK})
    storage.ping()
    seaweedfs.stop()
    try:
        _assert_outage(storage, seaweedfs.bucket, expected=(ConnectionError, TimeoutError))
    finally:
        seaweedfs.start()
    storage.ping()
