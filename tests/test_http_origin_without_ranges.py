"""An HTTP storage origin that ignores Range (Python's http.server: 200 and the whole file to a ranged GET): whole
reads, offsets and multipart ranges still give the right bytes; an offset past the bounded skip is a clean 502."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from app import create_app
from app.manifest import Manifest, Package, dump_manifest, manifest_path
from deploy.processes import free_port, stop_process, wait_for_port
from storage_backends import RangeNotSupported, open_storage
from storage_backends import http as http_backend
from tests.test_download_view import ALICE

pytestmark = pytest.mark.integration
SIZE = 9 * 1024 * 1024 + 7  # past fsspec's 4 MiB read-ahead block, so a whole read crosses into the fallback
BLOB = "blobs/package.bin"


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """`python -m http.server` over a root holding one scan and its blob; yields (url, bytes)."""
    root = tmp_path_factory.mktemp("origin")
    data = random.Random(7).randbytes(SIZE)
    (root / "blobs").mkdir()
    (root / BLOB).write_bytes(data)
    package = Package(db_id=1, name="p", version="1", release="1", epoch=None, arch="noarch", full_name="p.rpm",
                      type="rpm", mime_type="application/x-rpm", size=SIZE, sha256=hashlib.sha256(data).hexdigest(),
                      md5=hashlib.md5(data).hexdigest(), last_modified=datetime(2026, 11, 27, tzinfo=UTC), path=BLOB)
    manifest = root / manifest_path("alice", 12, 34)
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(dump_manifest(Manifest("alice", 12, 34, (package,))))
    port = free_port()
    log = root.parent / f"http-server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                    "--directory", str(root)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}/", data
    finally:
        stop_process(process)


def read_all(blob) -> bytes:
    parts = []
    while chunk := blob.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def test_whole_and_offset_reads(origin):
    url, data = origin
    storage = open_storage(url)
    with storage.open_blob(BLOB, SIZE) as blob:
        assert read_all(blob) == data
    with storage.open_blob(BLOB, SIZE) as blob:
        blob.seek(5_000_001)
        assert blob.read(3_000_000) == data[5_000_001:8_000_001]
        blob.seek(8_500_000)  # a later range of the same request (multipart): the stream skips on
        assert blob.read(100) == data[8_500_000:8_500_100]
        blob.seek(10)  # an earlier one: the stream starts again
        assert blob.read(10) == data[10:20]


def test_an_offset_past_the_bounded_skip_is_refused(origin, monkeypatch):
    url, _ = origin
    monkeypatch.setattr(http_backend, "HTTP_MAX_SKIP", 1024 * 1024)
    with open_storage(url).open_blob(BLOB, SIZE) as blob:
        blob.seek(6 * 1024 * 1024)
        with pytest.raises(RangeNotSupported):
            blob.read(10)


@pytest.fixture
def client(origin, settings):
    url, _ = origin
    return create_app(settings, storage=open_storage(url)).test_client()


@pytest.mark.parametrize("range_header, status, expected", [
    ("bytes=6000000-6000099", 206, slice(6_000_000, 6_000_100)),
    ("bytes=-50", 206, slice(SIZE - 50, SIZE)),
    (None, 200, slice(0, SIZE)),
])
def test_ranged_downloads_through_the_app(client, origin, range_header, status, expected):
    _, data = origin
    headers = {**ALICE, **({"Range": range_header} if range_header else {})}
    response = client.get("/users/alice/scannedinstances/12/scans/34/packages/1/bin", headers=headers)
    assert response.status_code == status
    assert response.data == data[expected]


def test_multipart_ranges_through_the_app(client, origin):
    _, data = origin
    response = client.get("/users/alice/scannedinstances/12/scans/34/packages/1/bin",
                          headers={**ALICE, "Range": "bytes=0-9,7000000-7000009"})
    assert response.status_code == 206
    assert data[0:10] in response.data and data[7_000_000:7_000_010] in response.data


def test_past_the_skip_the_app_answers_a_clean_502(client, monkeypatch):
    monkeypatch.setattr(http_backend, "HTTP_MAX_SKIP", 1024 * 1024)
    response = client.get("/users/alice/scannedinstances/12/scans/34/packages/1/bin",
                          headers={**ALICE, "Range": "bytes=8000000-"})
    assert response.status_code == 502
    assert b"127.0.0.1" not in response.data and b"Traceback" not in response.data
