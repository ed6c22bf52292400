"""End to end through the real nginx (deploy/nginx.conf.template) -> two gunicorn instances -> local storage or
SeaweedFS S3, with Redis as the burn-list: offload (X-Accel-Redirect) is indistinguishable from streaming."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from app.links import download_url
from app.tokens import PackageRef, TokenService
from deploy.processes import NO_S3_ENDPOINT, Nginx, Service, free_port
from tests.fixtures_service import E2E_USERS, LARGE, make_service, sid_of, with_large_package
from tests.test_resume_clients import killed_part_way

pytestmark = pytest.mark.integration

OPENSSL = "openssl-libs-3.0.7-27.el9.x86_64.rpm"  # 24 MiB + 123 bytes
DEB = "curl_7.88.1-10+deb12u5_amd64.deb"
WEIRD = 'we"ird_name;.rpm'  # as catalogued (the source file's name has "_" for the backslash)
PUBLIC_URL = "https://downloads.example.test"  # make_service's PKGDL_PUBLIC_URL
ALICE = ("alice", E2E_USERS["alice"])
TIMEOUT = 30


@dataclass
class Deployment:
    """nginx in x-accel mode before ``instances``, and nginx before one streaming instance, on the same data."""

    offload: Nginx
    streamed: Nginx
    instances: list[Service]
    seeded: Service

    def path(self, name: str = OPENSSL) -> str:
        return self.seeded.bin_url(self.seeded.pids[name]).removeprefix(self.seeded.base_url)

    def token_path(self, name: str = OPENSSL) -> str:
        """A fresh single-use link's path and query, minted with the instances' keys (as `pkgdl token mint`)."""
        pid = with_large_package(self.seeded) if name == LARGE else self.seeded.pids[name]
        ref = PackageRef("alice", 12, sid_of(name), pid)
        tokens = TokenService(self.seeded.env["PKGDL_SECRET_KEYS"].split(","), 3600)
        return download_url(PUBLIC_URL, ref, tokens.mint(ref)).removeprefix(PUBLIC_URL)

    def source(self, name: str = OPENSSL) -> bytes:
        return (self.seeded.home / "sources" / name).read_bytes()

    def logs(self) -> dict[Path, str]:
        """Every log file of both nginx and all gunicorn instances."""
        files = [self.offload.access_log, self.offload.error_log, self.streamed.access_log, self.streamed.error_log]
        files += sorted(self.seeded.home.glob("*.log"))
        return {path: path.read_text(errors="replace") for path in files if path.exists()}


def _address(service: Service) -> str:
    return service.base_url.removeprefix("http://")


def _deploy(home: Path, make_nginx, env: dict[str, str], storage_root: Path,
            s3_endpoint: str = NO_S3_ENDPOINT, replicas: int = 2) -> Iterator[Deployment]:
    services: list[Service] = []
    proxies: list[Nginx] = []
    try:
        services.append(make_service(home, {**env, "PKGDL_OFFLOAD": "x-accel"}))
        seeded = services[0]
        for _ in range(replicas - 1):
            services.append(make_service(home, {**env, "PKGDL_OFFLOAD": "x-accel"}, seed=False))
        streaming = make_service(home, {**env, "PKGDL_OFFLOAD": "none"}, seed=False)
        services.append(streaming)
        proxies.append(make_nginx([_address(s) for s in services[:replicas]], storage_root, s3_endpoint))
        proxies.append(make_nginx([_address(streaming)], storage_root, s3_endpoint))
        yield Deployment(offload=proxies[0], streamed=proxies[1], instances=services[:replicas], seeded=seeded)
    finally:
        for process in [*proxies, *services]:  # nginx first: its keep-alive connections would delay gunicorn's exit
            process.stop()


@pytest.fixture(scope="module")
def local_deployment(tmp_path_factory, make_nginx, redis_server) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("deploy-local")
    deployment = _deploy(home, make_nginx, {"PKGDL_BURNLIST_URL": redis_server.url}, home / "packages")
    yield from _with_old_blob_mtimes(deployment, home / "packages")


def _with_old_blob_mtimes(deployment: Iterator[Deployment], root: Path) -> Iterator[Deployment]:
    """Blob files dated 2001: a Last-Modified from nginx's static module would then differ from the app's."""
    running = next(deployment)
    for blob in (root / "blobs").rglob("*"):
        if blob.is_file():
            os.utime(blob, (1_000_000_000, 1_000_000_000))
    yield running
    next(deployment, None)


@pytest.fixture(scope="module")
def s3_deployment(tmp_path_factory, make_nginx, redis_server, seaweedfs) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("deploy-s3")
    # SigV4 presigned URLs sign the Host: nginx must send the endpoint's host:port (botocore would presign SigV2).
    options = {**seaweedfs.options, "config_kwargs": {"signature_version": "s3v4"}}
    env = {"PKGDL_BURNLIST_URL": redis_server.url, "PKGDL_STORAGE_URL": seaweedfs.url("deploy"),
           "PKGDL_STORAGE_OPTIONS": json.dumps(options)}
    yield from _deploy(home, make_nginx, env, home / "unused", seaweedfs.endpoint_url, replicas=1)


@pytest.fixture(scope="module")
def azure_deployment(tmp_path_factory, make_nginx, redis_server, azurite) -> Iterator[Deployment]:
    """An az:// root on Azurite: X-Accel offload through the same internal location, with SAS URLs."""
    home = tmp_path_factory.mktemp("deploy-azure")
    env = {"PKGDL_BURNLIST_URL": redis_server.url, "PKGDL_STORAGE_URL": azurite.url("deploy"),
           "PKGDL_STORAGE_OPTIONS": json.dumps(azurite.options)}
    yield from _deploy(home, make_nginx, env, home / "unused", f"http://127.0.0.1:{azurite.port}", replicas=1)


