"""``FsspecStorage``: the Storage protocol over fsspec roots (file://, memory://, s3://, http(s)://)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, BinaryIO, cast
from urllib.parse import quote, urlsplit

from fsspec.asyn import sync

from storage_backends.atomic import atomic_write
from storage_backends.base import BlobSizeMismatch, RangeNotSupported
from storage_backends.errors import MESSAGES, raise_for_status, translated_errors
from storage_backends.per_process import PerProcess

MiB = 1024 * 1024
# Remote reads fetch what the caller asked for plus at most this much ahead ("readahead" keeps one block),
# so memory per open blob stays bounded. Measured on a 64 MiB SeaweedFS object read in 1 MiB chunks:
# readahead 4 MiB ~385-485 MiB/s, 8 MiB ~8% faster for twice the memory, cache_type="none" (one GET per read)
# ~155-190 MiB/s.
READ_AHEAD = 4 * MiB
S3_CONFIG_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"max_attempts": 2, "mode": "standard"},
    # SigV4 for presigned URLs (botocore signs them with SigV2 unless told; newer AWS regions refuse SigV2).
    "signature_version": "s3v4",
}
S3FS_RETRIES = 2
# Lifetime of the presigned URL an object GET is made with (it is used at once, by this process only).
PRESIGNED_READ_SECONDS = 300
# An HTTP origin that ignores Range (Python's http.server, many simple static servers) answers 200 with the whole
# object: we then read it from the start and drop the bytes before the offset, up to this many; further is a 502.
HTTP_MAX_SKIP = 64 * MiB
HTTP_TIMEOUT_DEFAULTS: dict[str, float | None] = {
    "total": None,
    "connect": 5,
    "sock_connect": 5,
    "sock_read": 30,
}


def checked_path(path: str) -> str:
    """Return ``path`` if it stays under the root (relative, '/'-separated, no '..'), else ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError("storage path must be a non-empty string")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError("storage path must be relative, without backslash or NUL")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise ValueError("storage path must not contain empty, '.' or '..' segments")
    return path


class BlobReader(io.RawIOBase):
    """A read-only view of a backend file that translates its errors and never ends before ``size`` bytes."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        super().__init__()
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
        with translated_errors():
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
        with translated_errors():
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


class _Backend:
    """What every fsspec store does the same way; subclasses override what their store does differently."""

    protocol = ""

    def __init__(self, root: str, options: dict[str, Any]) -> None:
        self.root = root
        self.options = options

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
        _check_size(actual, size, handle)
        return handle

    def open_options(self) -> dict[str, Any]:
        """Extra arguments for ``fs.open``."""
        return {}

    def read_bytes(self, fs: Any, location: str) -> bytes:
        """Read a small object whole."""
        return fs.cat_file(location)

    def write_bytes(self, fs: Any, location: str, data: bytes) -> None:
        """Store a small object in one operation."""
        fs.pipe_file(location, data)

    def put_file(self, fs: Any, source: str, location: str) -> None:
        """Upload a local file."""
        fs.put_file(source, location)

    def exists(self, fs: Any, location: str) -> bool:
        """Whether an object (not a directory) is at ``location``."""
        try:
            return fs.info(location).get("type") == "file"
        except FileNotFoundError:
            return False

    def root_exists(self, fs: Any) -> bool:
        """Whether the root itself is there (a missing root is an outage, not a missing object)."""
        return True

    def ping(self, fs: Any) -> None:
        """Raise unless the root answers."""

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
        with _thread_lock(location):
            try:
                current: str | None = self.read_versioned(fs, location)[1]
            except FileNotFoundError:
                current = None
            if current != version:
                return False
            self.write_bytes(fs, location, data)
            return True


def _check_size(actual: int | None, size: int, handle: IO[bytes] | None = None) -> None:
    """Raise BlobSizeMismatch (closing ``handle``) when a known size is not the catalog's."""
    if actual is not None and actual != size:
        if handle is not None:
            handle.close()
        raise BlobSizeMismatch("storage object size differs from the catalog")


