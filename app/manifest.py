"""The scan manifest (README, "Storage and the manifest"): one scan's catalog, its schema, strict parsing per entry
and stable dumping."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.ids import MAX_ID, MEDIA_TYPE_PATTERN, UID_RULE, is_id, is_uid

MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # ~100k packages; anything larger is not a manifest we wrote
MAX_TEXT = 1024
MAX_SIZE = 2**63 - 1
MAX_EPOCH = 2**31 - 1  # UForge's schema types epoch as xs:int; rpm and dpkg epochs are far smaller in practice
# Descriptive text a scanner copies from the machine: a control character there (a CR/LF in a file name) is dropped
# where the value is shown (Content-Disposition, XML, the landing page), never a reason to refuse the package.
_DESCRIPTIVE_FIELDS = frozenset({"name", "version", "release", "arch", "fullName", "type"})
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
# RFC 3339 date-time; producers may send an offset or fractions: we keep UTC whole seconds, as HTTP dates do.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


class ManifestError(ValueError):
    """A scan manifest is unreadable or inconsistent: a server error, never a reason to serve another file."""

    def __init__(self, reason: str = "") -> None:
        super().__init__("invalid scan manifest")
        # Field names only, never values: it goes to logs, and values may be hostile.
        self.reason = reason


@dataclass(frozen=True)
class Package:
    """One package of a scan, as the manifest describes it."""

    db_id: int
    name: str
    version: str
    release: str
    epoch: int | None
    arch: str
    full_name: str
    type: str
    mime_type: str
    size: int
    sha256: str
    md5: str
    last_modified: datetime
    path: str


@dataclass(frozen=True)
class UnusableEntry:
    """A manifest entry that cannot be served: its position, its dbId when that much is readable, and what is wrong
    (a field name, never a value: hostile values stay out of logs)."""

    index: int
    db_id: int | None
    reason: str

    def describe(self) -> str:
        """One line for logs and the CLI: where the entry is and which field is wrong (never its values)."""
        which = f"dbId {self.db_id}" if self.db_id is not None else "no usable dbId"
        return f"packages[{self.index}] ({which}): {self.reason}"


@dataclass(frozen=True)
class Manifest:
    """A scan's identity and its packages, ordered by dbId, with a pid lookup; entries that cannot be served are
    kept apart in ``unusable``, so one odd entry affects only its own package."""

    uid: str
    siid: int
    sid: int
    packages: tuple[Package, ...]
    unusable: tuple[UnusableEntry, ...] = ()
    _by_id: Mapping[int, Package] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {package.db_id: package for package in self.packages}
        if len(by_id) != len(self.packages):
            raise ManifestError("duplicate dbId")
        object.__setattr__(self, "_by_id", by_id)

    def package(self, pid: int) -> Package | None:
        """The package whose dbId is ``pid``, or None; ManifestError when its entry is unusable (a server error for
        that package alone)."""
        package = self._by_id.get(pid)
        if package is None:
            for entry in self.unusable:
                if entry.db_id == pid:
                    raise ManifestError(entry.reason)
        return package

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the canonical manifest: a validator for what is derived from it (computed once per object,
        and workers keep their Manifest objects for PKGDL_CATALOG_TTL)."""
        # ASCII-escaped: a tolerated name may hold a lone surrogate, which UTF-8 cannot encode.
        canonical = json.dumps([self.uid, self.siid, self.sid, [package_fields(p) for p in self.packages]],
                               ensure_ascii=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def validate_scan_ids(uid: str, siid: int, sid: int) -> None:
    """Raise ValueError unless the ids are what URLs accept (they become storage paths, so no traversal)."""
    if not is_uid(uid):
        raise ValueError(f"uid must match {UID_RULE}")
    for label, value in (("siid", siid), ("sid", sid)):
        if not is_id(value):
            raise ValueError(f"{label} must be an integer from 0 to {MAX_ID}")


def manifest_path(uid: str, siid: int, sid: int) -> str:
    """Where a scan's manifest lives, relative to the storage root."""
    validate_scan_ids(uid, siid, sid)
    return f"{uid}/{siid}/{sid}/packages.json"


# Exactly the code points of general categories Cc (C0, DEL, C1: fixed by Unicode's stability policy) and Cs
# (surrogates), checked against unicodedata.category over every code point. One regex search instead of a
# category lookup per character: parsing a 1,000-package manifest went from ~31 ms to ~13 ms, which the first
# request of a worker (and of every PKGDL_CATALOG_TTL) pays.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def has_control_characters(text: str) -> bool:
    """True when ``text`` holds C0/C1 controls or lone surrogates (undecodable file name bytes)."""
    return _CONTROL_OR_SURROGATE.search(text) is not None


def format_timestamp(moment: datetime, milliseconds: bool = False) -> str:
    """The manifest's lastModified spelling, also UForge's xs:dateTime: UTC, 'Z', whole seconds or milliseconds."""
    # isoformat, not strftime("%Y"): glibc does not pad years below 1000 (Go's zero time is 0001-01-01).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(
        timespec="milliseconds" if milliseconds else "seconds") + "Z"


