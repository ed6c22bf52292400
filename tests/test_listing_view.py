"""The scan listing: UForge XML and JSON, fresh working tokens, ETag/304, compareWith."""

from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest

from app.importer import add_packages
from tests.test_download_view import ALICE, basic

NS = "{http://www.usharesoft.com/uforge}"


def token_of(package: dict) -> str:
    """The single-use token travels in binaryUri (UForge's ScannedPkg has no downloadToken element)."""
    return parse_qs(urlsplit(package["binaryUri"]).query)["downloadToken"][0]


def test_xml_is_the_default(client, scan):
    response = client.get(scan.listing_path(), headers=ALICE)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml"  # exactly: the UForge SDK compares the whole value
    root = ET.fromstring(response.data)
    assert root.tag == f"{NS}scannedPackages"
    assert root.find("total").text == "3"
    entries = root.findall("scannedPackages/scannedPackage")
    assert len(entries) == 3
    assert {e.find("fullName").text for e in entries} >= {"openssl-3.0.7-27.el9.x86_64.rpm"}
    assert all("/bin?downloadToken=" in e.find("binaryUri").text for e in entries)
    assert not root.findall(".//downloadToken") and not root.findall(".//path")


def test_json_when_asked(client, scan):
    response = client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"})
    listing = response.get_json()["scannedPackages"]
    assert listing["total"] == 3
    packages = listing["scannedPackages"]["scannedPackage"]
    openssl = next(p for p in packages if p["name"] == "openssl")
    assert (openssl["version"], openssl["release"], openssl["arch"]) == ("3.0.7", "27.el9", "x86_64")
    assert openssl["uri"] == f"users/alice/scannedinstances/12/scans/34/packages/{openssl['dbId']}"
    assert openssl["digest"] == openssl["sha256sum"]
    assert openssl["binaryUri"] == f"{openssl['uri']}/bin?downloadToken={token_of(openssl)}"
    assert "path" not in openssl and "downloadToken" not in openssl  # not elements of UForge's ScannedPkg
    assert "epoch" not in openssl  # no epoch in the file name: absent, never empty
    assert openssl["scannedInstanceId"] == 12 and isinstance(openssl["size"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", openssl["lastModified"])


def test_listed_tokens_download_once_each(client, scan):
    packages = client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"}).get_json()[
        "scannedPackages"]["scannedPackages"]["scannedPackage"]
    for package in packages:
        assert client.get("/" + package["binaryUri"]).data == scan.blobs[package["dbId"]]
        assert client.get("/" + package["binaryUri"]).status_code == 403


def test_tokens_are_fresh_each_time(client, scan):
    first, second = (client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"}).get_json()
                     for _ in range(2))
    tokens = lambda listing: {token_of(p) for p in listing["scannedPackages"]["scannedPackages"][  # noqa: E731
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


MANIFEST = "alice/12/34/packages.json"


def edit_manifest(storage, change) -> None:
    """Apply ``change`` to the scan's manifest entries as a producer might have written them."""
    document = json.loads(storage.objects[MANIFEST])
    change(document["packages"])
    storage.objects[MANIFEST] = json.dumps(document).encode()


def listed(client) -> dict[int, dict]:
    response = client.get("/users/alice/scannedinstances/12/scans/34/packages",
                          headers={**ALICE, "Accept": "application/json"})
    assert response.status_code == 200
    return {p["dbId"]: p for p in response.get_json()["scannedPackages"]["scannedPackages"]["scannedPackage"]}


def test_a_hostile_full_name_is_served_with_its_control_characters_dropped(client, scan, storage):
    edit_manifest(storage, lambda entries: entries[0].update(fullName="evil\r\nSet-Cookie: a=b\x01\udcff.rpm"))
    pid = json.loads(storage.objects[MANIFEST])["packages"][0]["dbId"]
    assert listed(client)[pid]["fullName"] == "evilSet-Cookie: a=b.rpm"
    xml = client.get(scan.listing_path(), headers=ALICE)
    assert xml.status_code == 200
    names = [e.text for e in ET.fromstring(xml.data).iter("fullName")]
    assert "evilSet-Cookie: a=b.rpm" in names
    download = client.get(scan.bin_path(pid), headers=ALICE)
    assert download.status_code == 200 and download.data == scan.blobs[pid]
    assert "Set-Cookie" not in download.headers
    assert download.headers["Content-Disposition"].startswith('attachment; filename="evilSet-Cookie_ a=b.rpm"')


@pytest.mark.parametrize("field, value", [("sha256sum", None), ("size", -1), ("path", "/etc/passwd"),
                                          ("lastModified", "yesterday")])
def test_an_unusable_entry_affects_only_its_own_package(client, scan, storage, caplog, field, value):
    def spoil(entries: list) -> None:
        if value is None:
            del entries[0][field]
        else:
            entries[0][field] = value
    edit_manifest(storage, spoil)
    spoiled, *others = [entry["dbId"] for entry in json.loads(storage.objects[MANIFEST])["packages"]]
    assert sorted(listed(client)) == sorted(others)  # left out of the listing, the others listed
    assert any(f"packages[0] (dbId {spoiled}): {field}" in line for line in caplog.messages)
    answer = client.get(scan.bin_path(spoiled), headers=ALICE)
    assert answer.status_code == 502 and b"/etc/passwd" not in answer.data
    for pid in others:
        assert client.get(scan.bin_path(pid), headers=ALICE).data == scan.blobs[pid]


def test_an_entry_pointing_at_another_scans_manifest_serves_nothing_of_it(client, scan, storage):
    edit_manifest(storage, lambda entries: entries[0].update(path="alice/12/35/packages.json"))
    storage.objects["alice/12/35/packages.json"] = b'{"secret": "another scan"}'
    pid = json.loads(storage.objects[MANIFEST])["packages"][0]["dbId"]
    assert pid not in listed(client)
    answer = client.get(scan.bin_path(pid), headers=ALICE)
    assert answer.status_code == 502 and b"another scan" not in answer.data


def test_compare_with_a_well_formed_but_unknown_scan_is_404(client, scan):
    """README: not a scan URI is a 400; a scan that does not exist is a 404, as its own listing would be."""
    response = client.get(f"{scan.listing_path()}?compareWith=users/alice/scannedinstances/12/scans/999",
                          headers=ALICE)
    assert response.status_code == 404
    assert b"uforgeError" in response.data
