"""``FsspecStorage``: the Storage protocol over any fsspec root, through the backend the registry picks for its URL
(storage_backends/registry.py)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, BinaryIO, TypeVar, cast

from storage_backends.base import BlobSizeMismatch
from storage_backends.errors import MESSAGES, translated_errors
from storage_backends.generic import READ_AHEAD, checked_path  # noqa: F401 - re-exported
from storage_backends.per_process import PerProcess
from storage_backends.registry import backend_for

T = TypeVar("T")


class BlobReader(io.RawIOBase):
    """A read-only view of a backend file that translates its errors and never ends before ``size`` bytes."""

    def __init__(self, handle: IO[bytes], size: int, unknown_is_outage: bool = False) -> None:
        super().__init__()
        self._unknown_is_outage = unknown_is_outage
        self._handle = handle
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        """Blobs are read-only."""
        return True

    def seekable(self) -> bool:
        """Every backend file seeks (remote ones by issuing range requests)."""
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes; running dry early means another object than the catalog says."""
        wanted = max(self._size - self._position, 0)
        if size is not None and size >= 0:
            wanted = min(size, wanted)
        with translated_errors(self._unknown_is_outage):
            chunk = self._handle.read(size if size is not None else -1)
        if len(chunk) < wanted:
            raise BlobSizeMismatch("storage object is shorter than the catalog says")
        self._position += len(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from ``read`` (for io wrappers)."""
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def readall(self) -> bytes:
        """Read to the end."""
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the read position (remote backends fetch from there on the next read)."""
        with translated_errors(self._unknown_is_outage):
            self._position = self._handle.seek(offset, whence)
        return self._position

    def tell(self) -> int:
        """The read position."""
        return self._position

    def fileno(self) -> int:
        """The descriptor of a local file (lets the server use sendfile); remote files have none."""
        return self._handle.fileno()

    def close(self) -> None:
        """Close the backend file; a failing close of a read-only file loses nothing."""
        if not self.closed:
            with contextlib.suppress(Exception):
                self._handle.close()
        super().close()


class FsspecStorage:
    """The Storage protocol over an fsspec root; the filesystem is built lazily, once per process."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self._backend = backend_for(url, dict(options or {}))
        # Async filesystems (s3, http) must not be reused across a fork.
        self._filesystems: PerProcess[Any] = PerProcess(self._backend.create_filesystem)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate faults into built-ins. A generic store's outage also drops this process's filesystem: some
        (sshfs) keep a dead connection after their server restarts, and the next request builds a new one."""
        try:
            with translated_errors(self._backend.unknown_errors_are_outages):
                yield
        except (ConnectionError, TimeoutError):
            if self._backend.unknown_errors_are_outages:
                self._filesystems.take()
            raise

    def _filesystem(self) -> Any:
        """The filesystem of this process."""
        return self._filesystems.get()

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Translate faults; a 'not found' under a root that is itself gone is an outage, not a 404."""
        try:
            with self._errors():
                yield
        except FileNotFoundError:
            if not self._root_answers():
                raise ConnectionError(MESSAGES[ConnectionError]) from None
            raise

    def _root_answers(self) -> bool:
        try:
            with self._errors():
                return self._backend.root_exists(self._filesystem())
        except OSError:
            return False

    def _read(self, operation: Callable[[Any], T]) -> T:
        """Run a read on this process's filesystem, faults translated. A generic store's connection found dead (its
        server restarted) is dropped by _errors and the read tried once more on a new one, so each worker's first
        request after an outage does not fail for it."""
        for attempt in (1, 2):
            try:
                with self._storage_errors():
                    return operation(self._filesystem())
            except ConnectionError:
                if attempt == 2 or not (self._backend.unknown_errors_are_outages
                                        and self._backend.read_again_after_reconnect):
                    raise
        raise AssertionError("unreachable")

    def open_blob(self, path: str, size: int) -> BinaryIO:
        """Open an object for bounded, seekable reads after checking its size against the catalog's."""
        location = self._backend.locate(checked_path(path))
        handle = self._read(lambda fs: self._backend.open_blob(fs, location, size))
        return cast(BinaryIO, BlobReader(handle, size, self._backend.unknown_errors_are_outages))

    def read_bytes(self, path: str) -> bytes:
        """Return a small object (a manifest) whole."""
        location = self._backend.locate(checked_path(path))
        return self._read(lambda fs: self._backend.read_bytes(fs, location))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store a small object atomically (local: temp + fsync + rename; S3: one PUT)."""
        location = self._backend.locate(checked_path(path))
        with self._errors():
            self._backend.write_bytes(self._filesystem(), location, data)

    def put_file(self, local_path: str, path: str) -> None:
        """Upload a local file to ``path``."""
        location = self._backend.locate(checked_path(path))
        with self._errors():
            self._backend.put_file(self._filesystem(), local_path, location)

    def exists(self, path: str) -> bool:
        """Whether an object exists; a missing root raises ConnectionError instead of answering False."""
        location = self._backend.locate(checked_path(path))
        with self._storage_errors():
            found = self._backend.exists(self._filesystem(), location)
        if not found and not self._root_answers():
            raise ConnectionError(MESSAGES[ConnectionError])
        return found

    def local_path(self, path: str) -> str | None:
        """The absolute path of an object on a file:// root, else None."""
        return self._backend.local_path(self._backend.locate(checked_path(path)))

    def presigned_url(self, path: str, expires: int = 60) -> str | None:
        """A short-lived URL for nginx to fetch the object itself (S3 only), else None."""
        location = self._backend.locate(checked_path(path))
        with self._errors():
            return self._backend.presigned_url(self._filesystem(), location, expires)

    def read_versioned(self, path: str) -> tuple[bytes, str] | None:
        """A small object and a version token for ``replace_if``; None when it does not exist."""
        location = self._backend.locate(checked_path(path))
        try:
            return self._read(lambda fs: self._backend.read_versioned(fs, location))
        except FileNotFoundError:
            return None

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Store ``data`` atomically if the object is still at ``version`` (None: still absent), else False."""
        location = self._backend.locate(checked_path(path))
        with self._errors():
            return self._backend.replace_if(self._filesystem(), location, data, version)

    def create_root(self) -> None:
        """Create the root where the store has directories (generic stores: makedirs; S3, HTTP: nothing)."""
        with self._errors():
            self._backend.create_root(self._filesystem())

    def ping(self) -> None:
        """Raise a built-in storage error unless the root answers."""
        self._read(self._backend.ping)