def package_fields(package: Package) -> dict[str, object]:
    """A package as its manifest JSON object (the manifest's field names)."""
    return {
        "dbId": package.db_id,
        "name": package.name,
        "version": package.version,
        "release": package.release,
        "epoch": package.epoch,
        "arch": package.arch,
        "fullName": package.full_name,
        "type": package.type,
        "mimeType": package.mime_type,
        "size": package.size,
        "sha256sum": package.sha256,
        "md5sum": package.md5,
        "lastModified": format_timestamp(package.last_modified),
        "path": package.path,
    }


def dump_manifest(manifest: Manifest) -> bytes:
    """Stable, indented UTF-8 JSON, packages sorted by dbId (diffable; equal manifests give equal bytes)."""
    document = {
        "uid": manifest.uid,
        "siid": manifest.siid,
        "sid": manifest.sid,
        "packages": [package_fields(p) for p in sorted(manifest.packages, key=lambda p: p.db_id)],
    }
    try:
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a tolerated name with a lone surrogate survives only as a \u escape
        return (json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode("ascii")


class ScanEntries:
    """A manifest read for one package at a time (a download needs one): the document checked as parse_manifest
    checks it, each entry validated when it is first asked for. `package` answers exactly as Manifest.package does
    (tests/test_manifest.py compares them); the listing still parses the whole manifest. For 1,000 entries: ~4 ms
    (the JSON) instead of ~12 ms, on every worker's first download of a scan and every PKGDL_CATALOG_TTL."""

    def __init__(self, uid: str, siid: int, sid: int, entries: list[object]) -> None:
        self.uid, self.siid, self.sid = uid, siid, sid
        by_id: dict[int, list[tuple[int, object]]] = {}
        for index, entry in enumerate(entries):
            for db_id in _db_ids_of(entry):
                by_id.setdefault(db_id, []).append((index, entry))
        self._entries = by_id
        self._checked: dict[int, Package | str] = {}  # dbId -> its Package, or why its entry is unusable

    def package(self, pid: int) -> Package | None:
        """The package whose dbId is ``pid``, or None; ManifestError when its entry is unusable."""
        checked = self._checked.get(pid)
        if checked is None:
            found = self._entries.get(pid)
            if found is None:
                return None
            if len(found) > 1:
                checked = _TWICE
            else:
                index, entry = found[0]
                try:
                    checked = _package(entry, index)
                except ManifestError as error:
                    checked = _unusable_reason(error, index)
            self._checked[pid] = checked  # a race only computes the same answer twice
        if isinstance(checked, str):
            raise ManifestError(checked)
        return checked


def scan_entries(raw: bytes, uid: str | None = None, siid: int | None = None, sid: int | None = None) -> ScanEntries:
    """The manifest's document checked (as parse_manifest does), its entries left for ScanEntries.package."""
    return ScanEntries(*_document(raw, uid, siid, sid))


def parse_manifest(raw: bytes, uid: str | None = None, siid: int | None = None,
                   sid: int | None = None) -> Manifest:
    """Parse and validate a manifest; when ids are given, it must be that scan's. ManifestError otherwise."""
    file_uid, file_siid, file_sid, entries = _document(raw, uid, siid, sid)
    packages, unusable = _entries(entries)
    return Manifest(file_uid, file_siid, file_sid, tuple(sorted(packages, key=lambda p: p.db_id)), tuple(unusable))


def _document(raw: bytes, uid: str | None, siid: int | None, sid: int | None) -> tuple[str, int, int, list[object]]:
    """The scan's ids and its raw entries, once the document itself is sound (JSON, no duplicate key, the scan's own
    ids, a list of packages); ManifestError otherwise (the whole scan is unreadable)."""
    document = _load_json(raw)
    if isinstance(document, _RepeatedKeys):
        raise ManifestError("duplicate key")
    if not isinstance(document, dict):
        raise ManifestError("not an object")
    file_uid, file_siid, file_sid = document.get("uid"), document.get("siid"), document.get("sid")
    try:
        validate_scan_ids(file_uid, file_siid, file_sid)  # type: ignore[arg-type]
    except ValueError:
        raise ManifestError("uid/siid/sid") from None
    for expected, actual in ((uid, file_uid), (siid, file_siid), (sid, file_sid)):
        if expected is not None and expected != actual:
            raise ManifestError("uid/siid/sid differ from the scan's path")
    entries = document.get("packages")
    if not isinstance(entries, list):
        raise ManifestError("packages")
    return file_uid, file_siid, file_sid, entries


_TWICE = "dbId occurs more than once"


def _unusable_reason(error: ManifestError, index: int) -> str:
    """The field an entry's error names (never a value), as UnusableEntry.reason keeps it."""
    return error.reason.removeprefix(f"packages[{index}]").removeprefix(".") or "not an object"


def _entries(entries: list[object]) -> tuple[list[Package], list[UnusableEntry]]:
    """Each entry parsed on its own: the usable packages, and the rest with the reason. A dbId that occurs twice
    is ambiguous, so every entry carrying it is unusable (never a guess at which one was meant)."""
    parsed: list[tuple[int, Package]] = []
    unusable: list[UnusableEntry] = []
    for index, entry in enumerate(entries):
        try:
            parsed.append((index, _package(entry, index)))
        except ManifestError as error:
            reason = _unusable_reason(error, index)
            unusable += [UnusableEntry(index, db_id, reason) for db_id in _db_ids_of(entry) or (None,)]
    counts = Counter([p.db_id for _, p in parsed] + [u.db_id for u in unusable if u.db_id is not None])
    duplicated = {db_id for db_id, count in counts.items() if count > 1}
    if duplicated:
        unusable = [UnusableEntry(u.index, u.db_id, _TWICE) if u.db_id in duplicated else u for u in unusable]
        unusable += [UnusableEntry(index, p.db_id, _TWICE) for index, p in parsed if p.db_id in duplicated]
        parsed = [(index, p) for index, p in parsed if p.db_id not in duplicated]
    return [p for _, p in parsed], sorted(unusable, key=lambda u: u.index)


def _load_json(raw: bytes) -> object:
    if not isinstance(raw, bytes | bytearray) or len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError("size")
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ManifestError("not JSON") from None


@dataclass(frozen=True)
class _RepeatedKeys:
    """A JSON object in which a key occurs twice: two readers could disagree on which value counts, so it is no
    object at all for us. The document itself: the scan is unreadable; an entry: that package alone is unusable
    (spec 4.2: one unusable entry never affects the scan); a field's value: that field is wrong."""

    db_ids: tuple[object, ...]  # every value its dbId key was given (none, one, or several)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object] | _RepeatedKeys:
    # A dict shorter than its pairs had a key twice: no second pass over the keys (called once per JSON object:
    # 1,000 entries 2.8 -> 2.2 ms).
    document = dict(pairs)
    if len(document) != len(pairs):
        return _RepeatedKeys(tuple(value for key, value in pairs if key == "dbId"))
    return document


def _db_ids_of(entry: object) -> tuple[int, ...]:
    """The valid dbIds an entry was written with (not its other fields' validity): one for an object, each distinct
    one of an object whose dbId key repeats (it is unusable, and every pid it may be read as is ambiguous: a reader
    taking the last value would serve it as another entry's package), none otherwise."""
    if isinstance(entry, dict):
        written: tuple[object, ...] = (entry.get("dbId"),)
    elif isinstance(entry, _RepeatedKeys):
        written = entry.db_ids
    else:
        written = ()
    return tuple(dict.fromkeys(db_id for db_id in written if is_id(db_id)))  # distinct, in order


def _no_constant(name: str) -> object:
    raise ManifestError("NaN or Infinity")


def _package(entry: object, index: int) -> Package:
    if isinstance(entry, _RepeatedKeys):
        raise ManifestError(f"packages[{index}].duplicate key")
    if not isinstance(entry, dict):
        raise ManifestError(f"packages[{index}]")

    def text(key: str, *, required: bool = False, pattern: re.Pattern[str] | None = None) -> str:
        value = entry.get(key)
        if (not isinstance(value, str) or len(value) > MAX_TEXT
                or (key not in _DESCRIPTIVE_FIELDS and has_control_characters(value))
                or (required and not value) or (pattern is not None and not pattern.fullmatch(value))):
            raise ManifestError(f"packages[{index}].{key}")
        return value

    db_id, size, epoch = entry.get("dbId"), entry.get("size"), entry.get("epoch")
    if not is_id(db_id):
        raise ManifestError(f"packages[{index}].dbId")
    if not _is_int(size) or not 0 <= size <= MAX_SIZE:
        raise ManifestError(f"packages[{index}].size")
    if epoch is not None and (not _is_int(epoch) or not 0 <= epoch <= MAX_EPOCH):
        raise ManifestError(f"packages[{index}].epoch")
    return Package(
        db_id=db_id,
        name=text("name"),
        version=text("version"),
        release=text("release"),
        epoch=epoch,
        arch=text("arch"),
        full_name=text("fullName", required=True),
        type=text("type", required=True),
        mime_type=text("mimeType", pattern=MEDIA_TYPE_PATTERN),
        size=size,
        sha256=text("sha256sum", pattern=_SHA256).lower(),
        md5=text("md5sum", pattern=_MD5).lower(),
        last_modified=_timestamp(text("lastModified", pattern=_TIMESTAMP), index),
        path=_blob_path(text("path", required=True), index),
    )


def _timestamp(value: str, index: int) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(UTC).replace(microsecond=0)
    except (ValueError, OverflowError):
        raise ManifestError(f"packages[{index}].lastModified") from None


# Names under the storage root that are never a package's bytes: scan manifests, their compare-and-swap lock files,
# and hidden files (temp files of atomic writes). A hostile or buggy manifest naming one must not serve another
# scan's catalog (binaries may live anywhere else under the root, so this is a deny list, not blobs/ only).
_NOT_BLOBS = re.compile(r"packages\.json(\.lock)?|\..*")


def _blob_path(path: str, index: int) -> str:
    """A relative path under the storage root: nothing that could climb out of it or mean another file."""
    segments = path.split("/")
    if ("\\" in path or any(segment in ("", ".", "..") for segment in segments) or ":" in segments[0]
            or _NOT_BLOBS.fullmatch(segments[-1])):
        raise ManifestError(f"packages[{index}].path")
    return path


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a number

