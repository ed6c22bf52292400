"""End to end: real gunicorn with 2 workers, real curl, seeded by the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from deploy.processes import BIN, ROOT, free_port, wait_for_http
from tests.fixtures_service import E2E_USERS, make_service

pytestmark = pytest.mark.integration
OPENSSL = "openssl-libs-3.0.7-27.el9.x86_64.rpm"


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)


def user(login: str = "alice") -> list[str]:
    return ["-u", f"{login}:{E2E_USERS[login]}"]


def status_of(*args: str) -> int:
    result = curl("-o", "/dev/null", "-w", "%{http_code}", *args)
    return int(result.stdout or 0)


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_download_matches_the_blob(service, tmp_path):
    out = tmp_path / "got.rpm"
    url = service.bin_url(service.pids[OPENSSL])
    result = curl(*user(), "-f", "-o", str(out), "-D", str(tmp_path / "headers"), url)
    assert result.returncode == 0, result.stderr
    assert sha256_of(out) == sha256_of(service.files[OPENSSL])
    headers = (tmp_path / "headers").read_text().lower()
    assert f'etag: "{sha256_of(service.files[OPENSSL])}"' in headers
    assert "content-disposition: attachment;" in headers


def test_small_file_through_sendfile_matches_the_blob(service, tmp_path):
    out = tmp_path / "small.deb"
    deb = "curl_7.88.1-10+deb12u5_amd64.deb"
    result = curl(*user(), "-f", "-o", str(out), service.bin_url(service.pids[deb]))
    assert result.returncode == 0, result.stderr
    assert sha256_of(out) == sha256_of(service.files[deb])


def test_head(service):
    result = curl(*user(), "-I", service.bin_url(service.pids[OPENSSL]))
    lines = result.stdout.decode().lower()
    assert lines.startswith("http/1.1 200")
    assert f"content-length: {service.files[OPENSSL].stat().st_size}" in lines


def test_etag_compare_gives_304(service, tmp_path):
    etag_file, url = tmp_path / "etag", service.bin_url(service.pids[OPENSSL])
    assert status_of(*user(), "--etag-save", str(etag_file), url) == 200
    assert status_of(*user(), "--etag-compare", str(etag_file), url) == 304


def test_resume_with_curl_continue(service, tmp_path):
    out = tmp_path / "partial.rpm"
    out.write_bytes(service.files[OPENSSL].read_bytes()[: 5 * 1024 * 1024 + 7])
    result = curl(*user(), "-f", "-C", "-", "-o", str(out), service.bin_url(service.pids[OPENSSL]))
    assert result.returncode == 0, result.stderr
    assert sha256_of(out) == sha256_of(service.files[OPENSSL])


def test_listing_xml_and_json(service):
    base = f"{service.base_url}/users/alice/scannedinstances/12/scans/34/packages"
    xml = curl(*user(), base).stdout
    assert xml.startswith(b"<?xml") and b"<ns0:scannedPackages" in xml
    listing = json.loads(curl(*user(), "-H", "Accept: application/json", base).stdout)
    assert listing["scannedPackages"]["total"] == len(service.files)


def test_token_single_use_and_weird_names_are_safe(service, tmp_path):
    base = f"{service.base_url}/users/alice/scannedinstances/12/scans/34/packages"
    listing = json.loads(curl(*user(), "-H", "Accept: application/json", base).stdout)
    weird = next(p for p in listing["scannedPackages"]["scannedPackages"]["scannedPackage"]
                 if p["fullName"].startswith("we"))
    url = f"{service.base_url}/{weird['binaryUri']}"
    headers = curl("-D", "-", "-o", str(tmp_path / "w"), url).stdout.decode()
    assert "200" in headers.splitlines()[0]
    disposition = next(line for line in headers.splitlines() if line.lower().startswith("content-disposition"))
    assert disposition.count('"') == 2 and "\\" not in disposition
    assert status_of(url) == 403


def test_twenty_concurrent_requests_one_token_one_winner(service):
    minted = service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", "34",
                         "--pid", str(service.pids[OPENSSL])).stdout.strip()
    assert minted.startswith("https://downloads.example.test/users/alice/")
    url = service.base_url + minted[len("https://downloads.example.test"):]
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = sorted(pool.map(lambda _: status_of("--max-time", "60", url), range(20)))
    assert statuses == [200] + [403] * 19


def test_minted_link_uses_public_url_not_host(service):
    minted = service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", "34", "--pid", "1").stdout
    assert urlsplit(minted.strip()).netloc == "downloads.example.test"


BAD_REQUESTS = [
    # (curl arguments after the base URL is applied, expected status)
    (["--path-as-is", "{base}/users/alice/scannedinstances/12/scans/34/packages/../../34/packages/1/bin"], 404),
    (["{base}/users/alice%2F..%2Fbob/scannedinstances/12/scans/34/packages/1/bin"], 404),
    (["{base}/users/alice/scannedinstances/12/scans/34/packages/1%2Fbin"], 404),
    (["{base}/users/alice/scannedinstances/12/scans/34/packages/%00/bin"], 404),
    (["{base}/users/alice/scannedinstances/12/scans/34/packages/1234567890123456789/bin"], 404),
    (["{base}/users/alice/scannedinstances/%EF%BC%91%EF%BC%92/scans/34/packages/1/bin"], 404),
    (["-u", "alice:wrong", "{bin}"], 401),
    (["-u", "nobody:wrong", "{bin}"], 401),
    (["-H", "Authorization: Basic %%%", "{bin}"], 401),
    (["-H", "Authorization: Basic", "{bin}"], 401),
    (["-u", "bob:bob-pw", "{bin}"], 403),
    (["-u", "carol:carol-pw", "{bin}"], 403),
    (["-u", "alice:alice e2e pw", "-H", "Range: lines=0-5", "{bin}"], 200),
    (["-u", "alice:alice e2e pw", "-H", "Range: bytes=-0", "{bin}"], 416),
    (["-u", "alice:alice e2e pw", "-H", "Range: bytes=" + ",".join(["0-0"] * 1000), "{bin}"], 200),
    # A header over gunicorn's limit_request_field_size never reaches the app.
    (["-u", "alice:alice e2e pw", "-H", "Range: bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2000, 2)),
      "{bin}"], 431),
    (["-u", "alice:alice e2e pw", "-X", "DELETE", "{bin}"], 405),
    (["{bin}?downloadToken=not-a-token"], 403),
]


@pytest.mark.parametrize("args, expected", BAD_REQUESTS)
def test_bad_inputs_get_a_clear_4xx(service, args, expected):
    url_args = [a.format(base=service.base_url, bin=service.bin_url(service.pids[OPENSSL])) for a in args]
    result = curl("-o", "-", "-w", "\n%{http_code}", *url_args)
    body, _, code = result.stdout.rpartition(b"\n")
    assert int(code) == expected
    if expected >= 400:
        assert b"Traceback" not in body and b"blobs/" not in body and str(service.home).encode() not in body


def test_access_log_has_no_token_and_no_query(service):
    service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", "34", "--pid", "1")
    status_of(service.bin_url(1) + "?downloadToken=secret-looking-value")
    log = service.access_log.read_text()
    assert "downloadToken" not in log and "secret-looking-value" not in log
    assert "/packages/1/bin" in log


def test_access_log_counts_the_bytes_of_sendfile_answers(service):
    """A whole small local file goes through sendfile(2), whose bytes gunicorn does not count itself."""
    deb = "curl_7.88.1-10+deb12u5_amd64.deb"
    path = service.bin_url(service.pids[deb]).removeprefix(service.base_url)
    assert status_of(*user(), service.base_url + path) == 200
    lines = []
    deadline = time.monotonic() + 5
    while not lines and time.monotonic() < deadline:
        lines = [json.loads(line) for line in service.access_log.read_text().splitlines()
                 if f'"path":"{path}"' in line and '"status":200' in line and '"method":"GET"' in line]
        time.sleep(0.05)
    assert lines and lines[-1]["bytes"] == service.files[deb].stat().st_size


def basic_downloads_counted(service) -> float:
    text = curl(f"{service.base_url}/metrics").stdout.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("pkgdl_downloads_total{") and 'auth="basic"' in line
               and ('outcome="completed"' in line or 'outcome="sendfile"' in line))


def test_metrics_add_up_every_worker(service):
    before = basic_downloads_counted(service)
    for _ in range(6):
        assert status_of(*user(), service.bin_url(service.pids["curl_7.88.1-10+deb12u5_amd64.deb"])) == 200
    # A sendfile answer is counted when gunicorn closes the file, just after the client has its last byte.
    deadline = time.monotonic() + 5
    while (counted := basic_downloads_counted(service) - before) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted == 6
    url = service.bin_url(service.pids[OPENSSL])
    assert status_of(url + "?downloadToken=forged") == 403
    assert status_of(*user(), "-H", f'If-None-Match: "{sha256_of(service.files[OPENSSL])}"', url) == 304
    text = curl(f"{service.base_url}/metrics").stdout.decode()
    assert 'pkgdl_token_rejections_total{reason="bad_signature"}' in text
    for name in ("pkgdl_bytes_sent_total", "pkgdl_token_rejections_total", "pkgdl_not_modified_total",
                 "pkgdl_time_to_first_byte_seconds"):
        assert name in text


def test_failed_logins_are_throttled_across_workers(tmp_path):
    throttled = make_service(tmp_path / "throttle", {"PKGDL_LOGIN_ATTEMPTS_PER_MINUTE": "10"})
    try:
        url = throttled.bin_url(throttled.pids[OPENSSL])
        statuses = [status_of("-u", "alice:guess", url) for _ in range(12)]
        assert statuses == [401] * 10 + [429] * 2
        result = curl("-o", "/dev/null", "-D", "-", *user(), url)
        assert result.stdout.decode().lower().startswith("http/1.1 429")
        assert "retry-after:" in result.stdout.decode().lower()
    finally:
        throttled.stop()


def test_guesses_from_one_address_never_lock_the_owner_out_on_another(tmp_path):
    """The review's reproduction: alice:guessN x 10 from 127.0.0.2, then alice from 127.0.0.3 with her password."""
    throttled = make_service(tmp_path / "lockout", {"PKGDL_LOGIN_ATTEMPTS_PER_MINUTE": "10"})
    try:
        url = throttled.bin_url(throttled.pids[OPENSSL])
        guesses = [status_of("--interface", "127.0.0.2", "-u", f"alice:guess{n}", url) for n in range(12)]
        assert guesses == [401] * 10 + [429] * 2
        assert status_of("--interface", "127.0.0.2", *user(), url) == 429  # the guessing address stays blocked
        assert status_of("--interface", "127.0.0.3", *user(), url) == 200  # the owner, elsewhere, is not
        assert status_of("--interface", "127.0.0.3", "-u", "bob:guess", url) == 401  # nor is that address
    finally:
        throttled.stop()


