"""Malformed and malicious requests against the real gunicorn service, one table, one exact status per row.

Invariants for every row: never 500, never a traceback, no internal path (the service home, ``blobs/``), no storage
key, and the burn-list unchanged except on rows that legitimately download with a token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures_service import E2E_USERS

pytestmark = pytest.mark.integration

DEB = "curl_7.88.1-10+deb12u5_amd64.deb"  # 70 000 bytes
OPENSSL = "openssl-libs-3.0.7-27.el9.x86_64.rpm"
PASSWORD = E2E_USERS["alice"]
SCAN = "/users/alice/scannedinstances/12/scans/34"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


BASIC = f"Basic {b64(f'alice:{PASSWORD}'.encode())}"
NUL_PASSWORD = b64(f"alice:{PASSWORD}".encode() + b"\0")


@dataclass(frozen=True)
class Row:
    """One request: ``curl`` arguments or ``raw`` bytes (placeholders filled per run), the exact status, and whether
    it may burn one token."""

    name: str
    status: int
    curl: tuple[str, ...] = ()
    raw: bytes = b""
    burns: bool = False
    check: str = ""  # an extra check by name, see ``extra_checks``


def c(name: str, status: int, *args: str, burns: bool = False, check: str = "") -> Row:
    return Row(name, status, curl=args, burns=burns, check=check)


def r(name: str, status: int, raw: bytes, check: str = "") -> Row:
    return Row(name, status, raw=raw, check=check)


def ranges(count: int, step: int = 2) -> str:
    return "bytes=" + ",".join(f"{i}-{i}" for i in range(0, count * step, step))


ROWS = [
    # --- Authorization header variants ---
    c("auth-empty-header", 401, "-H", "Authorization;", "{bin}"),
    c("auth-scheme-only", 401, "-H", "Authorization: Basic", "{bin}"),
    c("auth-scheme-space", 401, "-H", "Authorization: Basic ", "{bin}"),
    c("auth-not-base64", 401, "-H", "Authorization: Basic %%%", "{bin}"),
    c("auth-no-colon", 401, "-H", f"Authorization: Basic {b64(b'alicealice')}", "{bin}"),
    c("auth-bearer", 401, "-H", "Authorization: Bearer abc.def.ghi", "{bin}"),
    c("auth-lowercase-scheme-valid", 200, "-H", f"Authorization: basic {b64(f'alice:{PASSWORD}'.encode())}",
      "{bin}"),
    c("auth-latin1-name", 401, "-H", f"Authorization: Basic {b64('älice:x'.encode('latin-1'))}", "{bin}"),
    c("auth-utf8-name", 401, "-H", f"Authorization: Basic {b64('älice:x'.encode())}", "{bin}"),
    c("auth-invalid-utf8", 401, "-H", f"Authorization: Basic {b64(bytes([0xff, 0xfe, 0x3a, 0x80]))}", "{bin}"),
    c("auth-nul-in-password", 401, "-H", f"Authorization: Basic {NUL_PASSWORD}",
      "{bin}"),
    c("auth-huge-6k", 401, "-H", f"Authorization: Basic {b64(b'alice:' + b'x' * 4500)}", "{bin}"),
    c("auth-over-field-limit", 431, "-H", f"Authorization: Basic {b64(b'alice:' + b'x' * 9000)}", "{bin}"),
    c("auth-empty-password", 401, "-u", "alice:", "{bin}"),
    c("auth-empty-login", 401, "-u", f":{PASSWORD}", "{bin}"),
    c("auth-wrong-password", 401, "-u", "alice:wrong", "{bin}"),
    c("auth-other-user", 403, "-u", f"bob:{E2E_USERS['bob']}", "{bin}"),
    c("auth-no-entitlement", 403, "-u", f"carol:{E2E_USERS['carol']}", "{bin}"),
    c("auth-two-headers", 401, "-H", f"Authorization: {BASIC}", "-H", "Authorization: Basic Ym9iOng=", "{bin}"),
    # --- tokens ---
    c("token-garbage", 403, "{bin}?downloadToken=not-a-token"),
    c("token-empty-is-absent", 401, "{bin}?downloadToken="),
    c("token-nul", 403, "{bin}?downloadToken=%00"),
    c("token-3900-chars", 403, "{bin}?downloadToken=" + "A" * 3900),
    c("token-5kb-over-request-line-limit", 414, "{bin}?downloadToken=" + "A" * 5000),
    c("token-100kb", 414, "{bin}?downloadToken=" + "A" * 100_000),
    c("token-padded-spelling", 403, "{bin}?downloadToken={token}=="),
    c("token-duplicated", 400, "{bin}?downloadToken={token}&downloadToken={token}"),
    c("token-duplicated-one-empty", 400, "{bin}?downloadToken={token}&downloadToken="),
    c("token-param-case", 401, "{bin}?DownloadToken={token}"),
    c("token-other-pid", 403, "{bin}?downloadToken={token_other}"),
    c("token-other-uid-path", 403, "{base}/users/bob/scannedinstances/12/scans/34/packages/{pid}/bin"
                                    "?downloadToken={token}"),
    c("token-other-scan-path", 403, "{base}/users/alice/scannedinstances/12/scans/35/packages/{pid}/bin"
                                     "?downloadToken={token}"),
    c("token-html-accept-landing", 200, "-H", "Accept: text/html", "{bin}?downloadToken={token}",
      check="landing"),
    c("token-head", 200, "-I", "{bin}?downloadToken={token}"),
    c("token-with-wrong-basic-falls-back", 200, "-u", "alice:wrong", "{bin}?downloadToken={token}", burns=True),
    c("token-post-downloads", 200, "-X", "POST", "{bin}?downloadToken={token}", burns=True),
    c("post-without-token", 405, "-X", "POST", "-u", f"alice:{PASSWORD}", "{bin}", check="allow"),
    c("token-crlf-injection", 403, "{bin}?downloadToken=x%0d%0aSet-Cookie:%20a=b", check="no-cookie"),
    # --- ids ---
    c("uid-dotdot", 404, "--path-as-is", "{base}/users/../scannedinstances/12/scans/34/packages/{pid}/bin"),
    c("siid-dotdot", 404, "--path-as-is", "{base}/users/alice/scannedinstances/../scans/34/packages/{pid}/bin"),
    c("sid-dotdot", 404, "--path-as-is", "{base}/users/alice/scannedinstances/12/scans/../packages/{pid}/bin"),
    c("pid-dotdot", 404, "--path-as-is", "{base}" + SCAN + "/packages/../bin"),
    c("uid-encoded-dotdot", 404, "{base}/users/%2e%2e/scannedinstances/12/scans/34/packages/{pid}/bin"),
    c("traversal-through-segments", 404, "--path-as-is",
      "{base}/users/alice/scannedinstances/12/scans/34/packages/../../34/packages/{pid}/bin"),
    c("uid-encoded-slash", 404, "{base}/users/alice%2F..%2Fbob/scannedinstances/12/scans/34/packages/{pid}/bin"),
    c("pid-encoded-slash", 404, "{base}" + SCAN + "/packages/1%2Fbin"),
    c("uid-encoded-backslash", 404, "{base}/users/alice%5C..%5Cbob/scannedinstances/12/scans/34/packages/{pid}/bin"),
    c("uid-encoded-nul", 404, "{base}/users/alice%00/scannedinstances/12/scans/34/packages/{pid}/bin"),
    c("siid-fullwidth-digits", 404, "{base}/users/alice/scannedinstances/%EF%BC%91%EF%BC%92/scans/34/packages/1/bin"),
    c("pid-fullwidth-digit", 404, "{base}" + SCAN + "/packages/%EF%BC%91/bin"),
    c("pid-arabic-indic-digit", 404, "{base}" + SCAN + "/packages/%D9%A1/bin"),
    c("pid-19-digits", 404, "{base}" + SCAN + "/packages/1234567890123456789/bin"),
    c("pid-negative", 404, "{base}" + SCAN + "/packages/-1/bin"),
    c("pid-plus", 404, "{base}" + SCAN + "/packages/+1/bin"),
    c("pid-space", 404, "{base}" + SCAN + "/packages/%201/bin"),
    c("pid-hex", 404, "{base}" + SCAN + "/packages/0x1/bin"),
    c("uid-65-chars", 404, "-u", f"alice:{PASSWORD}",
      "{base}/users/" + "a" * 65 + "/scannedinstances/12/scans/34/packages/1/bin"),
    c("uid-64-chars-not-yours", 403, "-u", f"alice:{PASSWORD}",
      "{base}/users/" + "a" * 64 + "/scannedinstances/12/scans/34/packages/1/bin"),
    c("uid-leading-dot", 404, "{base}/users/.alice/scannedinstances/12/scans/34/packages/1/bin"),
    c("uid-unicode", 404, "{base}/users/%C3%A4lice/scannedinstances/12/scans/34/packages/1/bin"),
    c("uid-semicolon", 404, "{base}/users/alice;x=1/scannedinstances/12/scans/34/packages/1/bin"),
    c("pid-unknown", 404, "-u", f"alice:{PASSWORD}", "{base}" + SCAN + "/packages/999999/bin"),
    c("listing-uid-dotdot", 404, "--path-as-is", "-u", f"alice:{PASSWORD}",
      "{base}/users/../scannedinstances/12/scans/34/packages"),
    c("listing-compare-with-traversal", 404, "-u", f"alice:{PASSWORD}",
      "{base}" + SCAN + "/packages?compareWith=users/../scannedinstances/12/scans/34"),
    c("listing-compare-with-garbage", 400, "-u", f"alice:{PASSWORD}", "{base}" + SCAN + "/packages?compareWith=%00"),
    # --- Range ---
    c("range-double-minus", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=--1", "{bin}"),
    c("range-reversed", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=1-0", "{bin}"),
    c("range-huge-end", 206, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=0-" + "9" * 40, "{bin}",
      check="whole-range"),
    c("range-huge-start", 416, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=" + "9" * 40 + "-", "{bin}",
      check="unsatisfiable"),
    c("range-huge-suffix", 206, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=-" + "9" * 5000, "{bin}",
      check="whole-range"),
    c("range-start-past-end", 416, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=70000-", "{bin}",
      check="unsatisfiable"),
    c("range-suffix-zero", 416, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=-0", "{bin}"),
    c("range-16", 206, "-u", f"alice:{PASSWORD}", "-H", f"Range: {ranges(16)}", "{bin}", check="multipart"),
    c("range-17", 200, "-u", f"alice:{PASSWORD}", "-H", f"Range: {ranges(17)}", "{bin}"),
    c("range-1000", 200, "-u", f"alice:{PASSWORD}", "-H", f"Range: {ranges(1000, 1)[:8000]}", "{bin}"),
    c("range-overlapping-1000", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=" + ",".join(["0-0"] * 1000),
      "{bin}"),
    c("range-unknown-unit", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: items=0-5", "{bin}"),
    c("range-unit-with-space", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes =0-5", "{bin}"),
    c("range-letters", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=a-b", "{bin}"),
    c("range-fullwidth-digits", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=１-２", "{bin}"),
    c("token-for-unknown-pid-no-burn", 403, "-H", "Range: bytes=0-0",
      "{base}" + SCAN + "/packages/999999/bin?downloadToken={token}"),
    c("range-with-token-416-no-burn", 416, "-H", "Range: bytes=99999-", "{bin}?downloadToken={token}"),
    # --- preconditions ---
    c("inm-garbage", 200, "-u", f"alice:{PASSWORD}", "-H", "If-None-Match: garbage", "{bin}"),
    c("inm-star", 304, "-u", f"alice:{PASSWORD}", "-H", "If-None-Match: *", "{bin}"),
    c("inm-star-list", 304, "-u", f"alice:{PASSWORD}", "-H", "If-None-Match: *, *", "{bin}"),
    c("inm-star-mixed", 200, "-u", f"alice:{PASSWORD}", "-H", 'If-None-Match: *, "x"', "{bin}"),
    c("inm-8k-list-with-match", 304, "-u", f"alice:{PASSWORD}", "-H",
      "If-None-Match: " + ", ".join(['"x"'] * 1500) + ', "{etag}"', "{bin}"),
    c("inm-10k-list", 431, "-u", f"alice:{PASSWORD}", "-H", "If-None-Match: " + ", ".join(['"x"'] * 2500), "{bin}"),
    c("if-match-star", 200, "-u", f"alice:{PASSWORD}", "-H", "If-Match: *", "{bin}"),
    c("if-match-garbage", 412, "-u", f"alice:{PASSWORD}", "-H", "If-Match: garbage", "{bin}"),
    c("if-match-weak", 412, "-u", f"alice:{PASSWORD}", "-H", 'If-Match: W/"{etag}"', "{bin}"),
    c("if-match-unterminated-quote", 412, "-u", f"alice:{PASSWORD}", "-H", 'If-Match: "' + "a" * 7000, "{bin}"),
    c("if-match-fails-with-token-no-burn", 412, "-H", "If-Match: garbage", "{bin}?downloadToken={token}"),
    c("ims-garbage", 200, "-u", f"alice:{PASSWORD}", "-H", "If-Modified-Since: yesterday", "{bin}"),
    c("ius-garbage", 200, "-u", f"alice:{PASSWORD}", "-H", "If-Unmodified-Since: 99999999999999999999", "{bin}"),
    c("ius-past", 412, "-u", f"alice:{PASSWORD}", "-H", "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
      "{bin}"),
    c("ius-invalid-calendar", 200, "-u", f"alice:{PASSWORD}", "-H",
      "If-Unmodified-Since: Sun, 31 Feb 1994 08:49:37 GMT", "{bin}"),
    c("if-range-garbage", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=0-0", "-H", "If-Range: garbage",
      "{bin}"),
    c("if-range-star", 200, "-u", f"alice:{PASSWORD}", "-H", "Range: bytes=0-0", "-H", "If-Range: *", "{bin}"),
    # --- methods ---
    c("put", 405, "-X", "PUT", "-u", f"alice:{PASSWORD}", "{bin}", check="allow"),
    c("delete", 405, "-X", "DELETE", "-u", f"alice:{PASSWORD}", "{bin}", check="allow"),
    c("patch", 405, "-X", "PATCH", "{bin}?downloadToken={token}", check="allow"),
    c("trace", 405, "-X", "TRACE", "-u", f"alice:{PASSWORD}", "{bin}", check="allow"),
    c("options", 405, "-X", "OPTIONS", "{bin}", check="allow"),
    c("propfind", 405, "-X", "PROPFIND", "{bin}", check="allow"),
    c("listing-post", 405, "-X", "POST", "-u", f"alice:{PASSWORD}", "{base}" + SCAN + "/packages", check="allow"),
    r("connect", 404, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: close\r\n\r\n"),
    # --- raw requests that curl would normalise ---
    r("raw-dotdot-path", 404, b"GET /users/alice/../x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    r("raw-backslash-uid", 404, b"GET /users/alice\\..\\bob/scannedinstances/12/scans/34/packages/1/bin HTTP/1.1\r\n"
                                b"Host: h\r\nConnection: close\r\n\r\n"),
    r("raw-nul-in-path", 400, b"GET /users/alice\x00/scannedinstances/12/scans/34/packages/1/bin HTTP/1.1\r\n"
                              b"Host: h\r\nConnection: close\r\n\r\n"),
    r("raw-nul-in-header", 400, b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n"),
    r("raw-overlong-request-line", 414, b"GET /users/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: h\r\n\r\n"),
    r("raw-bare-cr-header-injection", 400, b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-A: a\rSet-Cookie: b=c\r\n"
                                           b"Connection: close\r\n\r\n"),
    r("raw-obs-fold", 400, b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n"),
    r("raw-cl-and-te-smuggling", 400, b"POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
                                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"),
    r("raw-http10-no-host-no-auth", 401, b"GET {bin_path} HTTP/1.0\r\n\r\n"),
    r("raw-http10-no-host-basic", 200, b"GET {bin_path} HTTP/1.0\r\nAuthorization: {basic}\r\n\r\n"),
    r("raw-absolute-form-evil-host", 200, b"GET http://evil.example{bin_path} HTTP/1.1\r\nHost: evil.example\r\n"
                                          b"Authorization: {basic}\r\nConnection: close\r\n\r\n"),
    r("raw-host-spoof-listing", 200, b"GET " + SCAN.encode() + b"/packages HTTP/1.1\r\nHost: evil.example\r\n"
                                     b"X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
                                     b"Authorization: {basic}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
      check="relative-links"),
    # werkzeug would redirect these (merge_slashes, strict_slashes) to http://<Host>/..., token included: 404s here
    r("raw-double-slash-with-token-evil-host", 404, b"GET /users/alice/scannedinstances/12/scans/34//packages/{pid}"
                                                    b"/bin?downloadToken={token} HTTP/1.1\r\nHost: evil.example\r\n"
                                                    b"Connection: close\r\n\r\n", check="no-redirect"),
    r("raw-double-slash-listing-evil-host", 404, b"GET /users/alice/scannedinstances/12/scans/2//packages HTTP/1.1\r\n"
                                                 b"Host: evil.example\r\nAuthorization: {basic}\r\n"
                                                 b"Connection: close\r\n\r\n", check="no-redirect"),
    r("raw-trailing-slash-evil-host", 404, b"GET " + SCAN.encode() + b"/packages/ HTTP/1.1\r\nHost: evil.example\r\n"
                                           b"Authorization: {basic}\r\nConnection: close\r\n\r\n",
      check="no-redirect"),
    r("raw-garbage-method", 400, b"G\x01T / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    r("raw-bad-version", 400, b"GET /healthz HTTP/9.9\r\nHost: h\r\nConnection: close\r\n\r\n"),
]


# --- running a row ---------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: str
    body: bytes


def burned_rows(service) -> int:
    """Rows in the burn-list (0 before the first burn created the file)."""
    path = Path(service.home) / "burnlist.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM burned").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def fresh_tokens(service) -> dict[int, str]:
    """Fresh tokens for every package of the scan, from the listing."""
    result = subprocess.run(["curl", "-sS", "-u", f"alice:{PASSWORD}", "-H", "Accept: application/json",
                             f"{service.base_url}{SCAN}/packages"], capture_output=True, timeout=30, check=True)
    packages = json.loads(result.stdout)["scannedPackages"]["scannedPackages"]["scannedPackage"]
    return {p["dbId"]: parse_qs(urlsplit(p["binaryUri"]).query)["downloadToken"][0] for p in packages}


def run_curl(args: list[str], tmp: Path) -> Answer:
    headers, body = tmp / "headers", tmp / "body"
    result = subprocess.run(["curl", "-sS", "--max-time", "30", "-D", str(headers), "-o", str(body),
                             "-w", "%{http_code}", *args], capture_output=True, timeout=40)
    return Answer(int(result.stdout or 0), headers.read_text(errors="replace") if headers.exists() else "",
                  body.read_bytes() if body.exists() else b"")


def run_raw(request: bytes, base_url: str) -> Answer:
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    received = b""
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(request)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = connection.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return Answer(status, head.decode("latin-1"), body)


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def extra_checks(row: Row, answer: Answer, service) -> None:
    headers = answer.headers.lower()
    if row.check == "allow":
        assert "allow: get, head" in headers
    elif row.check == "landing":
        assert "text/html" in headers and b"<form" in answer.body and b"<script" not in answer.body
    elif row.check == "no-cookie":
        assert "set-cookie" not in headers
    elif row.check == "whole-range":
        assert "content-range: bytes 0-69999/70000" in headers
    elif row.check == "unsatisfiable":
        assert "content-range: bytes */70000" in headers
    elif row.check == "multipart":
        assert "content-type: multipart/byteranges; boundary=" in headers
    elif row.check == "no-redirect":
        assert "location:" not in headers and "evil.example" not in answer.headers
        assert "content-type: application/xml" in headers  # through the error table: a uforgeError
    elif row.check == "relative-links":
        text = answer.body.decode()
        assert "evil.example" not in text and "evil.example" not in answer.headers.split("\r\n", 1)[-1]
        packages = json.loads(text)["scannedPackages"]["scannedPackages"]["scannedPackage"]
        for package in packages:
            assert package["binaryUri"].startswith("users/alice/") and "://" not in package["binaryUri"]
            assert package["uri"].startswith("users/alice/")


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input(service, row, tmp_path):
    pid = service.pids[DEB]
    tokens = fresh_tokens(service)
    other_pid = next(p for p in tokens if p != pid)
    bin_url = service.bin_url(pid)
    values = {"base": service.base_url, "bin": bin_url, "bin_path": urlsplit(bin_url).path, "pid": str(pid),
              "token": tokens[pid], "token_other": tokens[other_pid], "basic": BASIC,
              "etag": hashlib.sha256(service.files[DEB].read_bytes()).hexdigest()}
    before = burned_rows(service)
    if row.raw:
        answer = run_raw(fill(row.raw.decode("latin-1"), values).encode("latin-1"), service.base_url)
    else:
        answer = run_curl([fill(arg, values) for arg in row.curl], tmp_path)
    after = burned_rows(service)
    assert answer.status == row.status, (answer.status, answer.headers, answer.body[:300])
    assert answer.status != 500
    text = answer.headers
    if answer.status >= 300 or row.check in ("relative-links", "landing"):
        text += answer.body.decode("latin-1")
    # The storage key (blobs/sha256/...) never shows, not even in the listing (UForge's ScannedPkg has no path).
    leaks = ("Traceback", str(service.home), "pkgdl-test", "blobs/", "sha256/")
    for leak in leaks:
        assert leak not in text, leak
    assert values["token"] not in answer.headers and values["token"] not in answer.body.decode("latin-1")
    assert after - before == (1 if row.burns else 0), (before, after)
    extra_checks(row, answer, service)


def test_minted_link_uses_the_public_url_whatever_host_was_seen(service):
    """The CLI never sees a request, so a spoofed Host cannot reach a minted link: it uses PKGDL_PUBLIC_URL."""
    run_raw(b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", service.base_url)
    link = service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", "34",
                       "--pid", str(service.pids[DEB])).stdout.strip()
    assert link.startswith(service.env["PKGDL_PUBLIC_URL"] + SCAN + "/packages/")
    assert "evil.example" not in link


def test_the_table_is_large_enough():
    assert len(ROWS) >= 40
    assert len({row.name for row in ROWS}) == len(ROWS)
