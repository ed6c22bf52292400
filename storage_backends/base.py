"""The storage interface the web layer and the CLI depend on.

Every backend raises only built-in exceptions across this boundary, so callers map faults without knowing fsspec:

- ``FileNotFoundError``: the object does not exist (HTTP 404)
- ``PermissionError``: the storage refused our credentials (HTTP 502)
- ``TimeoutError``: the storage did not answer in time (HTTP 504)
- ``ConnectionError``: the storage is unreachable or failing (HTTP 503, Retry-After)
- ``BlobSizeMismatch``: the stored object's size differs from the size the catalog promises (HTTP 502)
- ``RangeNotSupported``: the storage cannot read from the asked offset (an HTTP origin that ignores Range, past the
  bytes we are willing to skip) (HTTP 502)
"""

from __future__ import annotations

from typing import BinaryIO, Protocol


class BlobSizeMismatch(OSError):
    """The stored object does not have the size the manifest promises: never serve it."""


class RangeNotSupported(OSError):
    """The storage cannot start a read at this offset: answer a clean server error, never a wrong byte."""


class Storage(Protocol):
    """What pkgdl needs from a byte store; paths are relative to the storage root, '/'-separated."""

    def open_blob(self, path: str, size: int) -> BinaryIO:
        """Open an object for reading (seek + read in bounded chunks); ``size`` is the size the catalog promises."""
        ...

    def read_bytes(self, path: str) -> bytes:
        """Return a small object (a manifest) whole."""
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store a small object so that readers see either the old or the new content, never a part."""
        ...

    def put_file(self, local_path: str, path: str) -> None:
        """Upload a local file to ``path`` (used by the importer for blobs)."""
        ...

    def exists(self, path: str) -> bool:
        """Tell whether an object exists."""
        ...

    def local_path(self, path: str) -> str | None:
        """The absolute filesystem path of an object on a local backend, else None (for sendfile / X-Accel)."""
        ...

    def presigned_url(self, path: str, expires: int = 60) -> str | None:
        """A short-lived URL that reads the object without credentials (S3), else None."""
        ...

    def read_versioned(self, path: str) -> tuple[bytes, str] | None:
        """A small object and an opaque version token for ``replace_if``; None when it does not exist."""
        ...

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Store ``data`` atomically only if the object is still at ``version`` (None: still absent); False when
        another writer got there first (compare-and-swap: flock on local roots, conditional PUT on S3)."""
        ...

    def ping(self) -> None:
        """Raise one of the built-in errors above unless the storage root answers."""
        ...