@pytest.fixture(params=["local", "s3", "azure"])
def deployment(request) -> Deployment:
    return request.getfixturevalue(f"{request.param}_deployment")


HTTPS = requests.Session()  # nginx speaks TLS only; requests through it trust the test certificate


@pytest.fixture(scope="module", autouse=True)
def _trust_the_test_certificate(nginx_tls) -> None:
    HTTPS.verify = str(nginx_tls[0])


def get(url: str, **kwargs) -> requests.Response:
    # verify= on every call: a session's own verify loses to REQUESTS_CA_BUNDLE when the environment sets it.
    return HTTPS.get(url, timeout=TIMEOUT, verify=HTTPS.verify, **kwargs)


def visible_headers(response: requests.Response) -> list[tuple[str, str]]:
    """Every header line as sent (duplicates kept), except Date."""
    return sorted((name.lower(), value) for name, value in response.raw.headers.items() if name.lower() != "date")


# --- offload == streamed -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [OPENSSL, WEIRD])
@pytest.mark.parametrize("path_kind", ["basic", "token"])
def test_offload_is_identical_to_streaming(deployment, path_kind, name):
    """Header by header and byte by byte, Basic and token path; the body is the source file."""
    responses = []
    for nginx in (deployment.offload, deployment.streamed):
        if path_kind == "basic":
            response = get(nginx.base_url + deployment.path(name), auth=ALICE)
        else:
            response = get(nginx.base_url + deployment.token_path(name))
        assert response.status_code == 200, response.text[:300]
        responses.append(response)
    offloaded, streamed = responses
    assert visible_headers(offloaded) == visible_headers(streamed)
    assert offloaded.content == streamed.content == deployment.source(name)
    assert offloaded.headers["ETag"] == f'"{hashlib.sha256(deployment.source(name)).hexdigest()}"'
    assert ("vary" in offloaded.headers) == (path_kind == "basic")
    assert ("referrer-policy" in offloaded.headers) == (path_kind == "token")


