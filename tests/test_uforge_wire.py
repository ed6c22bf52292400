"""Our XML as UForge clients read it: every listing and every error parses with the UForge SDK's own bindings and
validates against UForge's schema; the JSON mirrors the XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.importer import add_packages
from app.representations import (
    SCANNED_PACKAGE_ELEMENTS,
    UFORGE_ERROR_ELEMENTS,
    element_tree_document,
    xml_document,
)
from tests.test_download_view import ALICE, basic

MANIFEST = "alice/12/34/packages.json"
XML = {**ALICE, "Accept": "application/xml", "Content-Type": "application/xml"}  # as the SDK sends every request


def parsed(uforge_sdk, uforge_schema_or_none, response):
    """The body as the SDK's bindings build it, after checking the header the SDK compares."""
    assert response.headers["Content-Type"] == "application/xml"
    if uforge_schema_or_none is not None:
        uforge_schema_or_none.validate(response.data.decode("utf-8"))
    return uforge_sdk.CreateFromDocument(response.data)


@pytest.fixture
def schema(request):
    """UForge's schema when shared/ has it, else None (the SDK's bindings judge alone)."""
    try:
        return request.getfixturevalue("uforge_schema")
    except pytest.skip.Exception:
        return None


def set_entries(storage, entries: list[dict]) -> None:
    document = json.loads(storage.objects[MANIFEST])
    document["packages"] = entries
    storage.objects[MANIFEST] = json.dumps(document).encode()


def entries_of(storage) -> list[dict]:
    return json.loads(storage.objects[MANIFEST])["packages"]


# ---- the listing --------------------------------------------------------------------------------------------------
def test_three_packages_parse_with_their_types(client, scan, uforge_sdk, schema):
    listing = parsed(uforge_sdk, schema, client.get(scan.listing_path(), headers=XML))
    assert listing.total == 3
    packages = listing.scannedPackages.scannedPackage
    assert sorted(p.dbId for p in packages) == sorted(scan.blobs)
    openssl = next(p for p in packages if p.name == "openssl")
    assert (openssl.version, openssl.release, openssl.arch, openssl.type) == ("3.0.7", "27.el9", "x86_64", "rpm")
    assert openssl.size == len(scan.blobs[openssl.dbId]) and openssl.digest == openssl.sha256sum
    assert openssl.uri == f"users/alice/scannedinstances/12/scans/34/packages/{openssl.dbId}"
    assert openssl.binaryUri.startswith(f"{openssl.uri}/bin?downloadToken=")
    assert openssl.scannedInstanceId == 12 and openssl.epoch is None
    assert isinstance(openssl.lastModified, datetime) and openssl.lastModified.utcoffset() == timedelta(0)


def test_an_empty_scan_parses(client, scan, storage, uforge_sdk, schema):
    set_entries(storage, [])
    listing = parsed(uforge_sdk, schema, client.get(scan.listing_path(), headers=XML))
    assert listing.total == 0 and list(listing.scannedPackages.scannedPackage) == []


def test_one_package_with_every_field_we_fill(client, scan, storage, uforge_sdk, schema):
    full = {**entries_of(storage)[0], "epoch": 2147483647, "mimeType": "application/x-rpm"}
    set_entries(storage, [full])
    (package,) = parsed(uforge_sdk, schema, client.get(scan.listing_path(), headers=XML)).scannedPackages.scannedPackage
    assert package.epoch == 2147483647 and package.mimeType == "application/x-rpm"
    assert package.md5sum == full["md5sum"] and package.fullName == full["fullName"]


def test_one_package_with_every_optional_field_absent(client, scan, storage, uforge_sdk, schema):
    bare = {**entries_of(storage)[0], "name": "", "version": "", "release": "", "arch": ""}
    bare.pop("epoch", None)
    set_entries(storage, [bare])
    response = client.get(scan.listing_path(), headers=XML)
    (package,) = parsed(uforge_sdk, schema, response).scannedPackages.scannedPackage
    assert (package.name, package.version, package.release, package.arch, package.epoch) == (None,) * 5
    element = ET.fromstring(response.data).find("scannedPackages/scannedPackage")
    assert not [child.tag for child in element if not (child.text or "").strip()]  # never an empty element


