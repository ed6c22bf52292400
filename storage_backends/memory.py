"""memory://: fsspec's in-process store (tests, demos)."""

from __future__ import annotations

from typing import Any

from storage_backends.generic import FsspecBackend


class MemoryBackend(FsspecBackend):
    """fsspec's in-process store (tests, demos); its store is global to the process."""

    protocol = "memory"
    unknown_errors_are_outages = False

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> MemoryBackend:
        """memory://name: a root in the process's memory store."""
        return cls("/" + url.partition("://")[2].strip("/"), options)

    def root_exists(self, fs: Any) -> bool:
        """The process's memory is always there."""
        return True

    def ping(self, fs: Any) -> None:
        """Nothing to reach."""

    def write_bytes(self, fs: Any, location: str, data: bytes) -> None:
        """One assignment in the process's store: atomic already."""
        fs.pipe_file(location, data)

    def put_file(self, fs: Any, source: str, location: str) -> None:
        """As write_bytes."""
        fs.put_file(source, location)

    def create_filesystem(self) -> Any:
        """The shared MemoryFileSystem (its store is global anyway)."""
        import fsspec

        return fsspec.filesystem("memory")
