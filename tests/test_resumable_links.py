"""Resumable single-use links on /bin (SPEC 4.3): claimed by the first body, resumed with Range until the package has
been delivered once, then dead. Real clients (curl, wget, aria2c, nginx) are in test_resume_clients.py."""

from __future__ import annotations

import json

import pytest

from app.tokens import PackageRef
from tests.test_token_view import BROWSER_ACCEPT

SIZE_1 = 3 * 1024 * 1024 + 17  # package 1 of the scan fixture


@pytest.fixture
def link(app, scan):
    """A fresh link to package 1."""
    token = app.extensions["pkgdl"].tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))
    return f"{scan.bin_path(1)}?downloadToken={token}"


def broken_get(client, url, headers=None) -> bytes:
    """A transfer broken in its second chunk: the server wrote the first (it asked for the next one), handed the
    second over, and the connection broke. Returns what was written."""
    response = client.get(url, headers=headers or {}, buffered=False)
    assert response.status_code in (200, 206)
    chunks = iter(response.response)
    first = next(chunks)
    next(chunks)
    response.close()
    return first


def link_state(app, url):
    token = url.split("downloadToken=")[1]
    claims = app.extensions["pkgdl"].tokens.verify(token, PackageRef("alice", 12, 34, 1))
    return app.extensions["pkgdl"].links.state(claims)


def test_a_broken_download_resumes_with_range_then_the_link_is_dead(client, app, scan, link):
    first = broken_get(client, link)
    assert scan.blobs[1].startswith(first)
    assert client.get(link).status_code == 403  # never a second whole copy
    resumed = client.get(link, headers={"Range": f"bytes={len(first)}-"})
    assert resumed.status_code == 206
    assert first + resumed.data == scan.blobs[1]
    # delivered once: every request of the link is refused now, ranged or not, HEAD included
    for headers in ({"Range": "bytes=0-"}, {"Range": "bytes=0-0"}, {}):
        assert client.get(link, headers=headers).status_code == 403
    assert client.head(link).status_code == 403
    assert link_state(app, link).complete


def test_a_completed_download_spends_the_link_at_once(client, link, scan):
    assert client.get(link).data == scan.blobs[1]
    assert client.get(link, headers={"Range": "bytes=10-"}).status_code == 403


def test_ranges_in_any_order_deliver_the_package_once(client, link, scan):
    """Parallel segments (aria2c -x4, browsers): each range is served until together they cover the package."""
    bounds = [(2_000_000, SIZE_1 - 1), (0, 999_999), (1_000_000, 1_999_999)]
    parts = {}
    for start, end in bounds:
        response = client.get(link, headers={"Range": f"bytes={start}-{end}"})
        assert response.status_code == 206, (start, end)
        parts[start] = response.data
    assert b"".join(parts[start] for start in sorted(parts)) == scan.blobs[1]
    assert client.get(link, headers={"Range": "bytes=0-0"}).status_code == 403


def test_a_browser_resume_with_if_range(client, link, scan):
    etag = f'"{client.head(link).headers["ETag"].strip(chr(34))}"'
    first = broken_get(client, link)
    stale = client.get(link, headers={"Range": f"bytes={len(first)}-", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 403  # If-Range fails: that would be a whole copy; never mixed bytes
    resumed = client.get(link, headers={"Range": f"bytes={len(first)}-", "If-Range": etag})
    assert resumed.status_code == 206 and first + resumed.data == scan.blobs[1]


def test_a_package_replaced_after_the_claim_is_refused(client, app, link, scan, storage):
    first = broken_get(client, link)
    manifest_path = next(path for path in storage.objects if path.endswith("packages.json"))
    manifest = json.loads(storage.objects[manifest_path])
    manifest["packages"][0]["sha256sum"] = "0" * 64  # another build under the same pid
    storage.objects[manifest_path] = json.dumps(manifest).encode()
    response = client.get(link, headers={"Range": f"bytes={len(first)}-"})
    assert response.status_code == 403


def test_the_window_closes_resumes(client, app, link):
    broken_get(client, link)
    ledger = app.extensions["pkgdl"].links
    claimed_at = link_state(app, link).claimed_at
    ledger._clock = lambda: claimed_at + ledger.resume_window + 1
    assert client.get(link, headers={"Range": "bytes=0-"}).status_code == 403
    assert client.head(link).status_code == 403


def test_a_zero_window_is_todays_strict_single_use(make_app, scan):
    app = make_app(resume_window=0)
    client = app.test_client()
    token = app.extensions["pkgdl"].tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))
    url = f"{scan.bin_path(1)}?downloadToken={token}"
    assert client.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
    assert client.get(url, headers={"Range": "bytes=10-"}).status_code == 403


def test_overlapping_ranges_stop_at_twice_the_size(client, link):
    """A link used as a stream of overlapping ranges: served until 2 x size bytes, then refused."""
    served = 0
    length = SIZE_1 // 2  # never covers the last bytes, so only the budget can stop it
    while True:
        response = client.get(link, headers={"Range": f"bytes=0-{length - 1}"})
        if response.status_code == 403:
            break
        assert response.status_code == 206 and len(response.data) == length
        served += length
        assert served <= 2 * SIZE_1
    assert served == 4 * length


def test_answers_without_a_body_are_refused_on_a_spent_link_only(client, link, scan):
    assert client.head(link).status_code == 200  # unused
    broken_get(client, link)
    assert client.head(link).status_code == 200  # claimed: HEAD starts no copy
    assert client.get(link, headers={"Range": f"bytes={SIZE_1 + 5}-"}).status_code == 416
    assert client.get(link, headers={"Range": "bytes=0-"}).data
    assert client.head(link).status_code == 403
    assert client.get(link, headers={"If-None-Match": "*"}).status_code == 403