def test_a_year_below_1000_is_still_an_xs_datetime(client, scan, storage, uforge_sdk, schema):
    """Go's zero time (0001-01-01) from a scanner: glibc's strftime would write the year unpadded."""
    set_entries(storage, [{**entries_of(storage)[0], "lastModified": "0001-01-01T00:00:00Z"}])
    (package,) = parsed(uforge_sdk, schema, client.get(scan.listing_path(), headers=XML)).scannedPackages.scannedPackage
    assert package.lastModified.year == 1


def test_a_hostile_full_name_parses(client, scan, storage, uforge_sdk, schema):
    hostile = {**entries_of(storage)[0], "fullName": "a\r\nb\x00c\x1b[31m\udcff\ufffe<&>]]>.rpm", "arch": "x\x7f86"}
    set_entries(storage, [hostile])
    (package,) = parsed(uforge_sdk, schema, client.get(scan.listing_path(), headers=XML)).scannedPackages.scannedPackage
    assert package.fullName == "abc[31m<&>]]>.rpm" and package.arch == "x86"


def test_compare_with_parses(client, scan, storage, tmp_path, uforge_sdk, schema):
    other = tmp_path / "curl_7.88.1-10_amd64.deb"
    other.write_bytes(b"x")
    add_packages(storage, "alice", 12, 35, [str(other)])
    url = f"{scan.listing_path()}?compareWith=users/alice/scannedinstances/12/scans/35"
    listing = parsed(uforge_sdk, schema, client.get(url, headers=XML))
    assert listing.total == 2 and {p.name for p in listing.scannedPackages.scannedPackage} == {"openssl", "empty"}


def test_elements_come_in_the_schema_order(client, scan):
    root = ET.fromstring(client.get(scan.listing_path(), headers=XML).data)
    assert [child.tag for child in root] == ["total", "scannedPackages"]
    for element in root.iter("scannedPackage"):
        tags = [child.tag for child in element]
        positions = [SCANNED_PACKAGE_ELEMENTS.index(tag) for tag in tags]  # ValueError names a foreign element
        assert positions == sorted(positions), tags


def test_json_mirrors_the_xml(client, scan):
    xml = ET.fromstring(client.get(scan.listing_path(), headers=XML).data)
    listing = client.get(scan.listing_path(), headers={**ALICE, "Accept": "application/json"}).get_json()
    packages = listing["scannedPackages"]["scannedPackages"]["scannedPackage"]
    assert listing["scannedPackages"]["total"] == int(xml.findtext("total"))
    for element, package in zip(xml.iter("scannedPackage"), packages, strict=True):
        assert [child.tag for child in element] == list(package)  # same names, same order
        for child in element:
            value = package[child.tag]
            if child.tag == "binaryUri":  # each answer mints its own tokens
                assert value.split("=")[0] == child.text.split("=")[0]
            else:
                assert child.text == str(value)
                assert isinstance(value, int) == (child.tag in ("dbId", "size", "epoch", "scannedInstanceId"))


# ---- errors -------------------------------------------------------------------------------------------------------
def bin_of(scan, pid: int = 1) -> str:
    return scan.bin_path(pid)


ERRORS = [
    # (status, method, path (format), headers, storage fault)
    (400, "GET", "{bin}?downloadToken=a&downloadToken=b", {}, None),
    (400, "GET", "{listing}?compareWith=nonsense", ALICE, None),
    (401, "GET", "{bin}", {}, None),
    (401, "GET", "{listing}", {}, None),
    (403, "GET", "{bin}", basic("bob"), None),
    (403, "GET", "{bin}?downloadToken=forged", {}, None),
    (403, "GET", "{listing}", basic("bob"), None),
    (404, "GET", "/users/alice/scannedinstances/12/scans/34/packages/999/bin", ALICE, None),
    (404, "GET", "/users/alice/scannedinstances/12/scans/99/packages", ALICE, None),
    (404, "GET", "/no/such/route", {}, None),
    (405, "PUT", "{bin}", ALICE, None),
    (405, "POST", "{listing}", ALICE, None),
    (416, "GET", "{bin}", {**ALICE, "Range": "bytes=999999999-"}, None),
    (500, "GET", "{bin}", ALICE, RuntimeError("a bug")),
    (502, "GET", "{bin}", ALICE, PermissionError("credentials refused")),
    (503, "GET", "{bin}", ALICE, ConnectionError("down")),
    (504, "GET", "{bin}", ALICE, TimeoutError("slow")),
]


