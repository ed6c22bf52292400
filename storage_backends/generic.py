"""The generic adapter: any fsspec filesystem (`fsspec.available_protocols()`, from installed packages) as a pkgdl
storage root. Specialised backends (local, memory, s3, http) subclass it and keep their speed-ups."""

from __future__ import annotations

import contextlib
import hashlib
import io
import secrets
import threading
from collections.abc import Callable
from typing import IO, Any

from storage_backends.base import BlobSizeMismatch

MiB = 1024 * 1024
# Remote reads fetch what the caller asked for plus at most this much ahead ("readahead" keeps one block),
# so memory per open blob stays bounded. Measured on a 64 MiB SeaweedFS object read in 1 MiB chunks:
# readahead 4 MiB ~385-485 MiB/s, 8 MiB ~8% faster for twice the memory, cache_type="none" (one GET per read)
# ~155-190 MiB/s.
READ_AHEAD = 4 * MiB


def checked_path(path: str) -> str:
    """Return ``path`` if it stays under the root (relative, '/'-separated, no '..'), else ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError("storage path must be a non-empty string")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError("storage path must be relative, without backslash or NUL")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise ValueError("storage path must not contain empty, '.' or '..' segments")
    return path


class FsspecBackend:
    """The generic adapter, and what every fsspec store does the same way; specialised backends override what their
    store does differently. A backend (built-in or a plug-in's) is a subclass with ``from_url``."""

    protocol = ""
    # Whether an exception the error table does not know is an outage (503) rather than a bug (500): true for stores
    # we know only through fsspec, whose client libraries raise their own exception types.
    unknown_errors_are_outages = True
    # Whether a read that found the connection dead is tried once more on a new filesystem: clients that keep one
    # connection (sshfs) do not reconnect by themselves; HTTP-based ones (gcsfs, adlfs) do, and retry already.
    read_again_after_reconnect = True

    def __init__(self, root: str, options: dict[str, Any]) -> None:
        self.root = root
        self.options = options

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> FsspecBackend:
        """The backend for a storage URL (malformed: ValueError, at start). Generic: fsspec's own reading of the
        URL (host, port, user of ``sftp://user@host:22/dir`` become filesystem options; ``options`` win)."""
        import fsspec

        protocol = url.partition("://")[0].lower()
        filesystem = fsspec.get_filesystem_class(protocol)  # ImportError: the implementation is not installed
        backend = cls(filesystem._strip_protocol(url), {**filesystem._get_kwargs_from_urls(url), **options})
        backend.protocol = protocol
        return backend

    def create_filesystem(self) -> Any:
        """Build the fsspec filesystem (no I/O); skip fsspec's instance cache so no other code shares it."""
        import fsspec

        return fsspec.filesystem(self.protocol, skip_instance_cache=True, **self.options)

    def locate(self, path: str) -> str:
        """The backend address of a checked relative path."""
        return f"{self.root.rstrip('/')}/{path}"

    def open_blob(self, fs: Any, location: str, size: int) -> IO[bytes]:
        """Open for reading and compare the size the backend reports while opening."""
        handle = fs.open(location, "rb", **self.open_options())
        actual = getattr(handle, "size", None)
        if actual is None:
            actual = fs.size(location)
        check_size(actual, size, handle)
        return handle

    def open_options(self) -> dict[str, Any]:
        """Extra arguments for ``fs.open``."""
        return {}

    def read_bytes(self, fs: Any, location: str) -> bytes:
        """Read a small object whole."""
        return fs.cat_file(location)

    def write_bytes(self, fs: Any, location: str, data: bytes) -> None:
        """Store a small object so that readers see the old one or the new one: a temp object beside it, then a move
        over it (a rename on SFTP and WebDAV; stores whose writes are atomic anyway override this)."""
        self._atomically(fs, location, lambda temp: fs.pipe_file(temp, data))

    def put_file(self, fs: Any, source: str, location: str) -> None:
        """Upload a local file, atomically as write_bytes."""
        self._atomically(fs, location, lambda temp: fs.put_file(source, temp))

    def move_over(self, fs: Any, source: str, target: str) -> None:
        """Move ``source`` over ``target`` (replacing it): a rename where the store has one (sshfs: posix-rename)."""
        fs.mv(source, target)

    def _atomically(self, fs: Any, location: str, write: Callable[[str], None]) -> None:
        parent = location.rsplit("/", 1)[0] if "/" in location.strip("/") else ""
        if parent:
            fs.makedirs(parent, exist_ok=True)
        temp = f"{location}.pkgdl-{secrets.token_hex(6)}.tmp"
        try:
            write(temp)
            self.move_over(fs, temp, location)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm_file(temp)
            raise

    def exists(self, fs: Any, location: str) -> bool:
        """Whether an object (not a directory) is at ``location``."""
        try:
            return fs.info(location).get("type") == "file"
        except FileNotFoundError:
            return False

    def root_exists(self, fs: Any) -> bool:
        """Whether the root itself is there (a missing root is an outage, not a missing object)."""
        try:
            self.ping(fs)
        except FileNotFoundError:
            return False
        return True

    def ping(self, fs: Any) -> None:
        """Raise unless the root answers: the root directory, or, on object stores where a prefix exists only once
        an object is under it, its bucket (the root's first component)."""
        try:
            fs.info(self.root)
        except FileNotFoundError:
            top = self.root.strip("/").split("/", 1)[0]
            if top == self.root.strip("/"):
                raise
            info = fs.info(top)
            if info.get("type") != "directory":
                raise

    def create_root(self, fs: Any) -> None:
        """Make the root directory (stores without directories make nothing)."""
        fs.makedirs(self.root, exist_ok=True)

    def local_path(self, location: str) -> str | None:
        """The filesystem path of an object, for local roots only."""
        return None

    def presigned_url(self, fs: Any, location: str, expires: int) -> str | None:
        """A short-lived URL that reads the object without our credentials, where the store has them."""
        return None

    def read_versioned(self, fs: Any, location: str) -> tuple[bytes, str]:
        """A small object and a version token (here: its digest)."""
        data = self.read_bytes(fs, location)
        return data, hashlib.sha256(data).hexdigest()

    def replace_if(self, fs: Any, location: str, data: bytes, version: str | None) -> bool:
        """Compare and write under a lock of this process (the memory store lives in this process)."""
        with thread_lock(location):
            try:
                current: str | None = self.read_versioned(fs, location)[1]
            except FileNotFoundError:
                current = None
            if current != version:
                return False
            self.write_bytes(fs, location, data)
            return True


def check_size(actual: int | None, size: int, handle: IO[bytes] | None = None) -> None:
    """Raise BlobSizeMismatch (closing ``handle``) when a known size is not the catalog's."""
    if actual is not None and actual != size:
        if handle is not None:
            handle.close()
        raise BlobSizeMismatch("storage object size differs from the catalog")


# Threads of one process that compare-and-swap the same object queue on its lock first (flock is per open file).
# A fixed set of striped locks: bounded memory whatever the number of objects (two objects sharing a stripe only
# take turns).
_LOCK_STRIPES = tuple(threading.Lock() for _ in range(64))


def thread_lock(location: str) -> threading.Lock:
    return _LOCK_STRIPES[hash(location) % len(_LOCK_STRIPES)]


class RemoteObject(io.RawIOBase):
    """A read-only remote object of a known size with a read position: what the S3 and HTTP readers share."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._position = 0  # where the caller reads next

    def readable(self) -> bool:
        """Blobs are read-only."""
        return True

    def seekable(self) -> bool:
        """A seek is served by the next read (a new request, a ranged read or a skip)."""
        return True

    def tell(self) -> int:
        """The read position."""
        return self._position

    def _target(self, offset: int, whence: int) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        return max(base + offset, 0)


class BucketBackend(FsspecBackend):
    """A store of whole objects in buckets (S3, GCS, Azure containers): ``scheme://bucket/prefix``, an upload replaces
    an object atomically (no temp object and copy), reads are buffered one READ_AHEAD block at a time, and the bucket
    is the operator's (created with its policies; a prefix needs nothing)."""

    bucket_word = "bucket"

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> BucketBackend:
        """scheme://bucket/prefix."""
        import fsspec

        fsspec.get_filesystem_class(cls.protocol)  # ImportError: the extra is missing (the registry names it)
        root = url.partition("://")[2].strip("/")
        bucket, _, prefix = root.partition("/")
        scheme = url.partition("://")[0].lower()
        if not bucket:
            raise ValueError(f"{scheme}:// storage URL needs a {cls.bucket_word}: {scheme}://{cls.bucket_word}/prefix")
        if prefix:
            checked_path(prefix)
        return cls(root, options)

    def open_options(self) -> dict[str, Any]:
        """Bounded reads (adlfs would fetch blocks of tens of MiB)."""
        return {"block_size": READ_AHEAD, "cache_type": "readahead"}

    def write_bytes(self, fs: Any, location: str, data: bytes) -> None:
        """One upload."""
        fs.pipe_file(location, data)

    def put_file(self, fs: Any, source: str, location: str) -> None:
        """One upload (multipart or in blocks for large files: the object appears whole when it completes)."""
        fs.put_file(source, location)

    def create_root(self, fs: Any) -> None:
        """The bucket is the operator's."""