# Threads of one process that compare-and-swap the same object queue on its lock first (flock is per open file).
# A fixed set of striped locks: bounded memory whatever the number of objects (two objects sharing a stripe only
# take turns).
_LOCK_STRIPES = tuple(threading.Lock() for _ in range(64))


def _thread_lock(location: str) -> threading.Lock:
    return _LOCK_STRIPES[hash(location) % len(_LOCK_STRIPES)]


class _MemoryBackend(_Backend):
    """fsspec's in-process store (tests, demos); its store is global to the process."""

    protocol = "memory"

    def create_filesystem(self) -> Any:
        """The shared MemoryFileSystem (its store is global anyway)."""
        import fsspec

        return fsspec.filesystem("memory")



class _LocalBackend(_Backend):
    """A local directory: plain file objects (fstat for the size) and atomic replace-on-write."""

    protocol = "file"

    def locate(self, path: str) -> str:
        """An absolute path under the root."""
        return os.path.join(self.root, *path.split("/"))

    def open_blob(self, fs: Any, location: str, size: int) -> IO[bytes]:
        """Open the file; fstat on the open descriptor sees the same file we will read."""
        handle = open(location, "rb")  # handed to the caller, who closes it
        _check_size(os.fstat(handle.fileno()).st_size, size, handle)
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
            with _thread_lock(location):  # flock is per open file; threads of one process queue here first
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


class _S3Backend(_Backend):
    """S3 through s3fs, with timeouts and few retries so an outage surfaces in seconds, not minutes."""

    protocol = "s3"

    def __init__(self, root: str, options: dict[str, Any]) -> None:
        options = dict(options)
        # s3fs retries on top of botocore's; its class default (5, with backoff) multiplies every timeout.
        self.retries = int(options.pop("retries", S3FS_RETRIES))
        config = {**S3_CONFIG_DEFAULTS, **options.get("config_kwargs", {})}
        super().__init__(root, {"use_listings_cache": False, **options, "config_kwargs": config})
        self.bucket = root.split("/", 1)[0]
        self._pools: PerProcess[Any] = PerProcess(self._new_http_pool)

    def create_filesystem(self) -> Any:
        """An S3FileSystem with our retry count (an attribute, not a constructor argument)."""
        fs = super().create_filesystem()
        fs.retries = self.retries
        return fs

    def open_blob(self, fs: Any, location: str, size: int) -> IO[bytes]:
        """HEAD for the size (and a clean 404/403 before any byte), then one streaming GET per read position."""
        _check_size(fs.info(location)["size"], size)
        return _S3Stream(lambda: self.presigned_url(fs, location, PRESIGNED_READ_SECONDS), self._http_pool(), size)

    def _http_pool(self) -> Any:
        """This process's urllib3 pool for the object GETs (thread-safe; connections kept alive between reads)."""
        return self._pools.get()

    def _new_http_pool(self) -> Any:
        import urllib3

        config = self.options["config_kwargs"]
        verify = self.options.get("client_kwargs", {}).get("verify", True)
        tls: dict[str, Any] = {"cert_reqs": "CERT_NONE"} if verify is False else {}
        if isinstance(verify, str):
            tls["ca_certs"] = verify
        return urllib3.PoolManager(
            maxsize=16,
            # One retry of the request (a kept-alive connection the server had just closed); bodies are never
            # re-read (preload_content=False), so a retry can never repeat or skip bytes.
            retries=urllib3.Retry(total=1, redirect=False, status=0, raise_on_status=False),
            timeout=urllib3.Timeout(connect=config["connect_timeout"], read=config["read_timeout"]),
            **tls,
        )

    def read_versioned(self, fs: Any, location: str) -> tuple[bytes, str]:
        """The object and its ETag, from one GET."""
        bucket, key, _ = fs.split_path(location)
        answer = fs.call_s3("get_object", Bucket=bucket, Key=key)
        body = answer["Body"]
        try:
            return sync(fs.loop, body.read), answer["ETag"]
        finally:
            body.close()

    def replace_if(self, fs: Any, location: str, data: bytes, version: str | None) -> bool:
        """A conditional PUT (If-Match: the ETag read, or If-None-Match: * for a new object); 412 -> False."""
        bucket, key, _ = fs.split_path(location)
        condition = {"IfMatch": version} if version is not None else {"IfNoneMatch": "*"}
        try:
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def presigned_url(self, fs: Any, location: str, expires: int) -> str | None:
        """A SigV4 presigned GET (computed locally, no request)."""
        return fs.sign(location, expiration=expires)

    def root_exists(self, fs: Any) -> bool:
        """HEAD the bucket."""
        try:
            fs.call_s3("head_bucket", Bucket=self.bucket)
        except FileNotFoundError:
            return False
        return True

    def ping(self, fs: Any) -> None:
        """The bucket answers with our credentials."""
        if not self.root_exists(fs):
            raise ConnectionError("storage root unavailable")


