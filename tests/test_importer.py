"""The importer: content-addressed blobs stored once, dbIds kept on append, the manifest written last."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.importer import add_packages, blob_path, list_packages
from app.manifest import Manifest, ManifestError, dump_manifest, manifest_path, parse_manifest
from tests.fixtures_app import FakeStorage
from tests.test_nevra import build_deb, build_rpm

NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
MANIFEST = manifest_path("alice", 12, 34)


class RecordingStorage(FakeStorage):
    """The app tests' dict-backed storage, logging every write in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []

    def write_bytes(self, path: str, data: bytes) -> None:
        self.writes.append(("write", path))
        super().write_bytes(path, data)

    def put_file(self, local_path: str, path: str) -> None:
        self.writes.append(("put", path))
        super().put_file(local_path, path)

    def replace_if(self, path: str, data: bytes, version) -> bool:
        replaced = super().replace_if(path, data, version)
        if replaced:
            self.writes.append(("write", path))
        return replaced


@pytest.fixture
def storage() -> RecordingStorage:
    return RecordingStorage()


@pytest.fixture
def make_file(tmp_path):
    def make(name: str, content: bytes | None = None, directory: str = "in") -> str:
        folder = tmp_path / directory
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(random.Random(name).randbytes(300) if content is None else content)
        return str(path)

    return make


def stored_manifest(storage: RecordingStorage) -> Manifest:
    return parse_manifest(storage.objects[MANIFEST], uid="alice", siid=12, sid=34)


def test_first_import(storage, make_file):
    rpm = make_file("openssl-3.0.7-27.el9.x86_64.rpm", build_rpm())
    deb = make_file("curl_7.88.1-10+deb12u5_amd64.deb", build_deb())
    other = make_file("notes.txt", b"hello")
    added = add_packages(storage, "alice", 12, 34, [rpm, deb, other], now=NOW)
    assert [(p.db_id, p.full_name) for p in added] == [
        (1, "openssl-3.0.7-27.el9.x86_64.rpm"), (2, "curl_7.88.1-10+deb12u5_amd64.deb"), (3, "notes.txt")]
    assert [(p.type, p.mime_type) for p in added] == [
        ("rpm", "application/x-rpm"), ("deb", "application/vnd.debian.binary-package"),
        ("other", "application/octet-stream")]
    assert (added[0].name, added[0].epoch, added[0].version, added[0].release, added[0].arch) == (
        "openssl", 1, "3.0.7", "27.el9", "x86_64")
    assert (added[1].name, added[1].version, added[1].arch) == ("openssl", "3.0.11", "amd64")  # header wins
    for package, path in zip(added, [rpm, deb, other], strict=True):
        content = Path(path).read_bytes()
        assert package.sha256 == hashlib.sha256(content).hexdigest()
        assert package.md5 == hashlib.md5(content).hexdigest()
        assert package.size == len(content)
        assert package.path == f"blobs/sha256/{package.sha256[:2]}/{package.sha256}"
        assert storage.objects[package.path] == content
        assert package.last_modified == NOW
    assert stored_manifest(storage).packages == tuple(added)
    assert list_packages(storage, "alice", 12, 34) == added


def test_manifest_is_written_last_and_once(storage, make_file):
    files = [make_file(f"p{i}-1.0-1.noarch.rpm") for i in range(3)]
    add_packages(storage, "alice", 12, 34, files, now=NOW)
    assert [kind for kind, _ in storage.writes] == ["put", "put", "put", "write"]
    assert storage.writes[-1] == ("write", MANIFEST)


def test_appending_keeps_db_ids(storage, make_file):
    first = add_packages(storage, "alice", 12, 34, [make_file("a.rpm"), make_file("b.rpm")], now=NOW)
    later = NOW + timedelta(days=1)
    second = add_packages(storage, "alice", 12, 34, [make_file("c.rpm"), make_file("a.rpm")], now=later)
    assert [p.db_id for p in first] == [1, 2]
    assert [p.db_id for p in second] == [3, 1]
    assert second[1] == first[0]  # the known package comes back unchanged, lastModified included
    assert second[0].last_modified == later
    assert [p.full_name for p in list_packages(storage, "alice", 12, 34)] == ["a.rpm", "b.rpm", "c.rpm"]


