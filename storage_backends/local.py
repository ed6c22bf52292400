"""file://: a local directory, with sendfile and X-Accel paths, atomic writes and an flock compare-and-swap."""

from __future__ import annotations

import fcntl
import os
import shutil
from typing import IO, Any, BinaryIO

from storage_backends.atomic import atomic_write
from storage_backends.generic import FsspecBackend, MiB, check_size, thread_lock


class LocalBackend(FsspecBackend):
    """A local directory: plain file objects (fstat for the size) and atomic replace-on-write."""

    protocol = "file"
    unknown_errors_are_outages = False

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> LocalBackend:
        """file:///abs/dir (or file://localhost/abs/dir)."""
        host, _, path = url.partition("://")[2].partition("/")
        if host not in ("", "localhost") or not path:
            raise ValueError("file:// storage URL must be absolute: file:///abs/dir")
        return cls(os.path.normpath("/" + path), options)

    def locate(self, path: str) -> str:
        """An absolute path under the root."""
        return os.path.join(self.root, *path.split("/"))

    def open_blob(self, fs: Any, location: str, size: int) -> IO[bytes]:
        """Open the file; fstat on the open descriptor sees the same file we will read."""
        handle = open(location, "rb")  # handed to the caller, who closes it
        check_size(os.fstat(handle.fileno()).st_size, size, handle)
        return handle

    def read_bytes(self, fs: Any, location: str) -> bytes:
        """Read a small file whole."""
        with open(location, "rb") as handle:
            return handle.read()

    def write_bytes(self, fs: Any, location: str, data: bytes) -> None:
        """Write a temp file beside the target, fsync, then rename over it."""
        atomic_write(location, lambda out: out.write(data))

    def put_file(self, fs: Any, source: str, location: str) -> None:
        """Copy through a temp file so a reader never sees a partial blob."""

        def copy(out: BinaryIO) -> None:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, out, MiB)

        atomic_write(location, copy)  # 0644: nginx (X-Accel) must read blobs

    def root_exists(self, fs: Any) -> bool:
        """The root directory is there (an unmounted volume is an outage)."""
        return os.path.isdir(self.root)

    def ping(self, fs: Any) -> None:
        """The root directory exists."""
        if not self.root_exists(fs):
            raise ConnectionError("storage root unavailable")

    def local_path(self, location: str) -> str | None:
        """The absolute path (for sendfile / X-Accel-Redirect)."""
        return location

    def read_versioned(self, fs: Any, location: str) -> tuple[bytes, str]:
        """The file and a version from the same open descriptor (inode, mtime, size: a replace changes it)."""
        with open(location, "rb") as handle:
            return handle.read(), _file_version(os.fstat(handle.fileno()))

    def replace_if(self, fs: Any, location: str, data: bytes, version: str | None) -> bool:
        """Under an flock beside the file (held by one process at a time, released if it dies): compare, replace."""
        os.makedirs(os.path.dirname(location), exist_ok=True)
        fd = os.open(location + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with thread_lock(location):  # flock is per open file; threads of one process queue here first
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current: str | None = _file_version(os.stat(location))
                except FileNotFoundError:
                    current = None
                if current != version:
                    return False
                atomic_write(location, lambda out: out.write(data))
                return True
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def _file_version(status: os.stat_result) -> str:
    return f"{status.st_ino}-{status.st_mtime_ns}-{status.st_size}"
