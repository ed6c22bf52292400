"""The S3 object reader (one presigned GET read in the calling thread) against a tiny HTTP server that misbehaves."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
import urllib3

from storage_backends.base import BlobSizeMismatch
from storage_backends.errors import translated_errors
from storage_backends.s3 import _S3Stream

DATA = bytes(range(256)) * 64  # 16 KiB


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a connection left with unread bytes would show
    """GET /ok honours Range; /no-range ignores it; /status/N answers N; /short ends early."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/status/"):
            error = b"<Error><Code>SlowDown</Code></Error>"  # kept alive, as S3 does
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and self.path == "/ok":
            start = int(ranged.removeprefix("bytes=").split("-")[0])
        body = DATA[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/short":
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True  # the server hangs up mid-body
        else:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _stream(url: str) -> _S3Stream:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=2))
    return _S3Stream(lambda: url, pool, len(DATA))


def test_reads_whole_then_seeks_with_a_new_ranged_get(server: str) -> None:
    stream = _stream(server + "/ok")
    assert stream.read(5000) + stream.read(-1) == DATA
    stream.seek(10_000)
    assert stream.read(100) == DATA[10_000:10_100]
    stream.close()


def test_a_server_ignoring_range_is_a_size_mismatch_not_wrong_bytes(server: str) -> None:
    stream = _stream(server + "/no-range")
    stream.seek(100)
    with pytest.raises(BlobSizeMismatch):
        stream.read(10)
    stream.close()


@pytest.mark.parametrize(("status", "error"), [(404, FileNotFoundError), (403, PermissionError),
                                               (500, ConnectionError), (503, ConnectionError)])
def test_failing_statuses_raise_before_any_byte(server: str, status: int, error: type[OSError]) -> None:
    stream = _stream(f"{server}/status/{status}")
    with pytest.raises(error):
        stream.read(10)
    stream.close()


def test_a_body_cut_short_is_a_connection_error(server: str) -> None:
    stream = _stream(server + "/short")
    with pytest.raises(ConnectionError), translated_errors():
        while stream.read(4096):
            pass
    stream.close()


def test_no_presigned_url_is_an_outage() -> None:
    stream = _S3Stream(lambda: None, urllib3.PoolManager(), 10)
    with pytest.raises(ConnectionError):
        stream.read(1)


def test_error_bodies_never_reach_the_next_request_on_a_kept_alive_connection(server: str) -> None:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=2))
    for _ in range(3):
        failing = _S3Stream(lambda: f"{server}/status/503", pool, len(DATA))
        with pytest.raises(ConnectionError):
            failing.read(10)
        failing.close()
        working = _S3Stream(lambda: server + "/ok", pool, len(DATA))
        assert working.read(-1) == DATA
        working.close()


def test_an_object_of_another_size_is_refused_before_any_byte(server: str) -> None:
    pool = urllib3.PoolManager(retries=False)
    stream = _S3Stream(lambda: server + "/ok", pool, len(DATA) - 1)  # the catalog says one byte less
    with pytest.raises(BlobSizeMismatch):
        stream.read(10)
    stream.close()


def test_refused_connections_are_an_outage_not_a_timeout() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    pool = urllib3.PoolManager(retries=urllib3.Retry(total=1, redirect=False, status=0))
    stream = _S3Stream(lambda: f"http://127.0.0.1:{port}/x", pool, 10)
    with pytest.raises(ConnectionError) as caught, translated_errors():
        stream.read(1)
    assert not isinstance(caught.value, TimeoutError)