def _precondition_failed(exc: BaseException) -> bool:
    """Whether S3 refused a conditional write (412 PreconditionFailed, or 409 for a concurrent one)."""
    cause = exc.__cause__ or exc.__context__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or "pre-condition" in str(exc).lower()


class _RemoteObject(io.RawIOBase):
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


class _S3Stream(_RemoteObject):
    """Reads an S3 object through ONE GET from the current position to the end, in the caller's chunk sizes.

    The GET is of a presigned URL, read by urllib3 in the calling thread. Measured against a direct GET (bench/,
    scenario 5): s3fs's files, which fetch a 4 MiB block per request, ~0.3-0.4; one streamed aiobotocore GET, which
    hops to s3fs's event-loop thread for every chunk, ~0.57; this, with no hop and no per-block request, see
    README's Performance section. A seek elsewhere starts a new GET (download.py seeks once per range).
    """

    def __init__(self, presign: Callable[[], str | None], pool: Any, size: int) -> None:
        super().__init__(size)
        self._presign, self._pool = presign, pool
        self._body: Any = None

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the read position; a new GET starts from there on the next read."""
        target = self._target(offset, whence)
        if target != self._position:
            self._drop_body()
            self._position = target
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._size - self._position if size is None or size < 0 else min(size, self._size - self._position)
        if wanted <= 0:
            return b""
        if self._body is None:
            self._body = self._get()
        data = self._body.read(wanted, decode_content=False)
        self._position += len(data)
        return data

    def _get(self) -> Any:
        """Start the GET from the current position; a failing status raises before any byte was read."""
        url = self._presign()
        if url is None:
            raise ConnectionError("S3 presigning is not available")
        headers = {"Range": f"bytes={self._position}-{self._size - 1}"} if self._position else {}
        response = self._pool.request("GET", url, headers=headers, preload_content=False, decode_content=False,
                                      redirect=False)
        try:
            if response.status not in (200, 206):
                raise_for_status(response.status if response.status >= 400 else 502)
            if (response.status == 206) != bool(self._position):
                raise BlobSizeMismatch("storage answered another part of the object than asked for")
            if response.length_remaining is not None and response.length_remaining != self._size - self._position:
                raise BlobSizeMismatch("storage object is not the size the catalog says")
        except BaseException:
            _discard(response)
            raise
        return response

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._drop_body()
        super().close()

    def _drop_body(self) -> None:
        """Return a fully read connection to the pool; close one left mid-body (its rest is never read)."""
        if self._body is not None:
            body, self._body = self._body, None
            if body.length_remaining == 0:
                with contextlib.suppress(Exception):
                    body.release_conn()
            else:
                _discard(body)


def _discard(response: Any) -> None:
    """Close the connection of a response whose body is not read to the end: pooled, its unread bytes (an error
    document, the rest of an object) would be taken for the answer to the next request on it."""
    with contextlib.suppress(Exception):
        response.close()
        response.release_conn()


class _HttpBackend(_Backend):
    """A read-only HTTP(S) root; we read statuses because fsspec's ``_info`` calls every failure a 404."""

    def __init__(self, root: str, options: dict[str, Any]) -> None:
        super().__init__(root, options)
        self.protocol = urlsplit(root).scheme

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
        _check_size(length, size)
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

    def ping(self, fs: Any) -> None:
        """The server answers the root URL with any status below 500."""
        status, _ = _head(fs, self.root.rstrip("/") + "/")
        if status >= 500:
            raise_for_status(status)