def test_offload_really_is_offloaded(local_deployment, s3_deployment, azure_deployment):
    """The offload nginx sent the bytes itself (its access log shows the internal location)."""
    for deployment, prefix in ((local_deployment, "/_pkgdl/local/blobs/"), (s3_deployment, "/_pkgdl/s3/"),
                               (azure_deployment, "/_pkgdl/s3/devstoreaccount1/")):
        assert get(deployment.offload.base_url + deployment.path(DEB), auth=ALICE).status_code == 200
        assert prefix in deployment.offload.access_log.read_text()
        assert "/_pkgdl/" not in deployment.streamed.access_log.read_text()


def test_internal_locations_are_not_reachable_from_outside(local_deployment):
    root = local_deployment.seeded.home / "packages"
    blob = next(path for path in (root / "blobs").rglob("*") if path.is_file()).relative_to(root)
    for path in (f"/_pkgdl/local/{blob}", "/_pkgdl/local/", f"/_pkgdl/s3/pkgdl-test/deploy/{blob}"):
        assert get(local_deployment.offload.base_url + path).status_code == 404


# --- HTTP semantics through nginx ----------------------------------------------------------------------------------

def test_304_from_if_none_match(deployment):
    url = deployment.offload.base_url + deployment.path()
    etag = get(url, auth=ALICE, stream=True).headers["ETag"]
    response = get(url, auth=ALICE, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag


def test_range_206(deployment):
    response = get(deployment.offload.base_url + deployment.path(), auth=ALICE,
                   headers={"Range": "bytes=1048570-1048600"})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 1048570-1048600/{len(deployment.source())}"
    assert response.content == deployment.source()[1048570:1048601]


@pytest.mark.parametrize("mode", ["offload", "streamed"])
def test_no_gzip_even_when_asked(deployment, mode):
    nginx = getattr(deployment, mode)
    response = get(nginx.base_url + deployment.path(DEB), auth=ALICE, headers={"Accept-Encoding": "gzip"},
                   stream=True)
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.headers["Content-Length"] == str(len(deployment.source(DEB)))
    assert response.headers["ETag"].startswith('"')  # strong: nginx weakens the ETag of what it compresses
    assert response.raw.read(decode_content=False) == deployment.source(DEB)


# --- tokens across two instances -----------------------------------------------------------------------------------

def test_token_is_single_use_across_both_instances(local_deployment):
    deployment = local_deployment
    path = deployment.token_path(DEB)
    assert get(deployment.offload.base_url + path).content == deployment.source(DEB)
    statuses = [get(deployment.offload.base_url + path).status_code for _ in range(4)]  # round robin: both
    statuses += [get(instance.base_url + path).status_code for instance in deployment.instances]
    assert statuses == [403] * 6
    for instance in deployment.instances:  # nginx did spread requests over both instances
        assert deployment.path(DEB) in instance.access_log.read_text()


def test_concurrent_uses_of_one_token_behind_nginx(local_deployment):
    url = local_deployment.offload.base_url + local_deployment.token_path(DEB)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(lambda _: get(url).status_code, range(8)))
    assert statuses == [200] + [403] * 7


def test_logs_hold_no_token(deployment):
    tokens = []
    for nginx in (deployment.offload, deployment.streamed):
        path = deployment.token_path(DEB)
        tokens.append(path.split("downloadToken=", 1)[1])
        assert HTTPS.head(nginx.base_url + path, timeout=TIMEOUT, verify=HTTPS.verify).status_code == 200
        assert get(nginx.base_url + path).status_code == 200
        assert get(nginx.base_url + path).status_code == 403
    time.sleep(0.2)  # let gunicorn's log handlers write
    logs = deployment.logs()
    assert deployment.path(DEB) in logs[deployment.streamed.access_log]  # the requests were logged, by path
    for path, text in logs.items():
        assert "downloadToken" not in text, path
        for token in tokens:
            assert token not in text, path
            assert token.split(".")[-1] not in text, path  # not even the signature


