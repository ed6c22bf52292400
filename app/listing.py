"""The scan listing's entries: manifest fields plus uri, digest and a fresh single-use download token each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.links import binary_uri, package_uri
from app.manifest import Package, package_fields
from app.services import services
from app.tokens import PackageRef


def listing_entries(packages: Iterable[Package], uid: str, siid: int, sid: int) -> list[dict]:
    """One scannedPackage object per package, each with its own new token."""
    tokens = services().tokens
    entries = []
    for package in packages:
        ref = PackageRef(uid, siid, sid, package.db_id)
        token = tokens.mint(ref)
        entries.append({
            **package_fields(package),
            "uri": package_uri(ref),
            "digest": package.sha256,
            "downloadToken": token,
            "binaryUri": binary_uri(ref, token),
        })
    return entries


def nevra(package: Package) -> tuple:
    """What identifies a package's build across scans: name, epoch, version, release, arch."""
    return (package.name, package.epoch, package.version, package.release, package.arch)


def packages_differing_from(packages: Sequence[Package], other: Iterable[Package]) -> list[Package]:
    """The packages whose (name, epoch, version, release, arch) does not occur in the other scan."""
    known = {nevra(package) for package in other}
    return [package for package in packages if nevra(package) not in known]
