"""http(s)://: a read-only HTTP origin; statuses are read ourselves (fsspec calls every failure a 404), and an
origin that ignores Range is read as one stream."""

from __future__ import annotations

import contextlib
import errno
import io
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import quote, urlsplit

from storage_backends.base import RangeNotSupported
from storage_backends.errors import raise_for_status
from storage_backends.generic import READ_AHEAD, FsspecBackend, MiB, RemoteObject, check_size

# An HTTP origin that ignores Range (Python's http.server, many simple static servers) answers 200 with the whole
# object: we then read it from the start and drop the bytes before the offset, up to this many; further is a 502.
HTTP_MAX_SKIP = 64 * MiB
HTTP_TIMEOUT_DEFAULTS: dict[str, float | None] = {
    "total": None,
    "connect": 5,
    "sock_connect": 5,
    "sock_read": 30,
}


class HttpBackend(FsspecBackend):
    """A read-only HTTP(S) root; we read statuses because fsspec's ``_info`` calls every failure a 404."""

    unknown_errors_are_outages = False

    def __init__(self, root: str, options: dict[str, Any]) -> None:
        super().__init__(root, options)
        self.protocol = urlsplit(root).scheme

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> HttpBackend:
        """http(s)://host/path."""
        if not urlsplit(url).hostname:
            raise ValueError("http(s):// storage URL needs a host")
        return cls(url.rstrip("/"), options)

    def create_filesystem(self) -> Any:
        """An HTTPFileSystem whose aiohttp session has connect and read timeouts."""
        import aiohttp
        import fsspec

        client_kwargs = dict(self.options.get("client_kwargs", {}))
        timeout = client_kwargs.get("timeout", HTTP_TIMEOUT_DEFAULTS)
        if isinstance(timeout, int | float):
            timeout = {"total": timeout}
        if isinstance(timeout, Mapping):
            client_kwargs["timeout"] = aiohttp.ClientTimeout(**timeout)
        options = {**self.options, "client_kwargs": client_kwargs}
        return fsspec.filesystem(self.protocol, skip_instance_cache=True, **options)

    def locate(self, path: str) -> str:
        """Quote the path so '?', '#' and '%' in a name stay part of the path."""
        return f"{self.root.rstrip('/')}/{quote(path, safe='/')}"

    def open_blob(self, fs: Any, location: str, size: int) -> IO[bytes]:
        """HEAD first (status and length), then open with ``size=`` so fsspec never calls ``_info``."""
        status, length = _head(fs, location)
        raise_for_status(status)
        check_size(length, size)
        if size == 0:  # fsspec treats size=0 as unknown and would call _info
            return io.BytesIO()
        return _HttpBlob(fs, location, size)

    def exists(self, fs: Any, location: str) -> bool:
        """2xx: yes; 404/410: no; anything else is a fault, not an answer."""
        status, _ = _head(fs, location)
        if status in (404, 410):
            return False
        raise_for_status(status)
        return True

    def write_bytes(self, fs: Any, location: str, data: bytes) -> None:
        """HTTP roots are read-only."""
        raise PermissionError(errno.EROFS, "storage is read-only")

    def put_file(self, fs: Any, source: str, location: str) -> None:
        """HTTP roots are read-only."""
        raise PermissionError(errno.EROFS, "storage is read-only")

    def create_root(self, fs: Any) -> None:
        """Read-only: nothing to create."""

    def ping(self, fs: Any) -> None:
        """The server answers the root URL with any status below 500."""
        status, _ = _head(fs, self.root.rstrip("/") + "/")
        if status >= 500:
            raise_for_status(status)


class _HttpBlob(RemoteObject):
    """An HTTP object read through fsspec's ranged reads; when the origin ignores Range (fsspec then refuses any read
    past offset 0 with a ValueError), it is read as one stream from the start, skipping up to HTTP_MAX_SKIP bytes."""

    def __init__(self, fs: Any, url: str, size: int) -> None:
        super().__init__(size)
        self._fs, self._url = fs, url
        self._ranged: Any = None
        self._stream: Any = None  # the whole-object stream, once the origin proved it ignores Range
        self._ignores_range = False
        self._stream_position = 0  # where the stream is
        self._ranged = fs.open(url, "rb", size=size, block_size=READ_AHEAD, cache_type="readahead")

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the read position; the next read fetches from there."""
        self._position = self._target(offset, whence)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes from the position."""
        if not self._ignores_range:
            try:
                self._ranged.seek(self._position)
                chunk = self._ranged.read(size)
            except ValueError as exc:
                if "range requests" not in str(exc):  # fsspec's words for "the server ignored Range"
                    raise
                self._ignores_range = True
            else:
                self._position += len(chunk)
                return chunk
        return self._read_stream(size)

    def _read_stream(self, size: int | None) -> bytes:
        if self._stream is not None and self._position < self._stream_position:  # a range before the last one
            self._stream.close()
            self._stream, self._stream_position = None, 0
        if self._position - self._stream_position > HTTP_MAX_SKIP:  # checked before any GET is started
            raise RangeNotSupported("the storage origin ignores Range and the offset is too far to skip")
        if self._stream is None:
            self._stream = self._fs.open(self._url, "rb", size=self._size, block_size=0)
        while self._stream_position < self._position:
            skipped = self._stream.read(min(self._position - self._stream_position, MiB))
            if not skipped:
                return b""
            self._stream_position += len(skipped)
        wanted = self._size - self._position if size is None or size < 0 else size
        parts = []
        while wanted > 0:  # a stream read returns what arrived; the caller expects all it asked for unless at the end
            part = self._stream.read(wanted)
            if not part:
                break
            parts.append(part)
            wanted -= len(part)
        chunk = b"".join(parts)
        self._position += len(chunk)
        self._stream_position += len(chunk)
        return chunk

    def close(self) -> None:
        """Close what is open."""
        for handle in (self._ranged, self._stream):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        super().close()


def _head(fs: Any, url: str) -> tuple[int, int | None]:
    """HEAD ``url`` on the filesystem's own loop and session: (status, Content-Length or None)."""
    from fsspec.asyn import sync

    async def head() -> tuple[int, int | None]:
        session = await fs.set_session()
        async with session.head(fs.encode_url(url), allow_redirects=True, **fs.kwargs) as response:
            length = response.headers.get("Content-Length", "")
            encoded = response.headers.get("Content-Encoding", "identity") != "identity"
            return response.status, int(length) if length.isdigit() and not encoded else None

    return sync(fs.loop, head)
