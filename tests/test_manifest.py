"""The scan manifest: strict parsing, stable dumping, round trips, the pid lookup."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import manifest as manifest_module
from app.manifest import (
    Manifest,
    ManifestError,
    Package,
    dump_manifest,
    manifest_path,
    package_fields,
    parse_manifest,
    scan_entries,
)

SHA = "ab" * 32
MD5 = "cd" * 16
ENTRY = {"dbId": 1001, "name": "openssl", "version": "3.0.7", "release": "27.el9", "epoch": 1,
         "arch": "x86_64", "fullName": "openssl-3.0.7-27.el9.x86_64.rpm", "type": "rpm",
         "mimeType": "application/x-rpm", "size": 1234567, "sha256sum": SHA, "md5sum": MD5,
         "lastModified": "2026-11-26T10:00:00Z", "path": f"blobs/sha256/ab/{SHA}"}
DOCUMENT = {"uid": "alice", "siid": 12, "sid": 34, "packages": [ENTRY]}


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def package(db_id: int, **changes: object) -> Package:
    fields = dict(db_id=db_id, name="p", version="1", release="1", epoch=None, arch="noarch",
                  full_name=f"p{db_id}", type="other", mime_type="application/octet-stream", size=db_id,
                  sha256=SHA, md5=MD5, last_modified=datetime(2026, 11, 26, 10, tzinfo=UTC),
                  path=f"blobs/sha256/ab/{SHA}")
    return Package(**{**fields, **changes})


def test_spec_example_parses():
    manifest = parse_manifest(encode(DOCUMENT))
    assert (manifest.uid, manifest.siid, manifest.sid) == ("alice", 12, 34)
    assert manifest.packages == (Package(
        db_id=1001, name="openssl", version="3.0.7", release="27.el9", epoch=1, arch="x86_64",
        full_name="openssl-3.0.7-27.el9.x86_64.rpm", type="rpm", mime_type="application/x-rpm", size=1234567,
        sha256=SHA, md5=MD5, last_modified=datetime(2026, 11, 26, 10, tzinfo=UTC),
        path=f"blobs/sha256/ab/{SHA}"),)


def test_lookup_by_pid():
    manifest = Manifest("alice", 12, 34, (package(3), package(1)))
    assert manifest.package(3) == package(3)
    assert manifest.package(2) is None
    assert manifest.package(-1) is None


def test_manifest_path():
    assert manifest_path("alice", 12, 34) == "alice/12/34/packages.json"


@pytest.mark.parametrize("uid, siid, sid", [("../etc", 1, 2), ("", 1, 2), ("a/b", 1, 2), ("alice", -1, 2),
                                            ("alice", 1, 10**18), ("alice", True, 2), ("alice", "1", 2)])
def test_manifest_path_refuses_bad_ids(uid, siid, sid):
    with pytest.raises(ValueError):
        manifest_path(uid, siid, sid)


def test_round_trip_is_stable():
    weird = package(9, epoch=0, full_name='we"ird\\näme.rpm')
    raw = dump_manifest(Manifest("alice", 12, 34, (weird, package(2))))
    parsed = parse_manifest(raw)
    assert parsed == Manifest("alice", 12, 34, (package(2), weird))
    assert dump_manifest(parsed) == raw
    assert [entry["dbId"] for entry in json.loads(raw)["packages"]] == [2, 9]
    assert raw.startswith(b'{\n  "uid": "alice"')


def test_package_fields_use_the_spec_names():
    fields = package_fields(parse_manifest(encode(DOCUMENT)).packages[0])
    assert fields == ENTRY


def test_expected_ids_must_match():
    raw = encode(DOCUMENT)
    assert parse_manifest(raw, uid="alice", siid=12, sid=34).sid == 34
    for expected in ({"uid": "bob"}, {"siid": 13}, {"sid": 35}, {"uid": "Alice"}):
        with pytest.raises(ManifestError):
            parse_manifest(raw, **expected)


def test_equivalent_spellings_are_normalized():
    entry = {**ENTRY, "lastModified": "2026-11-26T12:00:00.999+02:00", "sha256sum": SHA.upper(),
             "md5sum": MD5.upper()}
    parsed = parse_manifest(encode({**DOCUMENT, "packages": [entry]})).packages[0]
    assert parsed.last_modified == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert parsed.last_modified.tzinfo is UTC
    assert (parsed.sha256, parsed.md5) == (SHA, MD5)


def test_unknown_keys_are_ignored_and_empty_scans_allowed():
    parsed = parse_manifest(encode({**DOCUMENT, "producer": "x", "packages": [{**ENTRY, "license": "MIT"}]}))
    assert parsed.packages[0].db_id == 1001
    assert parse_manifest(encode({**DOCUMENT, "packages": []})).packages == ()


def mutated(path: tuple, value: object) -> bytes:
    """DOCUMENT with one value replaced (or removed, for value ...)."""
    document = copy.deepcopy(DOCUMENT)
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return encode(document)


def entry_with(key: str, value: object) -> bytes:
    return mutated(("packages", 0, key), value)


# Faults of the document itself: the scan cannot be read at all (a 502 for every package of it).
BROKEN = {
    "not json": b"{",
    "not utf-8": b'{"uid": "\xff"}',
    "a list": b"[]",
    "nan": encode(DOCUMENT).replace(b"1234567", b"NaN"),
    "duplicate key": b'{"uid": "alice", "uid": "bob", "siid": 1, "sid": 1, "packages": []}',
    "deep nesting": b"[" * 100000 + b"]" * 100000,
    "no uid": mutated(("uid",), ...),
    "bad uid": mutated(("uid",), "../alice"),
    "siid string": mutated(("siid",), "12"),
    "siid bool": mutated(("siid",), True),
    "siid negative": mutated(("siid",), -1),
    "sid too big": mutated(("sid",), 10**18),
    "sid float": mutated(("sid",), 34.0),
    "no packages": mutated(("packages",), ...),
    "packages object": mutated(("packages",), {}),
}

# Faults of one entry: that package alone is unusable (left out of the listing, a 502 for its pid), never the scan.
UNUSABLE_ENTRY = {
    "package not object": mutated(("packages", 0), "x"),
    "duplicate dbId": encode({**DOCUMENT, "packages": [ENTRY, {**ENTRY, "fullName": "other"}]}),
    "no dbId": entry_with("dbId", ...),
    "dbId string": entry_with("dbId", "1001"),
    "dbId bool": entry_with("dbId", True),
    "dbId negative": entry_with("dbId", -1),
    "dbId too big": entry_with("dbId", 10**18),
    "short sha256": entry_with("sha256sum", SHA[:-1]),
    "sha256 not hex": entry_with("sha256sum", "g" * 64),
    "sha256 with newline": entry_with("sha256sum", SHA + "\n"),
    "md5 wrong length": entry_with("md5sum", MD5 + "0"),
    "no md5": entry_with("md5sum", ...),
    "size negative": entry_with("size", -1),
    "size float": entry_with("size", 1.5),
    "size string": entry_with("size", "10"),
    "size bool": entry_with("size", False),
    "size null": entry_with("size", None),
    "epoch string": entry_with("epoch", "1"),
    "epoch negative": entry_with("epoch", -1),
    "epoch huge": entry_with("epoch", 2**32),
    "name number": entry_with("name", 1),
    "version missing": entry_with("version", ...),
    "fullName empty": entry_with("fullName", ""),
    "fullName too long": entry_with("fullName", "a" * 2000),
    "type empty": entry_with("type", ""),
    "mimeType not a media type": entry_with("mimeType", "text/html\r\nX-Evil: 1"),
    "mimeType missing": entry_with("mimeType", ...),
    "lastModified date only": entry_with("lastModified", "2026-11-26"),
    "lastModified naive": entry_with("lastModified", "2026-11-26T10:00:00"),
    "lastModified impossible": entry_with("lastModified", "2026-02-30T10:00:00Z"),
    "lastModified overflows": entry_with("lastModified", "9999-12-31T23:59:59-01:00"),
    "lastModified number": entry_with("lastModified", 1764151200),
    "path absolute": entry_with("path", "/etc/passwd"),
    "path climbs": entry_with("path", "blobs/../../etc/passwd"),
    "path dot": entry_with("path", "./blobs/x"),
    "path backslash": entry_with("path", "blobs\\x"),
    "path NUL": entry_with("path", "blobs/x\x00.rpm"),
    "path empty segment": entry_with("path", "blobs//x"),
    "path trailing slash": entry_with("path", "blobs/x/"),
    "path empty": entry_with("path", ""),
    "path with scheme": entry_with("path", "s3://other-bucket/x"),
    "path drive": entry_with("path", "C:/x"),
    "path is another scan's manifest": entry_with("path", "alice/1/2/packages.json"),
    "path is a manifest lock": entry_with("path", "bob/1/2/packages.json.lock"),
    "path is a hidden temp file": entry_with("path", "blobs/.x.tmp"),
    "epoch beyond xs:int": entry_with("epoch", 2**31),
}

# Descriptive text with control characters is served, the characters dropped where the value is shown.
TOLERATED = {
    "name with newline": entry_with("name", "a\nb"),
    "fullName with CR": entry_with("fullName", "a\rb.rpm"),
    "fullName with NUL": entry_with("fullName", "a\x00b.rpm"),
    "fullName lone surrogate": entry_with("fullName", "a\udcffb.rpm"),
}


@pytest.mark.parametrize("raw", BROKEN.values(), ids=BROKEN.keys())
def test_broken_manifests_raise_manifest_error(raw):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(raw)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == "invalid scan manifest"  # generic: no hostile value reaches a log or a body


GOOD_NEIGHBOUR = {**ENTRY, "dbId": 7, "fullName": "neighbour-1-1.noarch.rpm"}


@pytest.mark.parametrize("raw", UNUSABLE_ENTRY.values(), ids=UNUSABLE_ENTRY.keys())
def test_an_unusable_entry_affects_only_itself(raw):
    document = json.loads(raw)
    document["packages"].append(GOOD_NEIGHBOUR)
    manifest = parse_manifest(encode(document))
    assert [p.db_id for p in manifest.packages] == [7]
    assert manifest.package(7).full_name == "neighbour-1-1.noarch.rpm"
    assert manifest.unusable and all(entry.index == 0 or entry.reason == "dbId occurs more than once"
                                     for entry in manifest.unusable)
    for entry in manifest.unusable:
        assert "/secret" not in entry.describe() and entry.describe().startswith(f"packages[{entry.index}]")
        if entry.db_id is not None:
            with pytest.raises(ManifestError):
                manifest.package(entry.db_id)


def test_a_duplicated_db_id_makes_every_entry_carrying_it_unusable():
    manifest = parse_manifest(encode({**DOCUMENT, "packages": [ENTRY, GOOD_NEIGHBOUR, {**ENTRY, "fullName": "b"}]}))
    assert [(u.index, u.db_id, u.reason) for u in manifest.unusable] == [
        (0, 1001, "dbId occurs more than once"), (2, 1001, "dbId occurs more than once")]
    with pytest.raises(ManifestError):
        manifest.package(1001)
    assert manifest.package(7) is not None


TWICE = "dbId occurs more than once"


def _with_neighbour(entry: bytes) -> bytes:
    """DOCUMENT whose packages are `entry` (raw JSON text, as json.dumps cannot repeat a key) and GOOD_NEIGHBOUR."""
    return (b'{"uid": "alice", "siid": 12, "sid": 34, "packages": [' + entry + b", " + encode(GOOD_NEIGHBOUR)
            + b"]}")


@pytest.mark.parametrize("entry, unusable, served", [
    (encode(ENTRY).replace(b'"size": 1234567', b'"size": 1234567, "size": 7'),
     [(0, 1001, "duplicate key")], [7]),
    (encode(ENTRY).replace(b'"dbId": 1001', b'"dbId": 1001, "dbId": 1002'),
     [(0, 1001, "duplicate key"), (0, 1002, "duplicate key")], [7]),
    # Read as its last dbId by most JSON readers, this entry would be another package 7: 7 is ambiguous.
    (encode(ENTRY).replace(b'"dbId": 1001', b'"dbId": 1001, "dbId": 7'),
     [(0, 1001, "duplicate key"), (0, 7, TWICE), (1, 7, TWICE)], []),
    (encode(ENTRY).replace(b'"size": 1234567', b'"size": {"a": 1, "a": 2}'), [(0, 1001, "size")], [7]),
], ids=["a field twice", "dbId twice", "dbId twice, once the neighbour's", "a key twice in a field's object"])
def test_a_key_repeated_inside_an_entry_makes_only_that_entry_unusable(entry, unusable, served):
    """Two readers could disagree on the entry's values: it is unusable, and so is every pid it could be read as;
    its neighbours are served (spec 4.2). The whole manifest and the per-entry reader agree."""
    raw = _with_neighbour(entry)
    manifest, one = parse_manifest(raw), scan_entries(raw)
    assert [p.db_id for p in manifest.packages] == served
    assert [(u.index, u.db_id, u.reason) for u in manifest.unusable] == unusable
    for pid in {db_id for _, db_id, _ in unusable}:
        for reader in (manifest, one):
            with pytest.raises(ManifestError):
                reader.package(pid)
    for pid in served:
        assert one.package(pid) == manifest.package(pid) is not None


@pytest.mark.parametrize("raw", TOLERATED.values(), ids=TOLERATED.keys())
def test_control_characters_in_descriptive_text_are_tolerated(raw):
    manifest = parse_manifest(raw)
    assert not manifest.unusable and manifest.package(1001) is not None
    assert parse_manifest(dump_manifest(manifest)) == manifest  # and survive a rewrite (catalog add appends)


def test_a_year_below_1000_round_trips():
    manifest = parse_manifest(entry_with("lastModified", "0001-01-01T00:00:00Z"))
    assert b'"lastModified": "0001-01-01T00:00:00Z"' in dump_manifest(manifest)
    assert parse_manifest(dump_manifest(manifest)) == manifest


def test_oversized_manifest_is_refused(monkeypatch):
    raw = encode(DOCUMENT)
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", len(raw) - 1)
    with pytest.raises(ManifestError):
        parse_manifest(raw)


def test_reason_names_the_field_not_the_value():
    (entry,) = parse_manifest(entry_with("path", "/secret/value")).unusable
    assert (entry.index, entry.db_id, entry.reason) == (0, 1001, "path")
    assert entry.describe() == "packages[0] (dbId 1001): path"


def test_manifest_refuses_duplicate_ids_when_built_in_code():
    with pytest.raises(ManifestError):
        Manifest("alice", 1, 2, (package(1), package(1, full_name="other")))


def _answer(scan, pid: int) -> object:
    try:
        return scan.package(pid)
    except ManifestError as error:
        return ("unusable", error.reason)


# Entries as producers get them wrong: good ones, one field broken (from UNUSABLE_ENTRY), repeated dbIds, non-objects.
_BROKEN_ENTRIES = [json.loads(raw)["packages"][0] for raw in UNUSABLE_ENTRY.values()]
_ENTRIES = st.one_of(
    st.builds(lambda db_id, name: {**ENTRY, "dbId": db_id, "fullName": name}, st.integers(0, 6),
              st.sampled_from(["a-1-1.noarch.rpm", "b_1_all.deb", "c\n.rpm"])),
    st.builds(lambda broken, db_id: {**broken, "dbId": db_id} if isinstance(broken, dict) and "dbId" in broken
              else broken, st.sampled_from(_BROKEN_ENTRIES), st.integers(0, 6)),
    st.sampled_from(["x", 3, None, [], {"dbId": True}, {"dbId": "4"}]),
)


@given(st.lists(_ENTRIES, max_size=12))
def test_one_entry_at_a_time_answers_as_the_whole_manifest(entries):
    """What a download sees through ScanEntries (its own entry validated) is what the whole manifest says."""
    raw = encode({**DOCUMENT, "packages": entries})
    whole, one = parse_manifest(raw), scan_entries(raw)
    for pid in [*range(8), 1001]:
        assert _answer(one, pid) == _answer(whole, pid)
        assert _answer(one, pid) == _answer(whole, pid)  # the remembered answer too


@pytest.mark.parametrize("raw", BROKEN.values(), ids=BROKEN.keys())
def test_one_entry_at_a_time_refuses_a_broken_document_too(raw):
    with pytest.raises(ManifestError):
        scan_entries(raw)
