"""The further fsspec backends end to end, on real servers (wsgidav for WebDAV, asyncssh for SFTP, fake-gcs-server for
Google Cloud Storage, Azurite for Azure Blob): `catalog add`
into each through the CLI, then real gunicorn serving downloads, ranges, 304s, tokens and resumes from it, and the
server stopped or paused (503 before the first byte, a truncated transfer after it)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from deploy.processes import AzuriteServer, FileServer, GcsServer, Service
from storage_backends.fsspec_storage import FsspecStorage
from tests.fixtures_service import make_service
from tests.test_faults import ALICE, DEB, OPENSSL, assert_generic_error, assert_healthy, fetch, mint

pytestmark = pytest.mark.integration
BACKENDS = ["webdav", "sftp", "gcs", "azure"]


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory) -> Iterator[tuple[Service, FileServer | GcsServer | AzuriteServer]]:
    """gunicorn whose storage is the backend's server, seeded by `pkgdl catalog add` into it."""
    server = request.getfixturevalue(f"{request.param}_server")
    env = {"PKGDL_STORAGE_URL": server.url(f"e2e-{request.param}"),
           "PKGDL_STORAGE_OPTIONS": json.dumps(server.options), "PKGDL_CATALOG_TTL": "0"}
    service = make_service(tmp_path_factory.mktemp(f"e2e-{request.param}"), env)
    yield service, server
    service.stop()


def test_catalog_add_stored_the_blobs_and_the_manifest_on_the_server(served):
    """Looked at with the store's own fsspec filesystem, apart from pkgdl's reading code."""
    service, server = served
    root = FsspecStorage(service.env["PKGDL_STORAGE_URL"], server.options)
    fs, base = root._filesystem(), root._backend.root
    assert fs.isfile(f"{base}/alice/12/34/packages.json")
    stored = fs.find(base)
    for source in service.files.values():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert fs.cat_file(f"{base}/blobs/sha256/{digest[:2]}/{digest}") == source.read_bytes()
    assert not [path for path in stored if path.endswith(".tmp")]  # the temp objects of atomic writes are gone
    listed = service.cli("catalog", "list", "--uid", "alice", "--siid", "12", "--sid", "34").stdout
    assert OPENSSL in listed and DEB in listed


def test_download_range_304_and_a_token_resumed(served, tmp_path):
    service, _ = served
    source = service.files[OPENSSL].read_bytes()
    url = service.bin_url(service.pids[OPENSSL])
    whole = fetch(url, *ALICE, tmp=tmp_path)
    assert whole.status == 200 and whole.body == source
    part = fetch(url, *ALICE, "-r", "1048570-1048600", tmp=tmp_path)
    assert part.status == 206 and part.body == source[1048570:1048601]
    etag = whole.header("ETag")
    assert fetch(url, *ALICE, "-H", f"If-None-Match: {etag}", tmp=tmp_path).status == 304
    link = mint(service, service.pids[OPENSSL])
    first = fetch(link, "-r", "0-999999", tmp=tmp_path)
    assert first.status == 206
    rest = fetch(link, "-r", "1000000-", tmp=tmp_path)
    assert rest.status == 206 and first.body + rest.body == source
    assert fetch(link, tmp=tmp_path).status == 403


def test_the_server_stopped_is_503_and_the_token_survives(served, tmp_path):
    service, server = served
    link = mint(service, service.pids[DEB])
    server.stop()
    try:
        down = fetch(link, tmp=tmp_path, max_time=60)
        assert down.status == 503, down.body
        assert down.header("Retry-After")
        secret = getattr(server, "password", None) or getattr(server, "bucket", None) or server.container
        assert_generic_error(down, service, str(server.port), secret)
        assert fetch(f"{service.base_url}/readyz", tmp=tmp_path).status == 503
    finally:
        server.start()
    expected = service.files[DEB].read_bytes()
    assert_healthy(service, tmp_path, service.pids[DEB], expected, deadline=60)
    assert fetch(link, tmp=tmp_path).body == expected  # the 503 claimed nothing
    assert fetch(link, tmp=tmp_path).status == 403


def test_the_server_paused_mid_stream_truncates_the_transfer(served, tmp_path):
    """SIGSTOP after the first bytes: the client gets fewer bytes than Content-Length, never a whole-looking file."""
    service, server = served
    source = service.files[OPENSSL].read_bytes()
    out, headers = tmp_path / "partial", tmp_path / "headers"
    command = ["curl", "-sS", "-N", *ALICE, "--limit-rate", "4M", "--speed-limit", "1", "--speed-time", "3",
               "--max-time", "60", "-D", str(headers), "-o", str(out), service.bin_url(service.pids[OPENSSL])]
    client = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while (not out.exists() or out.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        with server.paused():
            rc = client.wait(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    received = out.read_bytes()
    assert rc in (18, 28), client.stderr.read()
    assert 0 < len(received) < len(source) and received == source[: len(received)]
    assert_healthy(service, tmp_path, service.pids[OPENSSL], source, deadline=90)