class _HttpBlob(_RemoteObject):
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


def _local_root(rest: str) -> str:
    host, _, path = rest.partition("/")
    if host not in ("", "localhost") or not path:
        raise ValueError("file:// storage URL must be absolute: file:///abs/dir")
    return os.path.normpath("/" + path)


def _s3_root(rest: str) -> str:
    root = rest.strip("/")
    if not root.split("/", 1)[0]:
        raise ValueError("s3:// storage URL needs a bucket: s3://bucket/prefix")
    _, _, prefix = root.partition("/")
    if prefix:
        checked_path(prefix)
    return root


def _http_root(url: str) -> str:
    if not urlsplit(url).hostname:
        raise ValueError("http(s):// storage URL needs a host")
    return url.rstrip("/")


def _backend_for(url: str, options: dict[str, Any]) -> _Backend:
    """Pick the backend for a URL; an unsupported or malformed URL fails here, at start."""
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise ValueError("storage URL needs a scheme: file://, memory://, s3://, http:// or https://")
    if scheme == "file":
        return _LocalBackend(_local_root(rest), options)
    if scheme == "memory":
        return _MemoryBackend("/" + rest.strip("/"), options)
    if scheme in ("s3", "s3a"):
        return _S3Backend(_s3_root(rest), options)
    if scheme in ("http", "https"):
        return _HttpBackend(_http_root(url), options)
    raise ValueError(f"unsupported storage URL scheme {scheme!r}: use file, memory, s3, http or https")


class FsspecStorage:
    """The Storage protocol over an fsspec root; the filesystem is built lazily, once per process."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self._backend = _backend_for(url, dict(options or {}))
        # Async filesystems (s3, http) must not be reused across a fork.
        self._filesystems: PerProcess[Any] = PerProcess(self._backend.create_filesystem)

    def _filesystem(self) -> Any:
        """The filesystem of this process."""
        return self._filesystems.get()

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Translate faults; a 'not found' under a root that is itself gone is an outage, not a 404."""
        try:
            with translated_errors():
                yield
        except FileNotFoundError:
            if not self._root_answers():
                raise ConnectionError(MESSAGES[ConnectionError]) from None
            raise

    def _root_answers(self) -> bool:
        try:
            with translated_errors():
                return self._backend.root_exists(self._filesystem())
        except OSError:
            return False

    def open_blob(self, path: str, size: int) -> BinaryIO:
        """Open an object for bounded, seekable reads after checking its size against the catalog's."""
        location = self._backend.locate(checked_path(path))
        with self._storage_errors():
            handle = self._backend.open_blob(self._filesystem(), location, size)
        return cast(BinaryIO, BlobReader(handle, size))

    def read_bytes(self, path: str) -> bytes:
        """Return a small object (a manifest) whole."""
        location = self._backend.locate(checked_path(path))
        with self._storage_errors():
            return self._backend.read_bytes(self._filesystem(), location)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store a small object atomically (local: temp + fsync + rename; S3: one PUT)."""
        location = self._backend.locate(checked_path(path))
        with translated_errors():
            self._backend.write_bytes(self._filesystem(), location, data)

    def put_file(self, local_path: str, path: str) -> None:
        """Upload a local file to ``path``."""
        location = self._backend.locate(checked_path(path))
        with translated_errors():
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
        with translated_errors():
            return self._backend.presigned_url(self._filesystem(), location, expires)

    def read_versioned(self, path: str) -> tuple[bytes, str] | None:
        """A small object and a version token for ``replace_if``; None when it does not exist."""
        location = self._backend.locate(checked_path(path))
        try:
            with self._storage_errors():
                return self._backend.read_versioned(self._filesystem(), location)
        except FileNotFoundError:
            return None

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Store ``data`` atomically if the object is still at ``version`` (None: still absent), else False."""
        location = self._backend.locate(checked_path(path))
        with translated_errors():
            return self._backend.replace_if(self._filesystem(), location, data, version)

    def ping(self) -> None:
        """Raise a built-in storage error unless the root answers."""
        with translated_errors():
            self._backend.ping(self._filesystem())