def test_the_landing_page_of_a_claimed_link_says_it_was_used(client, link):
    broken_get(client, link)
    page = client.get(link, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 403 and page.headers["Content-Type"].startswith("text/html")
    resumed = client.get(link, headers={"Accept": BROWSER_ACCEPT, "Range": "bytes=0-"})
    assert resumed.status_code == 206  # the browser's own resume still works


def test_a_request_that_wrote_nothing_leaves_the_link_unused(client, app, link, storage):
    """A storage fault before the first byte: nothing written, nothing claimed."""
    storage.fault = ConnectionError("down")
    assert client.get(link).status_code == 503
    storage.fault = None
    assert link_state(app, link) is None
    assert client.get(link).status_code == 200


def test_the_audit_line_tells_claims_resumes_and_spends_apart(client, link, caplog):
    caplog.set_level("INFO", logger="pkgdl.audit")
    first = broken_get(client, link)
    assert client.get(link, headers={"Range": f"bytes={len(first)}-"}).data
    lines = [json.loads(record.message) for record in caplog.records if record.name == "pkgdl.audit"]
    assert [(line["link"], line.get("spent")) for line in lines] == [("claim", None), ("resume", "completed")]
    assert "downloadToken" not in caplog.text


def test_metrics_count_link_events(client, app, link):
    first = broken_get(client, link)
    assert client.get(link, headers={"Range": f"bytes={len(first)}-"}).data
    client.get(link)
    exposition = app.extensions["pkgdl"].metrics.exposition().decode()
    for line in ('pkgdl_link_events_total{event="claim"} 1.0', 'pkgdl_link_events_total{event="resume"} 1.0',
                 'pkgdl_link_events_total{event="spent_completed"} 1.0',
                 'pkgdl_token_rejections_total{reason="completed"} 1.0'):
        assert line in exposition


def test_revocation_before_and_during_a_transfer(client, app, scan, link):
    ledger = app.extensions["pkgdl"].links
    token = link.split("downloadToken=")[1]
    claims = app.extensions["pkgdl"].tokens.verify(token, PackageRef("alice", 12, 34, 1))
    running = client.get(link, buffered=False)
    chunks = iter(running.response)
    received = next(chunks)
    ledger.revoke(claims)
    received += b"".join(chunks)  # the running transfer may finish
    running.close()
    assert received == scan.blobs[1]
    assert client.get(link, headers={"Range": "bytes=0-"}).status_code == 403
    assert ledger.refusal(claims) == "revoked"
    fresh = app.extensions["pkgdl"].tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 1))
    ledger.revoke(app.extensions["pkgdl"].tokens.verify(fresh, PackageRef("alice", 12, 34, 1)))
    assert client.get(f"{scan.bin_path(1)}?downloadToken={fresh}").status_code == 403


def test_a_burn_list_fault_at_the_end_keeps_the_delivery_and_errs_towards_spent(client, app, link, scan, caplog):
    """The settle after the last byte cannot reach the burn-list: the client has its file, the request is still
    audited, and the link keeps the whole reservation counted as written."""
    from app.burnlist import BurnListUnavailable

    store = app.extensions["pkgdl"].links.store
    real_swap = store.swap
    calls = []

    def swap(token_id, expected, new, expires_at, durable=True):
        calls.append(expected)
        if expected is not None:
            raise BurnListUnavailable("stalled")
        return real_swap(token_id, expected, new, expires_at, durable)

    store.swap = swap
    caplog.set_level("INFO", logger="pkgdl.audit")
    try:
        assert client.get(link).data == scan.blobs[1]
    finally:
        store.swap = real_swap
    assert any(expected is not None for expected in calls)  # the settle was tried
    assert '"link":"claim"' in caplog.text and "not settled" in caplog.text
    state = link_state(app, link)
    assert state.pending and state.sent >= len(scan.blobs[1]) - 1  # unsettled: reservations count as written
    assert client.get(link).status_code == 403


def test_a_small_package_is_claimed_as_delivered_and_undone_if_its_one_write_fails(client, app, scan):
    """Package 2 (5,000 bytes) is one chunk: its claim records it as written (no second burn-list write when the
    transfer succeeds); when that write fails the claim is undone to what was written, and the link resumes."""
    tokens = app.extensions["pkgdl"].tokens
    url = f"{scan.bin_path(2)}?downloadToken={tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 2))}"
    claims = tokens.verify(url.split("downloadToken=")[1], PackageRef("alice", 12, 34, 2))
    store = app.extensions["pkgdl"].links.store
    writes = []
    real_swap = store.swap
    store.swap = lambda *args, **kwargs: writes.append(args[1]) or real_swap(*args, **kwargs)
    try:
        response = client.get(url, buffered=False)
        chunks = iter(response.response)
        next(chunks)  # handed over, then the connection breaks before the server learns it was written
        response.close()
        assert app.extensions["pkgdl"].links.state(claims) is not None  # counted: 5,000 bytes handed over
        assert client.get(url, headers={"Range": "bytes=0-"}).data == scan.blobs[2]  # resumed
        fresh = f"{scan.bin_path(2)}?downloadToken={tokens.mint(PackageRef(scan.uid, scan.siid, scan.sid, 2))}"
        before = len(writes)
        assert client.get(fresh).data == scan.blobs[2]
        assert len(writes) == before + 1  # the claim only: nothing to settle after a complete one-write body
        assert client.get(fresh, headers={"Range": "bytes=0-"}).status_code == 403
    finally:
        store.swap = real_swap
