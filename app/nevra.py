"""Package identity (name, epoch, version, release, arch, type) from file names and, where cheap, headers.

Header values win over the file name. Every read from the file is bounded, and malformed, truncated or hostile
content makes the header reader give up quietly: the file name is always a usable answer.
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import os
import re
import struct
import tarfile
import zlib
from typing import BinaryIO

RPM_LEAD_MAGIC = b"\xed\xab\xee\xdb"
RPM_HEADER_MAGIC = b"\x8e\xad\xe8\x01"
RPM_LEAD_SIZE = 96
RPM_SOURCE_TYPE = 1  # lead type: 0 binary, 1 source
RPM_MAX_INDEX_ENTRIES = 0xFFFF  # rpm's own HEADER_TAGS_MAX
RPM_MAX_STORE_BYTES = 256 * 1024 * 1024  # rpm's own HEADER_DATA_MAX
RPM_TYPE_INT32, RPM_TYPE_STRING, RPM_TYPE_I18NSTRING = 4, 6, 9
TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH = 1000, 1001, 1002, 1003, 1022
STRING_TAGS = (TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_ARCH)

AR_MAGIC = b"!<arch>\n"
AR_MEMBER_HEADER = 60
AR_MAX_MEMBERS = 4  # dpkg puts control.tar.* second, after debian-binary
MAX_CONTROL_ARCHIVE = 16 * 1024 * 1024  # compressed control.tar.*; real ones are kilobytes
MAX_CONTROL_TAR = 32 * 1024 * 1024  # decompressed: a bound against decompression bombs
MAX_CONTROL_MEMBERS = 1000
MAX_CONTROL_FILE = 1024 * 1024
MAX_FIELD = 256  # a name, version or arch longer than this is not one

RPM, DEB, OTHER = "rpm", "deb", "other"
_DEB_SUFFIXES = (".deb", ".udeb", ".ddeb")
_RPM_ARCH = re.compile(r"[A-Za-z0-9_]+")
_EPOCH = re.compile(r"([0-9]{1,10}):(.+)")  # rpm and dpkg epochs are 32-bit unsigned
_URL_COLON = re.compile(r"%3a", re.IGNORECASE)  # apt spells the epoch colon %3a in file names
_SANE_FIELD = re.compile(rf"[!-~]{{1,{MAX_FIELD}}}")  # printable ASCII, no spaces: what rpm and dpkg allow


@dataclasses.dataclass(frozen=True)
class Nevra:
    """What identifies a package build, plus its packaging type ("rpm", "deb" or "other")."""

    name: str
    epoch: int | None
    version: str
    release: str
    arch: str
    type: str


def identify(path: str | os.PathLike[str], file_name: str | None = None) -> Nevra:
    """The package identity of a local file: header values when readable, else what its file name says."""
    by_name = parse_file_name(file_name if file_name is not None else os.path.basename(path))
    from_header = read_header(path)
    if from_header is None:
        return by_name
    if from_header.type == RPM and from_header.arch == "src" and by_name.arch == "nosrc":
        # The lead only tells source from binary; a nosrc package's file name is the finer truth.
        return dataclasses.replace(from_header, arch="nosrc")
    return from_header


def parse_file_name(file_name: str) -> Nevra:
    """Parse ``name-version-release.arch.rpm`` or ``name_version_arch.deb``; anything else is type "other".

    Unknown fields are empty strings; an "other" file's name is its whole file name and its arch is ""
    (unknown: "noarch" would claim something about the content that we do not know).
    """
    lowered = file_name.lower()
    if lowered.endswith(".rpm") and len(file_name) > len(".rpm"):
        return _rpm_file_name(file_name[: -len(".rpm")])
    for suffix in _DEB_SUFFIXES:
        if lowered.endswith(suffix) and len(file_name) > len(suffix):
            return _deb_file_name(file_name[: -len(suffix)])
    return Nevra(file_name, None, "", "", "", OTHER)


def split_deb_version(version: str) -> tuple[int | None, str, str]:
    """Split a Debian version into (epoch, upstream version, revision); the revision follows the LAST dash."""
    version = _URL_COLON.sub(":", version)
    epoch, version = _split_epoch(version)
    upstream, dash, revision = version.rpartition("-")
    if not dash or not upstream:
        return epoch, version, ""  # a native package has no revision
    return epoch, upstream, revision


def read_header(path: str | os.PathLike[str]) -> Nevra | None:
    """The identity in an rpm header or a deb's control file; None when there is none we can read."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(max(len(RPM_LEAD_MAGIC), len(AR_MAGIC)))
            handle.seek(0)
            if magic.startswith(RPM_LEAD_MAGIC):
                return _read_rpm(handle)
            if magic.startswith(AR_MAGIC):
                return _read_deb(handle)
            return None
    except Exception:  # hostile bytes must never break an import; the file name is the fallback
        return None


# ---- file names --------------------------------------------------------------------------------------------
def _rpm_file_name(stem: str) -> Nevra:
    rest, dot, arch = stem.rpartition(".")
    parts = rest.rsplit("-", 2) if dot else []
    if len(parts) != 3 or not all(parts) or not _RPM_ARCH.fullmatch(arch):
        return Nevra(stem, None, "", "", "", RPM)
    name, version, release = parts
    epoch, version = _split_epoch(_URL_COLON.sub(":", version))
    return Nevra(name, epoch, version, release, arch, RPM)