def test_new_ids_follow_the_highest_even_with_gaps(storage, make_file):
    seeded = add_packages(storage, "alice", 12, 34, [make_file("a.rpm"), make_file("b.rpm")], now=NOW)
    renumbered = Manifest("alice", 12, 34, (replace(seeded[0], db_id=5), replace(seeded[1], db_id=40)))
    storage.objects[MANIFEST] = dump_manifest(renumbered)
    assert add_packages(storage, "alice", 12, 34, [make_file("c.rpm")], now=NOW)[0].db_id == 41


def test_known_packages_are_not_added_twice(storage, make_file):
    path = make_file("a-1-1.noarch.rpm")
    first = add_packages(storage, "alice", 12, 34, [path, path], now=NOW)
    assert first[0] == first[1]
    writes = list(storage.writes)
    again = add_packages(storage, "alice", 12, 34, [path], now=NOW + timedelta(hours=1))
    assert again == [first[0]]
    assert storage.writes == writes  # no upload, and no manifest rewrite
    assert len(stored_manifest(storage).packages) == 1


def test_same_content_under_another_name_is_a_new_entry_on_the_same_blob(storage, make_file):
    content = b"same bytes"
    files = [make_file("a.rpm", content), make_file("b.rpm", content)]
    added = add_packages(storage, "alice", 12, 34, files, now=NOW)
    assert [p.db_id for p in added] == [1, 2]
    assert added[0].path == added[1].path
    assert [kind for kind, _ in storage.writes] == ["put", "write"]


def test_blobs_are_deduplicated_across_scans(storage, make_file):
    content = build_rpm()
    add_packages(storage, "alice", 12, 34, [make_file("openssl.rpm", content, "one")], now=NOW)
    added = add_packages(storage, "bob", 1, 2, [make_file("openssl.rpm", content, "two")], now=NOW)
    puts = [path for kind, path in storage.writes if kind == "put"]
    assert puts == [blob_path(hashlib.sha256(content).hexdigest())]
    assert added[0].db_id == 1
    assert storage.writes[-1] == ("write", "bob/1/2/packages.json")


@pytest.mark.parametrize("uid, siid, sid", [
    ("", 1, 2), ("../x", 1, 2), ("-alice", 1, 2), ("a" * 65, 1, 2), ("al ice", 1, 2), ("alice/x", 1, 2),
    ("alice", -1, 2), ("alice", 10**18, 2), ("alice", 1, -5), ("alice", 1, 10**18), ("alice", True, 2),
    ("alice", "1", 2), ("alice", 1, 2.0),
])
def test_bad_ids_are_refused_before_anything_is_stored(storage, make_file, uid, siid, sid):
    with pytest.raises(ValueError):
        add_packages(storage, uid, siid, sid, [make_file("a.rpm")], now=NOW)
    assert storage.writes == []


@pytest.mark.parametrize("uid, siid, sid", [("A", 0, 0), ("a.b_c@d-e", 10**18 - 1, 10**18 - 1),
                                            ("a" * 64, 1, 1)])
def test_edge_ids_are_accepted(storage, make_file, uid, siid, sid):
    assert add_packages(storage, uid, siid, sid, [make_file("a.rpm")], now=NOW)[0].db_id == 1
    assert manifest_path(uid, siid, sid) in storage.objects


@pytest.mark.parametrize("name", ["a\nb.rpm", "a\rb.rpm", "tab\there.rpm", "bell\x07.rpm", "del\x7f.rpm",
                                  "c1\x85.rpm"])
def test_control_characters_in_names_are_refused(storage, make_file, name):
    good = make_file("good.rpm")
    with pytest.raises(ValueError):
        add_packages(storage, "alice", 12, 34, [good, make_file(name)], now=NOW)
    assert storage.writes == []  # names are checked before any blob is stored