def test_an_instance_down_leaves_no_token_in_nginx_error_log(local_deployment, make_nginx):
    """An instance down (restarted, crashed): nginx fails over to the next one and logs the failure, and its error
    lines quote the client's request line, query string included (found by `make soak`). The upstream failures
    show in the access log's upstream_status instead."""
    dead = f"127.0.0.1:{free_port()}"  # nobody listens: connect() is refused
    nginx = make_nginx([dead, _address(local_deployment.instances[0])], local_deployment.seeded.home / "packages")
    tokens = []
    for _ in range(4):  # round robin: the dead upstream is tried first at least once
        path = local_deployment.token_path(DEB)
        tokens.append(path.split("downloadToken=", 1)[1])
        assert get(nginx.base_url + path).content == local_deployment.source(DEB)
    lonely = make_nginx([dead], local_deployment.seeded.home / "packages")  # no instance at all: 502
    path = local_deployment.token_path(DEB)
    tokens.append(path.split("downloadToken=", 1)[1])
    assert get(lonely.base_url + path).status_code == 502
    time.sleep(0.2)
    assert f"upstream={dead}, " in nginx.access_log.read_text()  # the failover is in the access log
    for log in (nginx.error_log, nginx.access_log, lonely.error_log, lonely.access_log):
        text = log.read_text(errors="replace")
        assert "downloadToken" not in text, log
        for token in tokens:
            assert token.split(".")[-1] not in text, log


# --- resumable links through nginx (offloaded: nginx's post_action reports what it sent) --------------------------

def _eventually_refused(url: str, headers: dict[str, str]) -> int:
    """The status of `url`, asked again for up to 5 s until it is 403: nginx reports the end of an offloaded
    transfer once it has noticed it (a write to the dead connection), moments after the client is gone."""
    deadline = time.monotonic() + 5
    while (status := get(url, headers=headers).status_code) != 403 and time.monotonic() < deadline:
        time.sleep(0.1)
    return status


