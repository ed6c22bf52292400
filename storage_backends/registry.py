"""Which backend serves a storage URL: the built-ins by scheme, third-party backends registered through the
``pkgdl.storage_backends`` entry-point group, and the generic adapter for every other protocol fsspec knows.

A plug-in is a package with a FsspecBackend subclass and, in its pyproject.toml::

    [project.entry-points."pkgdl.storage_backends"]
    myfs = "pkgdl_myfs:MyBackend"      # serves myfs:// URLs

so that `pip install pkgdl-myfs` is enough. A plug-in may also take over a built-in scheme.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from storage_backends.azure import AzureBackend
from storage_backends.gcs import GcsBackend
from storage_backends.generic import FsspecBackend
from storage_backends.http import HttpBackend
from storage_backends.local import LocalBackend
from storage_backends.memory import MemoryBackend
from storage_backends.s3 import S3Backend
from storage_backends.webdav import WebdavBackend

ENTRY_POINT_GROUP = "pkgdl.storage_backends"
BUILTIN: dict[str, type[FsspecBackend]] = {
    "file": LocalBackend,
    "memory": MemoryBackend,
    "s3": S3Backend,
    "s3a": S3Backend,
    "http": HttpBackend,
    "https": HttpBackend,
    "az": AzureBackend,
    "abfs": AzureBackend,
    "abfss": AzureBackend,
    "gs": GcsBackend,
    "gcs": GcsBackend,
    "webdav": WebdavBackend,
    "webdavs": WebdavBackend,
}
# The pip extra that brings a scheme's fsspec implementation (pyproject.toml), named when it is missing.
EXTRAS = {"az": "azure", "abfs": "azure", "abfss": "azure", "adl": "azure", "gs": "gcs", "gcs": "gcs",
          "sftp": "sftp", "ssh": "sftp", "webdav": "webdav", "webdavs": "webdav", "dav": "webdav"}


@cache
def plugins() -> dict[str, type[FsspecBackend]]:
    """Backends registered by installed packages, by scheme (read once per process)."""
    found = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        backend = entry.load()
        if not (isinstance(backend, type) and issubclass(backend, FsspecBackend)):
            raise ValueError(f"entry point {entry.name!r} of {ENTRY_POINT_GROUP} is not a FsspecBackend subclass")
        found[entry.name.lower()] = backend
    return found


def backend_for(url: str, options: dict[str, Any]) -> FsspecBackend:
    """The backend for a storage URL; an unsupported or malformed URL, or a missing implementation, fails here
    (at start, before any I/O) with a ValueError that says what to install or write."""
    import fsspec

    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator or not scheme:
        raise ValueError("storage URL needs a scheme, e.g. file:///srv/packages, s3://bucket/prefix")
    backend = plugins().get(scheme) or BUILTIN.get(scheme)
    if backend is None and scheme not in fsspec.available_protocols():
        raise ValueError(f"unsupported storage URL scheme {scheme!r}: neither pkgdl's ({', '.join(sorted(BUILTIN))}),"
                         " a plug-in's, nor one fsspec knows")
    try:
        return (backend or FsspecBackend).from_url(url, options)
    except ImportError:
        extra = EXTRAS.get(scheme)
        hint = f"pip install 'pkgdl[{extra}]'" if extra else "install the package fsspec names for it"
        raise ValueError(f"storage URL scheme {scheme!r} needs its fsspec implementation: {hint}") from None