def test_no_control_socket_is_opened(tmp_path):
    # gunicorn >= 25 would open one per user at a shared default path, which two instances on a host fight over.
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    service = make_service(tmp_path / "svc", {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)})
    try:
        assert curl("-f", f"{service.base_url}/healthz").returncode == 0
        assert list(runtime.iterdir()) == [] and not (tmp_path / ".gunicorn").exists()
    finally:
        service.stop()


def test_a_browser_opening_a_used_link_gets_a_page_not_xml(service):
    link = service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", "34", "--pid",
                       str(service.pids[OPENSSL])).stdout.strip()
    url = service.base_url + link.removeprefix("https://downloads.example.test")
    assert status_of(url) == 200  # curl downloads directly
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    done = curl("-D", "-", "-o", "-", "-H", f"Accept: {browser}", url)
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 403") and "content-type: text/html; charset=utf-8" in head.lower()
    assert "already been used" in body and "openssl" not in body and "<script" not in body


@pytest.mark.parametrize("variable, value, names", [
    ("PKGDL_STORAGE_URL", "foo://x", "PKGDL_STORAGE_URL"),
    ("PKGDL_STORAGE_URL", "file:///nonexistent/pkgdl-root", "PKGDL_STORAGE_URL"),
    ("PKGDL_BURNLIST_URL", "postgres://x", "PKGDL_BURNLIST_URL"),
    ("PKGDL_TOKEN_MAX_AGE", "soon", "PKGDL_TOKEN_MAX_AGE"),
    ("PKGDL_SECRET_KEYS", "", "PKGDL_SECRET_KEYS"),
])
def test_a_bad_setting_stops_gunicorn_with_one_line(tmp_path, variable, value, names):
    """The master checks the configuration before it listens or forks: one line naming the variable, exit 2 (it
    was a traceback from every worker, exit 1 or 3)."""
    (tmp_path / "packages").mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PKGDL_")},
           "PKGDL_SECRET_KEYS": "k", "PKGDL_STORAGE_URL": (tmp_path / "packages").as_uri(),
           "PKGDL_BURNLIST_URL": f"sqlite:///{tmp_path / 'burn.sqlite3'}", "PKGDL_BIND": f"127.0.0.1:{free_port()}",
           variable: value}
    done = subprocess.run([str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "[INFO]" not in line]
    assert len(ours) == 1 and ours[0].startswith("pkgdl: ") and names in ours[0], done.stderr
    assert "Traceback" not in done.stderr


def test_another_app_under_this_gunicorn_conf_is_not_checked_as_pkgdl(tmp_path):
    """bench/ runs a bare Flask app with the same gunicorn.conf.py and no pkgdl settings: it must start."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PKGDL_")},
           "PKGDL_BIND": f"127.0.0.1:{port}", "PKGDL_WORKERS": "1"}
    process = subprocess.Popen([str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "bench.bare_app:app"],
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, process=process)
    finally:
        process.terminate()
        process.wait(timeout=15)
