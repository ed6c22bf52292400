"""Storage adapters over fsspec; only built-in exceptions cross this package's boundary."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage_backends.base import BlobSizeMismatch, RangeNotSupported, Storage

__all__ = ["BlobSizeMismatch", "RangeNotSupported", "Storage", "create_local_root", "open_storage"]


def create_local_root(storage_url: str) -> None:
    """Create a file:// root (the CLI's first write does; the service treats a missing root as an outage)."""
    url = urlsplit(storage_url)
    if url.scheme == "file":
        Path(unquote(url.path)).mkdir(parents=True, exist_ok=True)


def open_storage(url: str, options: dict | None = None) -> Storage:
    """Return a Storage for an fsspec URL; the filesystem itself is created lazily, inside the worker that uses it."""
    from storage_backends.fsspec_storage import FsspecStorage

    return FsspecStorage(url, options or {})
