"""The /bin endpoint over the Flask test client: headers, conditionals, ranges, access, faults (Basic path)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from storage_backends import BlobSizeMismatch
from tests.fixtures_app import PASSWORDS


def basic(login: str, password: str | None = None) -> dict[str, str]:
    password = PASSWORDS[login] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


ALICE = basic("alice")


def test_full_download_has_every_header(client, scan):
    body = scan.blobs[1]
    response = client.get(scan.bin_path(1), headers=ALICE)
    assert response.status_code == 200
    assert response.data == body
    sha = hashlib.sha256(body).hexdigest()
    h = response.headers
    assert h["ETag"] == f'"{sha}"'
    assert h["Content-Length"] == str(len(body))
    assert h["Content-Type"] == "application/x-rpm"
    assert h["Accept-Ranges"] == "bytes"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Cache-Control"] == "private, no-cache"
    assert h["Vary"] == "Authorization"
    assert h["Repr-Digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    assert h["Content-Disposition"] == ("attachment; filename=\"openssl-3.0.7-27.el9.x86_64.rpm\"; "
                                        "filename*=UTF-8''openssl-3.0.7-27.el9.x86_64.rpm")
    assert h["Last-Modified"].endswith(" GMT")
    assert "Referrer-Policy" not in h


def test_head_has_headers_and_no_body(client, scan):
    response = client.head(scan.bin_path(1), headers={**ALICE, "Range": "bytes=0-9"})
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Content-Length"] == str(len(scan.blobs[1]))


def test_empty_package(client, scan):
    response = client.get(scan.bin_path(3), headers=ALICE)
    assert (response.status_code, response.data, response.headers["Content-Length"]) == (200, b"", "0")


def test_if_none_match_gives_304_without_opening_storage(client, scan, storage):
    etag = client.head(scan.bin_path(1), headers=ALICE).headers["ETag"]
    storage.calls.clear()
    response = client.get(scan.bin_path(1), headers={**ALICE, "If-None-Match": f'W/"x", {etag}', "Range": "bytes=0-1"})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["Vary"] == "Authorization"
    assert not [call for call in storage.calls if call.startswith("open")]


@pytest.mark.parametrize("headers, status", [
    ({"If-Match": '"nope"'}, 412),
    ({"If-Match": "*"}, 200),
    ({"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 412),
    ({"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 304),
    ({"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 200),
    ({"If-None-Match": "*"}, 304),
    ({"Range": "bytes=0-9"}, 206),
    ({"Range": "bytes=-0"}, 416),
    ({"Range": "bytes=99999999-"}, 416),
    ({"Range": "items=0-1"}, 200),
    ({"Range": "bytes=0-0,2-2"}, 206),
    ({"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2000, 2))}, 200),
    ({"Range": "bytes=0-9", "If-Range": 'W/"x"'}, 200),
])
def test_preconditions_and_ranges(client, scan, headers, status):
    response = client.get(scan.bin_path(1), headers={**ALICE, **headers})
    assert response.status_code == status
    if status in (304, 412):
        assert response.data == b""
        assert "Content-Type" not in response.headers


def test_single_range(client, scan):
    body = scan.blobs[1]
    response = client.get(scan.bin_path(1), headers={**ALICE, "Range": "bytes=100-1999999"})
    assert response.status_code == 206
    assert response.data == body[100:2000000]
    assert response.headers["Content-Range"] == f"bytes 100-1999999/{len(body)}"
    assert response.headers["Content-Length"] == str(2000000 - 100)


def test_suffix_range_and_416(client, scan):
    body = scan.blobs[1]
    assert client.get(scan.bin_path(1), headers={**ALICE, "Range": "bytes=-10"}).data == body[-10:]
    response = client.get(scan.bin_path(1), headers={**ALICE, "Range": f"bytes={len(body)}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(body)}"


def test_multipart_ranges(client, scan):
    body = scan.blobs[1]
    response = client.get(scan.bin_path(1), headers={**ALICE, "Range": "bytes=0-9, 20-29, 5-12"})
    assert response.status_code == 206
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    assert int(response.headers["Content-Length"]) == len(response.data)
    boundary = content_type.split("boundary=")[1].encode()
    parts = [p for p in response.data.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    assert len(parts) == 2  # 0-9 and 5-12 coalesced
    assert parts[0].split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") == body[0:13]
    assert b"Content-Range: bytes 20-29/" in parts[1]


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    (basic("alice", "wrong"), 401),
    (basic("nobody", "x"), 401),
    ({"Authorization": "Basic !!!notbase64"}, 401),
    ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, 401),
    ({"Authorization": "Bearer abc"}, 401),
    ({"Authorization": "Digest " + base64.b64encode(b"alice:alice-pw").decode()}, 401),
    ({"Authorization": ""}, 401),
    (basic("bob"), 403),
    (basic("carol"), 403),
    (basic("root"), 200),
])
def test_basic_access(client, scan, headers, status):
    response = client.get(scan.bin_path(1), headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pkgdl", charset="UTF-8"'
        assert b"uforgeError" in response.data


@pytest.mark.parametrize("path", [
    "/users/alice/scannedinstances/12/scans/34/packages/99/bin",
    "/users/alice/scannedinstances/12/scans/35/packages/1/bin",
    "/users/al%2Fice/scannedinstances/12/scans/34/packages/1/bin",
    "/users/..%2F..%2Fetc/scannedinstances/12/scans/34/packages/1/bin",
    "/users/alice/scannedinstances/12/scans/34/packages/1%00/bin",
    "/users/alice/scannedinstances/12/scans/34/packages/" + "1" * 19 + "/bin",
    "/users/alice/scannedinstances/-1/scans/34/packages/1/bin",
    "/users/alice/scannedinstances/%EF%BC%91/scans/34/packages/1/bin",
    "/users/" + "a" * 65 + "/scannedinstances/12/scans/34/packages/1/bin",
    "/users/.alice/scannedinstances/12/scans/34/packages/1/bin",
    "/users/alice/scannedinstances/12/scans/34/packages/1/bin/extra",
])
def test_unknown_or_malformed_ids_are_404(client, path, storage):
    storage.calls.clear()
    response = client.get(path, headers=basic("root"))
    assert response.status_code == 404
    assert b"Traceback" not in response.data
    assert not [call for call in storage.calls if call.startswith("open")]


def test_malformed_ids_touch_no_storage(client, storage):
    storage.calls.clear()
    assert client.get("/users/alice/scannedinstances/x/scans/34/packages/1/bin", headers=ALICE).status_code == 404
    assert storage.calls == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "POST"])
def test_other_methods_are_405(client, scan, method):
    response = client.open(scan.bin_path(1), method=method, headers=ALICE)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


DETAIL = "bucket-secret/blobs/sha256/ab/key at /srv/storage"  # what a backend error might say; never shown


@pytest.mark.parametrize("fault, status", [
    (FileNotFoundError(DETAIL), 404),
    (PermissionError(DETAIL), 502),
    (TimeoutError(DETAIL), 504),
    (ConnectionError(DETAIL), 503),
    (BlobSizeMismatch(DETAIL), 502),
])
def test_storage_faults_before_first_byte(client, scan, storage, fault, status):
    storage.fault = fault
    response = client.get(scan.bin_path(1), headers=ALICE)
    assert response.status_code == status
    if status == 503:
        assert response.headers["Retry-After"]
    assert b"<statusCode>" + str(status).encode() + b"</statusCode>" in response.data  # the generic uforgeError
    for leak in (b"bucket-secret", b"blobs/", b"/srv/storage"):
        assert leak not in response.data


def test_fault_after_first_byte_aborts(client, scan, storage):
    class Failing:
        def __init__(self):
            self.reads = 0

        def seek(self, offset):
            pass

        def read(self, n):
            self.reads += 1
            if self.reads > 1:
                raise ConnectionError("storage went away")
            return b"x" * n

        def close(self):
            pass

    storage.open_blob = lambda path, size: Failing()
    response = client.get(scan.bin_path(1), headers=ALICE, buffered=False)
    assert response.status_code == 200
    with pytest.raises(ConnectionError):
        b"".join(response.response)


def test_short_object_aborts_instead_of_short_file(client, scan, storage):
    storage.shrink_after_open = 2 * 1024 * 1024  # shorter than the catalog says, found only while reading
    response = client.get(scan.bin_path(1), headers=ALICE, buffered=False)
    with pytest.raises(OSError):
        b"".join(response.response)


def test_object_of_another_size_is_refused_before_any_byte(client, scan, storage):
    for path, data in list(storage.objects.items()):
        if path.startswith("blobs/") and len(data) == len(scan.blobs[1]):
            storage.objects[path] = data[: 2 * 1024 * 1024]
    assert client.get(scan.bin_path(1), headers=ALICE).status_code == 502


def test_errors_as_json_when_asked(client, scan):
    response = client.get(scan.bin_path(99), headers={**ALICE, "Accept": "application/json"})
    assert response.status_code == 404
    error = response.get_json()["uforgeError"]
    assert error["statusCode"] == 404
    assert error["requestMethod"] == "GET"
    assert error["requestUri"] == scan.bin_path(99)
    assert set(error["localizedErrorMsg"]) == {"message", "messageId"}


def test_error_xml_shape(client, scan):
    response = client.get(scan.bin_path(99) + "?secret=1", headers=ALICE)
    assert response.headers["Content-Type"].startswith("application/xml")
    assert b'<ns0:uforgeError xmlns:ns0="http://www.usharesoft.com/uforge">' in response.data
    assert b"<statusCode>404</statusCode>" in response.data
    assert b"secret" not in response.data


def test_failed_logins_are_throttled(make_app, scan):
    client = make_app(login_attempts_per_minute=3).test_client()
    statuses = [client.get(scan.bin_path(1), headers=basic("alice", "bad")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    blocked = client.get(scan.bin_path(1), headers=ALICE)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("fault", [ConnectionError("down"), PermissionError("credentials refused"),
                                   TimeoutError("slow"), OSError("odd")])
def test_health_and_readiness(client, storage, fault):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    storage.fault = fault  # whatever the dependency's fault, a readiness probe says 503 (never 502 or 504)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert b"credentials" not in response.data


def test_throttle_uses_the_forwarded_address_behind_a_trusted_proxy(make_app, scan):
    client = make_app(login_attempts_per_minute=2, trusted_proxies=1).test_client()
    for login in ("alice", "bob"):  # two accounts, one address: the address is what gets blocked
        client.get(scan.bin_path(1), headers={**basic(login, "bad"), "X-Forwarded-For": "203.0.113.1"})
    blocked = client.get(scan.bin_path(1), headers={**ALICE, "X-Forwarded-For": "203.0.113.1"})
    assert blocked.status_code == 429
    other_client = client.get(scan.bin_path(1), headers={**ALICE, "X-Forwarded-For": "203.0.113.2"})
    assert other_client.status_code == 200


def test_forwarded_for_counts_only_from_a_trusted_peer(make_app, scan):
    """The second review: sent to gunicorn itself, X-Forwarded-For let a guesser rotate addresses (and frame another).
    From a peer outside PKGDL_FORWARDED_ALLOW_IPS the header is ignored: the socket's address is counted."""
    client = make_app(login_attempts_per_minute=2, trusted_proxies=1).test_client()
    untrusted = {"REMOTE_ADDR": "198.51.100.7"}
    for n in range(2):
        client.get(scan.bin_path(1), headers={**basic("nobody", f"x{n}"), "X-Forwarded-For": f"10.9.0.{n}"},
                   environ_base=untrusted)
    rotated = client.get(scan.bin_path(1), headers={**basic("nobody", "x9"), "X-Forwarded-For": "10.9.0.9"},
                         environ_base=untrusted)
    assert rotated.status_code == 429  # the rotation did not help: 198.51.100.7 itself is blocked
    framed = client.get(scan.bin_path(1), headers={**ALICE, "X-Forwarded-For": "10.9.0.0"})  # via the proxy
    assert framed.status_code == 200  # and 10.9.0.0, which the guesser named, was never counted
    star = make_app(login_attempts_per_minute=2, trusted_proxies=1, forwarded_allow_ips=("*",)).test_client()
    for n in range(3):
        star.get(scan.bin_path(1), headers={**basic("nobody", f"y{n}"), "X-Forwarded-For": "10.8.0.1"},
                 environ_base=untrusted)
    assert star.get(scan.bin_path(1), headers={**ALICE, "X-Forwarded-For": "10.8.0.1"},
                    environ_base=untrusted).status_code == 429  # "*" trusts every peer, as gunicorn's setting


