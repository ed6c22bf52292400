"""The scan listing: UForge XML and JSON, fresh working tokens, ETag/304, compareWith."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import pytest

from app.importer import add_packages
from tests.test_download_view import ALICE, basic

NS = "{http://www.usharesoft.com/uforge}"


def test_xml_is_the_default(client, scan):
    response = client.get(scan.listing_path(), headers=ALICE)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(response.data)
    assert root.tag == f"{NS}scannedPackages"
    assert root.find("total").text == "3"
    entries = root.findall("scannedPackages/scannedPackage")
    assert len(entries) == 3
    assert {e.find("fullName").text for e in entries} >= {"openssl-3.0.7-27.el9.x86_64.rpm"}
    assert all(e.find("downloadToken").text for e in entries)


def test_json_when_asked(client, scan):
    response = client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"})
    listing = response.get_json()["scannedPackages"]
    assert listing["total"] == 3
    packages = listing["scannedPackages"]["scannedPackage"]
    openssl = next(p for p in packages if p["name"] == "openssl")
    assert (openssl["version"], openssl["release"], openssl["arch"]) == ("3.0.7", "27.el9", "x86_64")
    assert openssl["uri"] == f"users/alice/scannedinstances/12/scans/34/packages/{openssl['dbId']}"
    assert openssl["digest"] == openssl["sha256sum"]
    assert openssl["binaryUri"] == f"{openssl['uri']}/bin?downloadToken={openssl['downloadToken']}"
    assert "path" not in openssl or not openssl["path"].startswith("/")


def test_listed_tokens_download_once_each(client, scan):
    packages = client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"}).get_json()[
        "scannedPackages"]["scannedPackages"]["scannedPackage"]
    for package in packages:
        assert client.get("/" + package["binaryUri"]).data == scan.blobs[package["dbId"]]
        assert client.get("/" + package["binaryUri"]).status_code == 403


def test_tokens_are_fresh_each_time(client, scan):
    first, second = (client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"}).get_json()
                     for _ in range(2))
    tokens = lambda listing: {p["downloadToken"] for p in listing["scannedPackages"]["scannedPackages"][  # noqa: E731
        "scannedPackage"]}
    assert not tokens(first) & tokens(second)


def test_listing_etag_and_304(client, scan):
    response = client.get(scan.listing_path(), headers=ALICE)
    etag = response.headers["ETag"]
    assert etag.startswith('W/"')
    again = client.get(scan.listing_path(), headers={**ALICE, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    json_etag = client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"}).headers["ETag"]
    assert json_etag != etag


@pytest.mark.parametrize("headers, status", [({}, 401), (basic("bob"), 403), (basic("carol"), 403),
                                             (basic("root"), 200)])
def test_listing_access(client, scan, headers, status):
    assert client.get(scan.listing_path(), headers=headers).status_code == status


def test_unknown_scan_is_404(client):
    assert client.get("/users/alice/scannedinstances/12/scans/99/packages", headers=ALICE).status_code == 404


def test_compare_with(client, scan, storage, tmp_path):
    newer = tmp_path / "openssl-3.0.7-28.el9.x86_64.rpm"
    newer.write_bytes(random.Random(1).randbytes(100))
    same = tmp_path / "curl_7.88.1-10_amd64.deb"
    same.write_bytes(random.Random("curl_7.88.1-10_amd64.deb").randbytes(5000))
    add_packages(storage, "alice", 12, 35, [str(newer), str(same)])
    response = client.get(f"{scan.listing_path()}?compareWith=users/alice/scannedinstances/12/scans/35",
                          headers={**ALICE, "Accept": "application/json"})
    names = {p["fullName"] for p in response.get_json()["scannedPackages"]["scannedPackages"]["scannedPackage"]}
    assert names == {"openssl-3.0.7-27.el9.x86_64.rpm", "empty-1.0-1.noarch.rpm"}
    bad = client.get(f"{scan.listing_path()}?compareWith=nonsense", headers=ALICE)
    assert bad.status_code == 400
    other_user = client.get(f"{scan.listing_path()}?compareWith=users/bob/scannedinstances/1/scans/1", headers=ALICE)
    assert other_user.status_code == 403


def test_compare_with_etag_follows_the_other_scan(client, scan, storage, tmp_path):
    first = tmp_path / "a-1-1.noarch.rpm"
    first.write_bytes(b"a")
    add_packages(storage, "alice", 12, 36, [str(first)])
    url = f"{scan.listing_path()}?compareWith=users/alice/scannedinstances/12/scans/36"
    etag = client.get(url, headers=ALICE).headers["ETag"]
    second = tmp_path / "b-1-1.noarch.rpm"
    second.write_bytes(b"b")
    add_packages(storage, "alice", 12, 36, [str(second)])
    assert client.get(url, headers={**ALICE, "If-None-Match": etag}).status_code == 200


def test_accepted_query_parameters(client, scan):
    query = "excludeFiles=true&all=true&fromRepo=false&uploaded=false&notSelected=false"
    assert client.get(f"{scan.listing_path()}?{query}", headers=ALICE).status_code == 200
