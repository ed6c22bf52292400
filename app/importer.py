"""The catalog's producer: store package files content-addressed, then write the scan manifest last."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from app.ids import MAX_ID
from app.manifest import (
    Manifest,
    Package,
    dump_manifest,
    has_control_characters,
    manifest_path,
    parse_manifest,
    validate_scan_ids,
)
from app.nevra import DEB, RPM, identify
from storage_backends import Storage

READ_SIZE = 1 << 20
MANIFEST_ATTEMPTS = 50  # compare-and-swap rounds before giving up on a scan that keeps changing
MIME_TYPES = {RPM: "application/x-rpm", DEB: "application/vnd.debian.binary-package"}
DEFAULT_MIME_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class _Digests:
    sha256: str
    md5: str
    size: int


def blob_path(sha256: str) -> str:
    """Where a blob lives: content-addressed, so identical packages across scans are stored once."""
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def list_packages(storage: Storage, uid: str, siid: int, sid: int) -> list[Package]:
    """A scan's usable packages ordered by dbId; empty when the scan has no manifest yet."""
    manifest = read_scan(storage, uid, siid, sid)
    return list(manifest.packages) if manifest is not None else []


def read_scan(storage: Storage, uid: str, siid: int, sid: int) -> Manifest | None:
    """A scan's manifest (its unusable entries included), or None when the scan has none yet."""
    try:
        raw = storage.read_bytes(manifest_path(uid, siid, sid))
    except FileNotFoundError:
        return None
    return parse_manifest(raw, uid=uid, siid=siid, sid=sid)


def add_packages(storage: Storage, uid: str, siid: int, sid: int, files: Sequence[str],
                 now: datetime | None = None) -> list[Package]:
    """Add local files to a scan (known packages keep their dbId); return their entries in input order."""
    validate_scan_ids(uid, siid, sid)
    names = [_full_name(path) for path in files]  # refuse bad names before anything is stored
    moment = _whole_seconds_utc(now)
    stored = [(path, name, _store_blob(storage, path)) for path, name in zip(files, names, strict=True)]
    # Last, the manifest, by compare-and-swap: if another import changed it since we read it, merge again, so two
    # imports into one scan both end up in it and readers see the old catalog or the new one, never a part.
    for _ in range(MANIFEST_ATTEMPTS):
        current = storage.read_versioned(manifest_path(uid, siid, sid))
        existing = _parsed(current, uid, siid, sid)
        packages, added = _merged(existing, stored, moment)
        if len(packages) == len(existing):
            return added
        raw = dump_manifest(Manifest(uid, siid, sid, tuple(packages)))
        if storage.replace_if(manifest_path(uid, siid, sid), raw, current[1] if current else None):
            return added
    raise ConnectionError("the scan's manifest kept changing under concurrent imports; run the import again")


def _parsed(current: tuple[bytes, str] | None, uid: str, siid: int, sid: int) -> tuple[Package, ...]:
    if not current:
        return ()
    # A broken manifest raises ManifestError (a ValueError), and one with unusable entries is refused too: rewriting
    # it would silently drop those entries.
    manifest = parse_manifest(current[0], uid=uid, siid=siid, sid=sid)
    if manifest.unusable:
        raise ValueError("the scan's manifest has unusable entries; fix or remove them first: "
                         + "; ".join(entry.describe() for entry in manifest.unusable))
    return manifest.packages


def _merged(existing: Sequence[Package], stored: Sequence[tuple[str, str, _Digests]],
            moment: datetime) -> tuple[list[Package], list[Package]]:
    """The scan's packages with the stored files added (known ones keep their dbId), and the files' entries."""
    packages = list(existing)
    known = {(package.sha256, package.full_name): package for package in packages}
    next_id = max((package.db_id for package in packages), default=0) + 1
    added: list[Package] = []
    for path, full_name, digests in stored:
        package = known.get((digests.sha256, full_name))
        if package is None:
            if next_id > MAX_ID:
                raise ValueError("no dbId left in this scan")
            package = _package(next_id, path, full_name, digests, moment)
            known[(package.sha256, full_name)] = package
            packages.append(package)
            next_id += 1
        added.append(package)
    return packages, added


def _full_name(path: str) -> str:
    name = os.path.basename(os.fspath(path))
    if not name or has_control_characters(name):
        raise ValueError(f"unusable package file name: {name!r}")
    return name


def _whole_seconds_utc(now: datetime | None) -> datetime:
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC).replace(microsecond=0)


def _store_blob(storage: Storage, path: str) -> _Digests:
    """Hash the file and upload it unless its content is stored already."""
    before = os.stat(path)
    digests = _digests(path)
    target = blob_path(digests.sha256)
    if not storage.exists(target):
        storage.put_file(path, target)
    after = os.stat(path)
    # A file rewritten while we read it would leave a manifest promising other bytes than the blob holds.
    if _fingerprint(before) != _fingerprint(after) or digests.size != after.st_size:
        raise ValueError(f"{path} changed while it was being imported")
    return digests


def _fingerprint(status: os.stat_result) -> tuple[int, int, int]:
    return status.st_size, status.st_mtime_ns, status.st_ino


def _digests(path: str) -> _Digests:
    """sha256 and md5 in one streaming pass."""
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_SIZE):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return _Digests(sha256.hexdigest(), md5.hexdigest(), size)


def _package(db_id: int, path: str, full_name: str, digests: _Digests, moment: datetime) -> Package:
    nevra = identify(path, full_name)
    return Package(
        db_id=db_id,
        name=nevra.name,
        version=nevra.version,
        release=nevra.release,
        epoch=nevra.epoch,
        arch=nevra.arch,
        full_name=full_name,
        type=nevra.type,
        mime_type=MIME_TYPES.get(nevra.type, DEFAULT_MIME_TYPE),
        size=digests.size,
        sha256=digests.sha256,
        md5=digests.md5,
        last_modified=moment,
        path=blob_path(digests.sha256),
    )