@pytest.mark.parametrize("mode", ["offload", "streamed"])
def test_a_broken_download_resumes_through_nginx(deployment, mode, tmp_path):
    """curl killed part-way, then `curl -C -` with the same link (a resume is streamed by the app in both modes):
    the right file, then the link is dead for a whole copy and for any range."""
    url = getattr(deployment, mode).base_url + deployment.token_path(LARGE)
    out = tmp_path / "got.rpm"
    curl = ["curl", "-sS", "--cacert", str(HTTPS.verify)]
    killed_part_way([*curl, "--limit-rate", "2M", "-o", str(out), url], out)
    resumed = subprocess.run([*curl, "-f", "-C", "-", "-o", str(out), url], capture_output=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == deployment.source(LARGE)
    assert _eventually_refused(url, {"Range": "bytes=0-0"}) == 403
    assert get(url).status_code == 403


@pytest.mark.parametrize("mode", ["offload", "streamed"])
def test_the_landing_page_button_downloads_through_nginx(deployment, mode):
    """The button POSTs back to the link: nginx must fetch the file with GET, whatever the client's method."""
    url = getattr(deployment, mode).base_url + deployment.token_path(DEB)
    response = HTTPS.post(url, timeout=TIMEOUT, verify=HTTPS.verify)
    assert response.status_code == 200, response.text[:300]
    assert response.content == deployment.source(DEB)


def test_a_complete_offloaded_download_spends_the_link(deployment):
    """nginx sent every byte: its report spends the link, so no range can fetch a second copy."""
    url = deployment.offload.base_url + deployment.token_path(DEB)
    assert get(url).content == deployment.source(DEB)
    assert _eventually_refused(url, {"Range": "bytes=0-0"}) == 403  # probes of byte 0 never complete the package


def test_a_small_package_sent_whole_needs_no_report(deployment):
    """A package of one chunk is claimed as written whole (as when the app streams it in one write): nginx reports
    to the app only when it sent less, so a complete download is one app request, not two; a large one reports."""
    def reports(at_least: int = 0) -> int:
        """The reports in gunicorn's access logs, once there are `at_least` (or after 10 s): post_action runs after
        the client has its answer, and the app logs the report once it settled the link."""
        deadline = time.monotonic() + 10
        while True:
            time.sleep(0.3)
            count = sum(text.count("/_pkgdl/offload-done") for path, text in deployment.logs().items()
                        if path.name.startswith("access-"))
            if count >= at_least or time.monotonic() > deadline:
                return count

    before = reports()
    small = get(deployment.offload.base_url + deployment.token_path(DEB))
    assert small.content == deployment.source(DEB) and reports() == before
    assert get(deployment.offload.base_url + deployment.token_path(DEB)).status_code == 200  # a fresh link
    large = deployment.offload.base_url + deployment.token_path(OPENSSL)
    assert get(large).content == deployment.source(OPENSSL) and reports(at_least=before + 1) == before + 1
    assert _eventually_refused(large, {"Range": "bytes=0-0"}) == 403


# --- robustness ----------------------------------------------------------------------------------------------------

def tls_connection(base_url: str) -> socket.socket:
    """A raw TLS connection to nginx (the handshake done), trusting the test certificate."""
    split = urlsplit(base_url)
    context = ssl.create_default_context(cafile=HTTPS.verify)
    raw = socket.create_connection((split.hostname, split.port), timeout=TIMEOUT)
    return context.wrap_socket(raw, server_hostname=split.hostname)


def _abort_download(base_url: str, path: str, after: int) -> int:
    """GET with Basic credentials over a raw TLS socket, read ``after`` bytes, then reset the connection."""
    split = urlsplit(base_url)
    credentials = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {split.netloc}\r\nAuthorization: Basic {credentials}\r\n"
               "Accept: */*\r\n\r\n").encode()
    received = 0
    with tls_connection(base_url) as sock:
        sock.sendall(request)
        while received < after:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            received += len(chunk)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    return received


@pytest.mark.parametrize("mode", ["offload", "streamed"])
def test_client_abort_mid_download_leaves_the_service_healthy(deployment, mode):
    nginx = getattr(deployment, mode)
    assert _abort_download(nginx.base_url, deployment.path(), after=4 << 20) >= 4 << 20
    for _ in range(4):  # both upstreams
        response = get(nginx.base_url + deployment.path(DEB), auth=ALICE)
        assert response.status_code == 200
        assert response.content == deployment.source(DEB)
    assert get(nginx.base_url + "/readyz").status_code == 200
    assert nginx.process.poll() is None


def offloaded_downloads(deployment: Deployment) -> float:
    """pkgdl_downloads_total{outcome="offloaded"} summed over the instances (each counts its own)."""
    total = 0.0
    for instance in deployment.instances:
        for line in get(instance.base_url + "/metrics").text.splitlines():
            if line.startswith("pkgdl_downloads_total{") and 'outcome="offloaded"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_offloaded_downloads(local_deployment):
    before = offloaded_downloads(local_deployment)
    for _ in range(3):
        assert get(local_deployment.offload.base_url + local_deployment.path(DEB), auth=ALICE).status_code == 200
    assert offloaded_downloads(local_deployment) - before == 3