@pytest.mark.parametrize("status, method, path, headers, fault", ERRORS,
                         ids=[f"{row[0]}-{row[1]}-{row[2].split('?')[0]}" for row in ERRORS])
def test_every_error_parses_as_a_uforge_error(client, scan, storage, uforge_sdk, schema, status, method, path,
                                              headers, fault):
    storage.fault = fault
    url = path.format(bin=bin_of(scan), listing=scan.listing_path())
    before = datetime.now(UTC).replace(microsecond=0)
    response = client.open(url, method=method, headers={"Accept": "application/xml",
                                                        "Content-Type": "application/xml", **headers})
    assert response.status_code == status
    error = parsed(uforge_sdk, schema, response)
    assert error.statusCode == status and error.requestMethod == method
    assert error.requestUri == url.split("?")[0]
    assert before <= error.timestamp <= datetime.now(UTC) + timedelta(seconds=1)
    assert error.localizedErrorMsg.message and error.localizedErrorMsg.messageId.startswith("pkgdl.")
    assert [child.tag for child in ET.fromstring(response.data)] == list(UFORGE_ERROR_ELEMENTS)


def test_a_broken_manifest_is_a_uforge_error(client, scan, storage, uforge_sdk, schema):
    storage.objects[MANIFEST] = b"{not json"
    for url in (scan.listing_path(), bin_of(scan)):
        response = client.get(url, headers=XML)
        assert response.status_code == 502 and parsed(uforge_sdk, schema, response).statusCode == 502


def test_too_many_attempts_is_a_uforge_error(make_app, scan, uforge_sdk, schema):
    client = make_app(login_attempts_per_minute=1).test_client()
    statuses = [client.get(scan.listing_path(), headers={**XML, **basic("alice", "bad")}) for _ in range(3)]
    assert statuses[-1].status_code == 429
    assert parsed(uforge_sdk, schema, statuses[-1]).statusCode == 429


def test_json_errors_mirror_the_xml(client, scan):
    xml = ET.fromstring(client.get(bin_of(scan), headers={"Accept": "application/xml"}).data)
    error = client.get(bin_of(scan), headers={"Accept": "application/json"}).get_json()["uforgeError"]
    assert list(error) == [child.tag for child in xml]
    assert error["statusCode"] == 401 and isinstance(error["timestamp"], str)
    assert error["localizedErrorMsg"] == {"message": xml.findtext("localizedErrorMsg/message"),
                                          "messageId": xml.findtext("localizedErrorMsg/messageId")}


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # what xml_safe leaves: no lone surrogates
_LEAF = st.one_of(_TEXT, st.integers(-10**12, 10**12), st.booleans())
_NAMES = st.sampled_from(["total", "dbId", "name", "binaryUri", "scannedPackage", "message"])
_WIRE = st.recursive(
    st.dictionaries(_NAMES, _LEAF, max_size=4),
    lambda children: st.dictionaries(_NAMES, st.one_of(_LEAF, children, st.lists(st.one_of(_LEAF, children),
                                                                                   max_size=3)), max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(wire=_WIRE, name=st.sampled_from(["scannedPackages", "uforgeError"]))
def test_the_direct_xml_writer_writes_what_element_tree_writes(wire, name):
    """app.representations writes its documents directly (ElementTree's serializer was ~40% of a listing): the bytes
    must be ElementTree's for every tree, escapes, empty elements, booleans, repeated elements and non-ASCII text
    included."""
    assert xml_document(name, wire) == element_tree_document(name, wire)


def test_the_direct_xml_writer_on_a_real_listing(client, scan):
    response = client.get(scan.listing_path(), headers=XML)
    root = ET.fromstring(response.data)
    assert response.data.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<ns0:scannedPackages xmlns:ns0=")
    assert root.tag == "{http://www.usharesoft.com/uforge}scannedPackages"