def test_nul_and_undecodable_names_are_refused(storage, tmp_path):
    with pytest.raises(ValueError):
        add_packages(storage, "alice", 12, 34, [str(tmp_path / "a\x00b.rpm")], now=NOW)
    with pytest.raises(ValueError):
        add_packages(storage, "alice", 12, 34, [str(tmp_path / "a\udcffb.rpm")], now=NOW)
    assert storage.writes == []


def test_quotes_and_backslashes_are_kept_as_given(storage, make_file):
    name = 'we"ird\\name;.rpm'
    added = add_packages(storage, "alice", 12, 34, [make_file(name)], now=NOW)
    assert added[0].full_name == name
    assert json.loads(storage.objects[MANIFEST])["packages"][0]["fullName"] == name


def test_now_becomes_utc_whole_seconds(storage, make_file):
    moment = datetime(2026, 11, 26, 12, 0, 0, 987654, tzinfo=timezone(timedelta(hours=2)))
    added = add_packages(storage, "alice", 12, 34, [make_file("a.rpm")], now=moment)
    assert added[0].last_modified == NOW
    assert added[0].last_modified.tzinfo is UTC
    assert json.loads(storage.objects[MANIFEST])["packages"][0]["lastModified"] == "2026-11-26T10:00:00Z"


def test_default_now_is_the_current_second(storage, make_file):
    before = datetime.now(UTC).replace(microsecond=0)
    added = add_packages(storage, "alice", 12, 34, [make_file("a.rpm")])
    assert before <= added[0].last_modified <= datetime.now(UTC)
    assert added[0].last_modified.microsecond == 0


def test_naive_now_is_refused(storage, make_file):
    with pytest.raises(ValueError):
        add_packages(storage, "alice", 12, 34, [make_file("a.rpm")], now=datetime(2026, 11, 26))


def test_empty_file(storage, make_file):
    added = add_packages(storage, "alice", 12, 34, [make_file("empty-1.0-1.noarch.rpm", b"")], now=NOW)
    assert (added[0].size, added[0].sha256) == (0, hashlib.sha256(b"").hexdigest())


def test_file_larger_than_one_read(storage, make_file):
    content = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
    added = add_packages(storage, "alice", 12, 34, [make_file("big.bin", content)], now=NOW)
    assert added[0].sha256 == hashlib.sha256(content).hexdigest()
    assert added[0].size == len(content)


def test_list_packages_of_an_unknown_scan_is_empty(storage):
    assert list_packages(storage, "alice", 12, 99) == []


def test_a_broken_manifest_is_never_overwritten(storage, make_file):
    storage.objects[MANIFEST] = b"{not json"
    with pytest.raises(ManifestError):
        add_packages(storage, "alice", 12, 34, [make_file("a.rpm")], now=NOW)
    with pytest.raises(ManifestError):
        list_packages(storage, "alice", 12, 34)
    assert storage.objects[MANIFEST] == b"{not json"


def test_a_manifest_of_another_scan_is_refused(storage, make_file):
    storage.objects[MANIFEST] = dump_manifest(Manifest("bob", 12, 34, ()))
    with pytest.raises(ManifestError):
        add_packages(storage, "alice", 12, 34, [make_file("a.rpm")], now=NOW)


def test_a_file_changing_during_import_writes_no_manifest(storage, make_file):
    path = make_file("a.rpm")

    class Rewriting(RecordingStorage):
        def put_file(self, local_path: str, target: str) -> None:
            super().put_file(local_path, target)
            with open(local_path, "ab") as handle:
                handle.write(b"more")

    rewriting = Rewriting()
    with pytest.raises(ValueError, match="changed"):
        add_packages(rewriting, "alice", 12, 34, [path], now=NOW)
    assert MANIFEST not in rewriting.objects


def test_missing_file_writes_no_manifest(storage, make_file, tmp_path):
    with pytest.raises(FileNotFoundError):
        add_packages(storage, "alice", 12, 34, [make_file("a.rpm"), str(tmp_path / "missing.rpm")], now=NOW)
    assert MANIFEST not in storage.objects


def test_nothing_to_add_writes_nothing(storage):
    assert add_packages(storage, "alice", 12, 34, [], now=NOW) == []
    assert storage.writes == []