def test_remembered_credentials_pass_while_guessers_are_blocked(make_app, scan):
    client = make_app(login_attempts_per_minute=2).test_client()
    assert client.get(scan.bin_path(1), headers=ALICE).status_code == 200  # verified, remembered
    for _ in range(2):
        assert client.get(scan.bin_path(1), headers=basic("alice", "guess")).status_code == 401
    assert client.get(scan.bin_path(1), headers=basic("alice", "guess")).status_code == 429
    assert client.get(scan.bin_path(1), headers=ALICE).status_code == 200


def test_broken_manifest_is_a_server_error_not_a_wrong_file(client, scan, storage):
    storage.objects["alice/12/34/packages.json"] = b'{"uid": "alice", "siid": 12, "sid": 34, "packages": [{"dbId": 1'
    response = client.get(scan.bin_path(1), headers=ALICE)
    assert response.status_code == 502
    assert b"packages.json" not in response.data and b"alice/12" not in response.data


def test_hostile_mime_type_is_served_as_octet_stream(client, scan, storage):
    import json
    manifest = json.loads(storage.objects["alice/12/34/packages.json"])
    manifest["packages"][0]["mimeType"] = "text/html"
    storage.objects["alice/12/34/packages.json"] = json.dumps(manifest).encode()
    response = client.get(scan.bin_path(manifest["packages"][0]["dbId"]), headers=ALICE)
    assert response.headers["Content-Type"] == "application/octet-stream"
