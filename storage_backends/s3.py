"""s3:// (and s3a://): S3 through s3fs for metadata and writes, one streaming GET of a presigned URL per read
position, conditional PUTs for compare-and-swap, presigned URLs for X-Accel offload."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import IO, Any

from fsspec.asyn import sync

from storage_backends.base import BlobSizeMismatch
from storage_backends.errors import raise_for_status
from storage_backends.generic import BucketBackend, RemoteObject, check_size
from storage_backends.per_process import PerProcess

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


class S3Backend(BucketBackend):
    """S3 through s3fs, with timeouts and few retries so an outage surfaces in seconds, not minutes."""

    protocol = "s3"
    unknown_errors_are_outages = False

    def __init__(self, root: str, options: dict[str, Any]) -> None:
        options = dict(options)
        # s3fs retries on top of botocore's; its class default (5, with backoff) multiplies every timeout.
        self.retries = int(options.pop("retries", S3FS_RETRIES))
        config = {**S3_CONFIG_DEFAULTS, **options.get("config_kwargs", {})}
        super().__init__(root, {"use_listings_cache": False, **options, "config_kwargs": config})
        self.bucket = root.split("/", 1)[0]
        self._pools: PerProcess[Any] = PerProcess(self._new_http_pool)
        # Static keys: presigned URLs are signed by a synchronous botocore client in the calling thread (see
        # _new_signer); other credentials (profiles, roles that refresh, anonymous) keep s3fs's own signing.
        self._static_keys = bool(self.options.get("key") and self.options.get("secret")) and not self.options.get(
            "anon")
        self._signers: PerProcess[Any] = PerProcess(self._new_signer)

    def create_filesystem(self) -> Any:
        """An S3FileSystem with our retry count (an attribute, not a constructor argument)."""
        fs = super().create_filesystem()
        fs.retries = self.retries
        return fs

    def open_blob(self, fs: Any, location: str, size: int) -> IO[bytes]:
        """HEAD for the size (and a clean 404/403 before any byte), then one streaming GET per read position."""
        check_size(self._head_size(fs, location), size)
        return _S3Stream(lambda: self.presigned_url(fs, location, PRESIGNED_READ_SECONDS), self._http_pool(), size)

    def _head_size(self, fs: Any, location: str) -> int | None:
        """The object's size from a HEAD. With static keys: a presigned HEAD sent by urllib3 in this thread (under
        load s3fs's HEAD, an aiobotocore call awaited on s3fs's event-loop thread, added ~14 ms to every
        offloaded download: bench-scan, production stack on S3); else s3fs's info."""
        if not self._static_keys:
            return fs.info(location)["size"]
        bucket, key, version = fs.split_path(location)
        url = self._signer(fs).generate_presigned_url("head_object", Params=_params(bucket, key, version),
                                                      ExpiresIn=PRESIGNED_READ_SECONDS)
        response = self._http_pool().request("HEAD", url, preload_content=False, redirect=False)
        try:
            if response.status != 200:
                raise_for_status(response.status if response.status >= 400 else 502)
            length = response.headers.get("Content-Length")
            return int(length) if length is not None and length.isdigit() else None
        finally:
            response.release_conn()  # a HEAD has no body: the connection goes back to the pool

    def read_bytes(self, fs: Any, location: str) -> bytes:
        """A small object (a manifest) whole. With static keys: one presigned GET by urllib3 in this thread, like the
        objects' reads (a worker's first download reads its scan's manifest: on S3 ~11 ms through s3fs's event-loop
        thread in-process, most of the first request's extra time); else s3fs's cat."""
        if not self._static_keys:
            return super().read_bytes(fs, location)
        bucket, key, version = fs.split_path(location)
        url = self._signer(fs).generate_presigned_url("get_object", Params=_params(bucket, key, version),
                                                      ExpiresIn=PRESIGNED_READ_SECONDS)
        # preload_content: the whole body is read here; urllib3 raises if it ends before its Content-Length.
        response = self._http_pool().request("GET", url, redirect=False, decode_content=False)
        if response.status != 200:
            raise_for_status(response.status if response.status >= 400 else 502)
        return response.data

    def _signer(self, fs: Any) -> Any:
        """This process's synchronous botocore client (it only signs; made on first use, after the fork)."""
        self._signer_source = fs
        return self._signers.get()

    def _new_signer(self) -> Any:
        """A botocore client with s3fs's endpoint, region and configuration and the static keys: signing is local
        computation, so the URL is the one s3fs would sign, without a hop to s3fs's event loop."""
        import botocore.session
        from botocore.config import Config

        meta = self._signer_source.s3.meta  # s3fs's client (connects on first use)
        config = {name: value for name, value in self.options["config_kwargs"].items()
                  if name in Config.OPTION_DEFAULTS}
        return botocore.session.get_session().create_client(
            "s3", endpoint_url=meta.endpoint_url, region_name=meta.region_name, config=Config(**config),
            aws_access_key_id=self.options["key"], aws_secret_access_key=self.options["secret"],
            aws_session_token=self.options.get("token"))

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
        """A SigV4 presigned GET (computed locally, no request; in this thread with static keys)."""
        if not self._static_keys:
            return fs.sign(location, expiration=expires)
        bucket, key, version = fs.split_path(location)
        return self._signer(fs).generate_presigned_url("get_object", Params=_params(bucket, key, version),
                                                       ExpiresIn=expires)

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


def _params(bucket: str, key: str, version: str | None) -> dict[str, str]:
    """The object's parameters for a presigned request, as s3fs's sign gives them."""
    return {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}


def _precondition_failed(exc: BaseException) -> bool:
    """Whether S3 refused a conditional write (412 PreconditionFailed, or 409 for a concurrent one)."""
    cause = exc.__cause__ or exc.__context__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or "pre-condition" in str(exc).lower()


class _S3Stream(RemoteObject):
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
