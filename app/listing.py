"""The scan listing's entries: UForge ScannedPkg fields, each with a fresh single-use token inside its binaryUri."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.links import binary_uri, package_uri
from app.manifest import Package
from app.services import services
from app.tokens import PackageRef


def listing_entries(packages: Iterable[Package], uid: str, siid: int, sid: int) -> list[dict]:
    """One scannedPackage object per package, each with its own new token."""
    tokens = services().tokens
    return [scanned_package(package, ref, tokens.mint(ref))
            for package in packages for ref in [PackageRef(uid, siid, sid, package.db_id)]]


def scanned_package(package: Package, ref: PackageRef, token: str) -> dict[str, object]:
    """A package as UForge's ScannedPkg: the elements its schema defines and we have a value for. The token travels
    in binaryUri, the link UForge clients follow; the storage path stays private."""
    return {
        "dbId": package.db_id,
        "digest": package.sha256,
        "lastModified": package.last_modified,
        "md5sum": package.md5,
        "mimeType": package.mime_type,
        "sha256sum": package.sha256,
        "size": package.size,
        "arch": package.arch,
        "binaryUri": binary_uri(ref, token),
        "fullName": package.full_name,
        "name": package.name,
        "release": package.release,
        "type": package.type,
        "uri": package_uri(ref),
        "version": package.version,
        "epoch": package.epoch,
        "scannedInstanceId": ref.siid,
    }


def nevra(package: Package) -> tuple:
    """What identifies a package's build across scans: name, epoch, version, release, arch."""
    return (package.name, package.epoch, package.version, package.release, package.arch)


def packages_differing_from(packages: Sequence[Package], other: Iterable[Package]) -> list[Package]:
    """The packages whose (name, epoch, version, release, arch) does not occur in the other scan."""
    known = {nevra(package) for package in other}
    return [package for package in packages if nevra(package) not in known]