def _deb_file_name(stem: str) -> Nevra:
    parts = stem.split("_")
    if len(parts) not in (2, 3) or not all(parts):
        return Nevra(stem, None, "", "", "", DEB)
    epoch, version, release = split_deb_version(parts[1])
    return Nevra(parts[0], epoch, version, release, parts[2] if len(parts) == 3 else "", DEB)


def _split_epoch(version: str) -> tuple[int | None, str]:
    match = _EPOCH.fullmatch(version)
    if match is None or int(match[1]) > 0xFFFFFFFF:
        return None, version
    return int(match[1]), match[2]


# ---- rpm header --------------------------------------------------------------------------------------------
def _read_rpm(handle: BinaryIO) -> Nevra | None:
    lead = _read_exact(handle, RPM_LEAD_SIZE)
    (lead_type,) = struct.unpack(">H", lead[6:8])
    entries, store = _rpm_header_intro(handle)
    # The signature header is padded to 8 bytes; its intro and index are multiples of 8 already.
    handle.seek(entries * 16 + store + (-store) % 8, os.SEEK_CUR)
    entries, store = _rpm_header_intro(handle)
    index = _read_exact(handle, entries * 16)
    store_start = handle.tell()
    tags: dict[int, str | int] = {}
    for position in range(entries):
        tag, kind, offset, count = struct.unpack_from(">iiii", index, position * 16)
        if tag in tags or not 0 <= offset < store or count < 1:
            continue
        if tag in STRING_TAGS and kind in (RPM_TYPE_STRING, RPM_TYPE_I18NSTRING):
            handle.seek(store_start + offset)
            raw = handle.read(min(MAX_FIELD + 1, store - offset)).split(b"\0", 1)
            if len(raw) == 2:
                tags[tag] = raw[0].decode("ascii")
        elif tag == TAG_EPOCH and kind == RPM_TYPE_INT32 and offset + 4 <= store:
            handle.seek(store_start + offset)
            (tags[tag],) = struct.unpack(">I", _read_exact(handle, 4))
    name, version, release, arch = (tags.get(tag) for tag in STRING_TAGS)
    values = (name, version, release, arch)
    if not all(isinstance(value, str) and _SANE_FIELD.fullmatch(value) for value in values):
        return None
    epoch = tags.get(TAG_EPOCH)
    if lead_type == RPM_SOURCE_TYPE:
        arch = "src"  # a source rpm's ARCH tag names the build host's arch
    return Nevra(name, epoch, version, release, arch, RPM)  # type: ignore[arg-type]


def _rpm_header_intro(handle: BinaryIO) -> tuple[int, int]:
    intro = _read_exact(handle, 16)
    if intro[:4] != RPM_HEADER_MAGIC:
        raise ValueError("not an rpm header")
    entries, store = struct.unpack(">II", intro[8:16])
    if entries > RPM_MAX_INDEX_ENTRIES or store > RPM_MAX_STORE_BYTES:
        raise ValueError("rpm header too large")
    return entries, store


# ---- deb control -------------------------------------------------------------------------------------------
def _read_deb(handle: BinaryIO) -> Nevra | None:
    handle.seek(len(AR_MAGIC))
    for _ in range(AR_MAX_MEMBERS):
        header = _read_exact(handle, AR_MEMBER_HEADER)
        size_field = header[48:58].decode("ascii").strip()
        if header[58:60] != b"`\n" or not size_field.isdigit():
            return None
        size = int(size_field)
        member = header[:16].decode("ascii").strip().rstrip("/")  # GNU ar ends names with '/'
        if member.startswith("control.tar"):
            if size > MAX_CONTROL_ARCHIVE:
                return None
            control = _control_file(member, _read_exact(handle, size))
            return None if control is None else _deb_nevra(control)
        handle.seek(size + size % 2, os.SEEK_CUR)  # ar pads members to even offsets
    return None


def _control_file(member: str, archive: bytes) -> str | None:
    """The text of ``./control`` in control.tar[.gz|.xz]; None for zstd (no decoder before Python 3.14)."""
    if member == "control.tar":
        tar_bytes = archive
    elif member == "control.tar.gz":
        tar_bytes = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(archive, MAX_CONTROL_TAR)
    elif member == "control.tar.xz":
        tar_bytes = lzma.LZMADecompressor().decompress(archive, max_length=MAX_CONTROL_TAR)
    else:
        return None
    # Stream mode reads members in order and stops at ./control, so a truncated tail does not matter.
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r|") as tar:
        for _, member_info in zip(range(MAX_CONTROL_MEMBERS), tar, strict=False):
            if member_info.name.removeprefix("./") == "control" and member_info.isfile():
                extracted = tar.extractfile(member_info)
                if extracted is None or member_info.size > MAX_CONTROL_FILE:
                    return None
                return extracted.read(MAX_CONTROL_FILE).decode("utf-8", "replace")
    return None


def _deb_nevra(control: str) -> Nevra | None:
    fields: dict[str, str] = {}
    for line in control.splitlines():
        if not line.strip():
            break  # the first paragraph describes the binary package
        key, colon, value = line.partition(":")
        if colon and not line[0].isspace():
            fields.setdefault(key.strip().lower(), value.strip())  # field names are case-insensitive
    name, version, arch = fields.get("package"), fields.get("version"), fields.get("architecture")
    if not all(value and _SANE_FIELD.fullmatch(value) for value in (name, version, arch)):
        return None
    epoch, upstream, revision = split_deb_version(version)  # type: ignore[arg-type]
    if not upstream:
        return None
    return Nevra(name, epoch, upstream, revision, arch, DEB)  # type: ignore[arg-type]


def _read_exact(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise EOFError("truncated")
    return data
