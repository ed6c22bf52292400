"""PKGDL_OFFLOAD=x-accel at the app: what is handed to nginx, what is still streamed, and when tokens burn."""

from __future__ import annotations

import pytest

from app.tokens import PackageRef
from tests.test_download_view import ALICE
from tests.test_token_view import burned_count


@pytest.fixture
def offload_client(make_app, storage):
    storage.local_path = lambda path: f"/srv/pkgs/{path}"
    return make_app(offload="x-accel").test_client()


def test_plain_get_is_handed_to_nginx(offload_client, scan):
    response = offload_client.get(scan.bin_path(1), headers=ALICE)
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["X-Accel-Redirect"].startswith("/_pkgdl/local/blobs/sha256/")
    streamed = offload_client.application.test_client().head(scan.bin_path(1), headers=ALICE)
    for name in ("ETag", "Last-Modified", "Content-Type", "Repr-Digest", "Cache-Control",
                 "Vary", "X-Content-Type-Options", "Accept-Ranges", "Content-Length"):
        assert response.headers[name] == streamed.headers[name], name
    # Content-Disposition goes under another name, which nginx adds back only to the file's answer, so an error of
    # nginx's is never saved under the package's name (the template; tests/test_deploy_nginx.py checks the result).
    assert "Content-Disposition" not in response.headers
    assert response.headers["X-Pkgdl-Content-Disposition"] == streamed.headers["Content-Disposition"]
    assert "X-Pkgdl-Ticket" not in response.headers  # credentials: no link to settle


@pytest.mark.parametrize("headers, status", [
    ({"Range": "bytes=0-9"}, 206),
    ({"If-None-Match": '"other"'}, 200),
    ({"If-Match": "*"}, 200),
])
def test_conditional_and_ranged_requests_are_streamed(offload_client, scan, headers, status):
    response = offload_client.get(scan.bin_path(1), headers={**ALICE, **headers})
    assert response.status_code == status
    assert "X-Accel-Redirect" not in response.headers
    assert response.data


def test_304_and_412_are_answered_by_the_app(offload_client, scan):
    etag = offload_client.head(scan.bin_path(1), headers=ALICE).headers["ETag"]
    assert offload_client.get(scan.bin_path(1), headers={**ALICE, "If-None-Match": etag}).status_code == 304
    assert offload_client.get(scan.bin_path(1), headers={**ALICE, "If-Match": '"x"'}).status_code == 412


def test_token_burns_when_handed_over(offload_client, scan, settings):
    tokens = offload_client.application.extensions["pkgdl"].tokens
    url = f"{scan.bin_path(1)}?downloadToken={tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))}"
    assert offload_client.head(url).status_code == 200
    assert burned_count(settings) == 0
    first = offload_client.get(url)
    assert first.headers["X-Accel-Redirect"]
    assert first.headers["Cache-Control"] == "no-store"
    assert burned_count(settings) == 1
    assert offload_client.get(url).status_code == 403


def test_missing_blob_is_404_before_any_handover(offload_client, scan, storage):
    for path in [p for p in storage.objects if p.startswith("blobs/")]:
        del storage.objects[path]
    assert offload_client.get(scan.bin_path(1), headers=ALICE).status_code == 404


def test_backends_without_offload_stream(make_app, scan):
    response = make_app(offload="x-accel").test_client().get(scan.bin_path(1), headers=ALICE)
    assert "X-Accel-Redirect" not in response.headers
    assert response.data == scan.blobs[1]


def test_a_token_offload_carries_a_ticket_that_settles_the_link(offload_client, scan):
    """nginx could not read the file: it posts the ticket to /_pkgdl/offload-failed and the link is unused again."""
    tokens = offload_client.application.extensions["pkgdl"].tokens
    url = f"{scan.bin_path(1)}?downloadToken={tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))}"
    offloaded = offload_client.get(url)
    assert offloaded.status_code == 200 and "X-Accel-Redirect" in offloaded.headers
    ticket = offloaded.headers["X-Pkgdl-Ticket"]
    assert offload_client.get(url).status_code == 403  # claimed: no second whole copy
    report = offload_client.post("/_pkgdl/offload-failed",
                                 headers={"X-Pkgdl-Ticket": ticket, "X-Pkgdl-Request-Path": scan.bin_path(1)})
    assert report.status_code == 502 and b"pkgdl.offloadFailed" in report.data
    assert f"<requestUri>{scan.bin_path(1)}</requestUri>".encode() in report.data
    again = offload_client.get(url)
    assert again.status_code == 200  # unused again: delivered by nginx once more
    assert offload_client.get(url).status_code == 403
    assert offload_client.post("/_pkgdl/offload-failed", headers={"X-Pkgdl-Ticket": ticket}).status_code == 502
    assert offload_client.get(url).status_code == 403  # an old ticket settles nothing (its request has ended)
    forged = offload_client.post("/_pkgdl/offload-failed", headers={"X-Pkgdl-Ticket": ticket[:-3] + "abc"})
    assert forged.status_code == 502
    assert offload_client.get(url).status_code == 403  # a forged ticket settled nothing


def test_nginx_reports_how_far_it_got(offload_client, scan):
    """post_action /_pkgdl/offload-done: a broken offloaded transfer resumes (streamed by the app), a complete one
    spends the link."""
    tokens = offload_client.application.extensions["pkgdl"].tokens
    url = f"{scan.bin_path(1)}?downloadToken={tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))}"
    ticket = offload_client.get(url).headers["X-Pkgdl-Ticket"]
    done = offload_client.post("/_pkgdl/offload-done", headers={"X-Pkgdl-Ticket": ticket, "X-Pkgdl-Sent": "1000"})
    assert done.status_code == 204
    resumed = offload_client.get(url, headers={"Range": "bytes=1000-"})
    assert resumed.status_code == 206 and resumed.data == scan.blobs[1][1000:]
    assert offload_client.get(url, headers={"Range": "bytes=0-0"}).status_code == 403  # delivered once


def test_a_complete_offloaded_transfer_spends_the_link(offload_client, scan):
    tokens = offload_client.application.extensions["pkgdl"].tokens
    url = f"{scan.bin_path(1)}?downloadToken={tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))}"
    ticket = offload_client.get(url).headers["X-Pkgdl-Ticket"]
    for sent in ("", "x", "-1"):  # a report without a usable count changes nothing
        assert offload_client.post("/_pkgdl/offload-done",
                                   headers={"X-Pkgdl-Ticket": ticket, "X-Pkgdl-Sent": sent}).status_code == 204
    assert offload_client.get(url, headers={"Range": "bytes=0-0"}).status_code == 206  # still resumable
    size = str(len(scan.blobs[1]))
    offload_client.post("/_pkgdl/offload-done", headers={"X-Pkgdl-Ticket": ticket, "X-Pkgdl-Sent": size})
    assert offload_client.get(url, headers={"Range": "bytes=0-0"}).status_code == 403
    assert offload_client.post("/_pkgdl/offload-done", headers={"X-Pkgdl-Sent": size}).status_code == 204  # no ticket


def test_one_write_is_the_streamed_first_chunk():
    """Offload claims a package as written whole exactly when streaming would hand it over in one write."""
    from app.download import CHUNK_SIZE
    from app.offload import ONE_WRITE

    assert ONE_WRITE == CHUNK_SIZE
