"""The /bin endpoint on the token path: single use, what burns and what does not, landing page, listing tokens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.tokens import PackageRef
from tests.test_download_view import ALICE, basic

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def mint(app, scan):
    def mint(pid: int = 1, **ids) -> str:
        ref = PackageRef(ids.get("uid", scan.uid), ids.get("siid", scan.siid), ids.get("sid", scan.sid), pid)
        return app.extensions["pkgdl"].tokens.mint(ref)
    return mint


def burned_count(settings) -> int:
    path = Path(settings.burnlist_url.removeprefix("sqlite:///"))
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("select count(*) from burned").fetchone()[0]


def test_token_downloads_once(client, scan, mint, settings):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    first = client.get(url)
    assert first.status_code == 200
    assert first.data == scan.blobs[1]
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Referrer-Policy"] == "no-referrer"
    assert "Vary" not in first.headers
    second = client.get(url)
    assert second.status_code == 403
    assert second.headers["Cache-Control"] == "no-store"
    assert second.headers["Referrer-Policy"] == "no-referrer"
    assert burned_count(settings) == 1


@pytest.mark.parametrize("headers, status", [
    ({"If-None-Match": "*"}, 304),
    ({"If-Match": '"other"'}, 412),
    ({"Range": "bytes=999999999-"}, 416),
])
def test_answers_without_body_do_not_burn(client, scan, mint, settings, headers, status):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    response = client.get(url, headers=headers)
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert burned_count(settings) == 0
    assert client.get(url).status_code == 200


def test_head_does_not_burn(client, scan, mint, settings):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    assert client.head(url).status_code == 200
    assert burned_count(settings) == 0


def test_storage_fault_does_not_burn(client, scan, mint, settings, storage):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    storage.fault = ConnectionError("down")
    assert client.get(url).status_code == 503
    storage.fault = None
    assert client.get(url).status_code == 200


def test_a_range_request_claims_the_link(client, scan, mint):
    """A ranged first request claims too: a whole copy after it is refused (resumes: test_resumable_links.py)."""
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    assert client.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
    assert client.get(url).status_code == 403


def test_basic_credentials_win_and_leave_token_unburned(client, scan, mint, settings):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    response = client.get(url, headers=ALICE)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert burned_count(settings) == 0
    assert client.get(url).status_code == 200


def test_wrong_credentials_fall_back_to_the_token(client, scan, mint):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    assert client.get(url, headers=basic("alice", "bad")).status_code == 200


@pytest.mark.parametrize("query, status", [
    ("downloadToken=", 401),
    ("downloadToken=garbage", 403),
    ("downloadToken=" + "A" * 5000, 403),
])
def test_bad_tokens(client, scan, query, status):
    response = client.get(f"{scan.bin_path(1)}?{query}")
    assert response.status_code == status
    assert b"garbage" not in response.data
    assert response.headers["Cache-Control"] == "no-store"


def test_duplicate_token_parameters_are_400_and_burn_nothing(client, scan, mint, settings):
    token = mint()
    response = client.get(f"{scan.bin_path(1)}?downloadToken={token}&downloadToken={token}")
    assert response.status_code == 400
    assert burned_count(settings) == 0
    assert token.encode() not in response.data


def test_token_bound_to_its_package(client, scan, mint):
    assert client.get(f"{scan.bin_path(2)}?downloadToken={mint(1)}").status_code == 403
    assert client.get(f"{scan.bin_path(1)}?downloadToken={mint(1, sid=35)}").status_code == 403


def test_malleable_spellings_of_a_used_token_are_refused(client, scan, mint):
    token = mint()
    assert client.get(f"{scan.bin_path(1)}?downloadToken={token}").status_code == 200
    for spelling in (token + "=", token + "==", token + "===="):
        assert client.get(f"{scan.bin_path(1)}?downloadToken={spelling}").status_code == 403


def test_link_scanner_gets_landing_page_then_post_downloads(client, scan, mint, settings):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    page = client.get(url, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert b'method="post"' in page.data.lower()
    assert burned_count(settings) == 0
    download = client.post(url, headers={"Accept": BROWSER_ACCEPT})
    assert download.status_code == 200
    assert download.data == scan.blobs[1]
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert client.post(url).status_code == 403


def test_browser_range_request_downloads_directly(client, scan, mint):
    url = f"{scan.bin_path(1)}?downloadToken={mint()}"
    assert client.get(url, headers={"Accept": BROWSER_ACCEPT, "Range": "bytes=0-0"}).status_code == 206


def test_burnlist_unavailable_fails_closed_but_basic_works(make_app, scan, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the burn-list's directory should be")
    app = make_app(burnlist_url=f"sqlite:///{blocker}/burnlist.sqlite3")
    client = app.test_client()
    token = app.extensions["pkgdl"].tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))
    response = client.get(f"{scan.bin_path(1)}?downloadToken={token}")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert client.get(scan.bin_path(1), headers=ALICE).status_code == 200



@pytest.mark.parametrize("spoil", ["used", "garbled", "other-package"])
def test_a_browser_holding_a_dead_link_reads_what_happened(client, scan, mint, spoil):
    """Not a raw XML 403: a small page for a person, same status, no-store, no script, no file name."""
    token = mint(2 if spoil == "other-package" else 1)
    if spoil == "used":
        assert client.get(f"{scan.bin_path(1)}?downloadToken={token}").status_code == 200
    if spoil == "garbled":
        token = token[:-4] + "AAAA"
    for method in ("GET", "POST"):  # the landing page's button posts
        response = client.open(f"{scan.bin_path(1)}?downloadToken={token}", method=method,
                               headers={"Accept": BROWSER_ACCEPT})
        assert response.status_code == 403
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        page = response.get_data(as_text=True)
        assert "Ask the person who sent it for a new one." in page
        assert "<script" not in page and "openssl" not in page and ".rpm" not in page


def test_api_clients_keep_the_uforge_error_on_a_dead_link(client, scan, mint):
    token = mint(1)
    assert client.get(f"{scan.bin_path(1)}?downloadToken={token}").status_code == 200
    for accept in ("application/xml", "*/*", "application/json", None):
        headers = {"Accept": accept} if accept else {}
        response = client.get(f"{scan.bin_path(1)}?downloadToken={token}", headers=headers)
        assert response.status_code == 403
        assert response.headers["Content-Type"] in ("application/xml", "application/json")