def _wait_for_status(url: str, status: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = get(url).status_code
        if got == status or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_readyz_through_nginx_follows_redis(local_deployment, redis_server):
    url = local_deployment.offload.base_url + "/readyz"
    assert get(url).status_code == 200
    redis_server.stop()
    try:
        assert _wait_for_status(url, 503) == 503
    finally:
        redis_server.start()
    assert _wait_for_status(url, 200) == 200


def test_s3_errors_do_not_reach_the_client(make_nginx, seaweedfs, tmp_path):
    """A refused presigned URL (here: a forged signature) is a 502 from the app, not S3's XML naming bucket and key:
    nginx reports the failure to the app with the ticket the app sent (an app stand-in here), and the
    answer carries no Content-Disposition (it would save the error under the package's name)."""
    target = f"/_pkgdl/s3/{seaweedfs.bucket}/deploy/blobs/no-such-key?X-Amz-Signature=forged"
    reports = []

    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("X-Accel-Redirect", target)
            self.send_header("X-Pkgdl-Content-Disposition", 'attachment; filename="x.rpm"')
            self.send_header("X-Pkgdl-Ticket", "the-ticket")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):  # noqa: N802 - what the app's /_pkgdl/offload-failed receives
            reports.append((self.path, self.headers.get("X-Pkgdl-Ticket"), self.headers.get("X-Pkgdl-Request-Path")))
            body = b"<uforgeError/>"
            self.send_response(502)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = "/users/alice/scannedinstances/1/scans/1/packages/1/bin"
    try:
        nginx = make_nginx([f"127.0.0.1:{server.server_address[1]}"], tmp_path, seaweedfs.endpoint_url)
        response = get(nginx.base_url + path + "?downloadToken=secret-token")
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 502
    for leak in ("no-such-key", seaweedfs.bucket, "<Error>", "Signature"):
        assert leak not in response.text
    assert not any(name.lower().startswith(("x-amz", "seaweed", "x-pkgdl")) for name in response.headers)
    assert response.headers["Content-Type"] == "application/xml"
    assert "Content-Disposition" not in response.headers
    assert reports == [("/_pkgdl/offload-failed", "the-ticket", path)]  # no query: it holds the token


def test_a_file_nginx_cannot_read_spends_no_token(local_deployment, make_nginx, tmp_path):
    """The review's finding: a storage root nginx could not read (permissions, an alias mismatch) answered nginx's
    error under the package's name, and the link was gone. Here nginx's alias points at an empty directory while
    the app sees the file: nginx reports it, the app gives the token back and answers 502; through a correct
    nginx the same link then delivers, once."""
    (tmp_path / "empty").mkdir()
    wrong = make_nginx([_address(s) for s in local_deployment.instances], tmp_path / "empty")
    path = local_deployment.token_path(DEB)
    failed = get(wrong.base_url + path)
    assert failed.status_code == 502, failed.text[:200]
    assert "Content-Disposition" not in failed.headers and failed.headers["Cache-Control"] == "no-store"
    assert failed.headers["Content-Type"] == "application/xml" and b"offloadFailed" in failed.content
    delivered = get(local_deployment.offload.base_url + path)
    assert delivered.status_code == 200 and delivered.content == local_deployment.source(DEB)
    assert delivered.headers["Content-Disposition"].startswith("attachment;")
    assert get(local_deployment.offload.base_url + path).status_code == 403
    assert get(wrong.base_url + local_deployment.path(DEB), auth=ALICE).status_code == 502  # Basic: nothing to return


def test_nginx_own_errors_are_uforge_errors(make_nginx, local_deployment, uforge_sdk, tmp_path, request):
    """What nginx answers itself (the app unreachable, an internal location, a request too large) parses with the
    UForge SDK's bindings, and validates against UForge's schema where shared/ has it."""
    try:
        schema = request.getfixturevalue("uforge_schema")
    except pytest.skip.Exception:
        schema = None
    down = make_nginx([f"127.0.0.1:{free_port()}"], tmp_path)  # nothing listens there
    cases = [
        (down.base_url + "/users/alice/scannedinstances/1/scans/1/packages/1/bin", {}, 502),
        (local_deployment.offload.base_url + "/_pkgdl/local/x", {}, 404),
        (local_deployment.offload.base_url + "/healthz", {"Cookie": "a" * 40_000}, 400),
        (local_deployment.offload.base_url + "/" + "a" * 20_000, {}, 414),
    ]
    for url, headers, status in cases:
        response = get(url, headers=headers)
        assert response.status_code == status, url[:80]
        assert response.headers["Content-Type"] == "application/xml"
        assert response.headers["Cache-Control"] == "no-store"
        assert ("Retry-After" in response.headers) == (status >= 502)
        if schema is not None:
            schema.validate(response.text)
        error = uforge_sdk.CreateFromDocument(response.content)
        assert error.statusCode == status and error.requestMethod is None
        assert error.localizedErrorMsg.messageId.startswith("pkgdl.") and error.timestamp.utcoffset() is not None


