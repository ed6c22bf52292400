"""Storage adapters over fsspec; only built-in exceptions cross this package's boundary."""

from __future__ import annotations

from storage_backends.base import BlobSizeMismatch, RangeNotSupported, Storage

__all__ = ["BlobSizeMismatch", "RangeNotSupported", "Storage", "open_storage"]


def open_storage(url: str, options: dict | None = None) -> Storage:
    """Return a Storage for an fsspec URL; the filesystem itself is created lazily, inside the worker that uses it."""
    from storage_backends.fsspec_storage import FsspecStorage

    return FsspecStorage(url, options or {})
