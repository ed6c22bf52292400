"""Storage adapters over fsspec; only built-in exceptions cross this package's boundary."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage_backends.base import BlobSizeMismatch, RangeNotSupported, Storage

__all__ = ["BlobSizeMismatch", "RangeNotSupported", "Storage", "create_root", "open_storage"]


def create_root(storage_url: str, options: dict | None = None) -> None:
    """Create the storage root where the store has directories (a local directory, a folder on SFTP or WebDAV):
    the CLI's first write does; the service treats a missing root as an outage. Buckets are the operator's."""
    url = urlsplit(storage_url)
    if url.scheme == "file":
        Path(unquote(url.path)).mkdir(parents=True, exist_ok=True)
        return
    from storage_backends.fsspec_storage import FsspecStorage

    FsspecStorage(storage_url, options or {}).create_root()


def open_storage(url: str, options: dict | None = None) -> Storage:
    """Return a Storage for an fsspec URL; the filesystem itself is created lazily, inside the worker that uses it."""
    from storage_backends.fsspec_storage import FsspecStorage

    return FsspecStorage(url, options or {})