def test_half_open_connections_through_nginx_leave_the_service_answering(local_deployment):
    """A slowloris of 100 half-sent requests: nginx holds them (client_header_timeout) and gunicorn never sees them,
    so /healthz and a download keep answering (gunicorn alone has 16 threads that such requests would hold)."""
    sockets = []
    try:
        for n in range(100):
            stalled = tls_connection(local_deployment.streamed.base_url)
            stalled.sendall(f"GET /healthz?{n} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())  # never finished
            sockets.append(stalled)
        # Directly on gunicorn these would wait for the stalled connections, here past the client's timeout.
        assert get(local_deployment.streamed.base_url + "/healthz").status_code == 200
        download = get(local_deployment.streamed.base_url + local_deployment.path(DEB), auth=ALICE)
        assert download.status_code == 200 and download.content == local_deployment.source(DEB)
    finally:
        for stalled in sockets:
            stalled.close()


# --- TLS -----------------------------------------------------------------------------------------------------------

HSTS = "max-age=63072000"


def test_tls_everywhere_with_hsts(deployment, nginx_tls):
    """Downloads (streamed and offloaded), the listing and nginx's own errors all come over TLS with HSTS; curl
    verifies the certificate (--cacert) and TLS 1.1 is refused."""
    for nginx in (deployment.offload, deployment.streamed):
        for url, auth in ((nginx.base_url + deployment.path(DEB), ALICE), (nginx.base_url + "/_pkgdl/local/x", None),
                          (nginx.base_url + "/users/alice/scannedinstances/12/scans/34/packages", ALICE)):
            response = get(url, auth=auth)
            assert response.headers["Strict-Transport-Security"] == HSTS, (url, response.status_code)
        url = nginx.base_url + deployment.path(DEB)
        done = subprocess.run(["curl", "-sS", "--cacert", str(nginx_tls[0]), "-u", f"{ALICE[0]}:{ALICE[1]}", "-o",
                               "/dev/null", "-w", "%{http_code} %{size_download}", url],
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert done.stdout == f"200 {len(deployment.source(DEB))}", done.stderr
        old = subprocess.run(["curl", "-sS", "--cacert", str(nginx_tls[0]), "--tls-max", "1.1", "-o", "/dev/null",
                              nginx.base_url + "/healthz"], capture_output=True, text=True, timeout=TIMEOUT)
        assert old.returncode != 0


def test_plain_http_only_redirects_to_the_public_url(local_deployment):
    """Never to the request's Host (nor an absolute-form target's host); the token stays in the path it had."""
    nginx = local_deployment.offload
    path = local_deployment.token_path(DEB)
    for headers, target in (({"Host": "evil.example"}, path), ({}, path)):
        response = requests.get(nginx.http_url + target, headers=headers, allow_redirects=False, timeout=TIMEOUT)
        assert response.status_code == 308
        assert response.headers["Location"] == nginx.public_url + path
    raw = socket.create_connection(("127.0.0.1", nginx.http_port), timeout=TIMEOUT)
    with raw:
        raw.sendall(f"GET http://evil.example{path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
                    .encode())
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert b"evil.example" not in answer and f"Location: {nginx.public_url}{path}".encode() in answer
