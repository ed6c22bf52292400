"""Package identity from file names and real rpm/deb headers; hostile files fall back to the name."""

from __future__ import annotations

import io
import random
import struct
import tarfile
from pathlib import Path

import pytest

from app import nevra as nevra_module
from app.nevra import Nevra, identify, parse_file_name, read_header, split_deb_version


# ---- builders: a minimal valid rpm and deb, with nothing but struct and tarfile ----------------------------
def rpm_header_section(entries: list[tuple[int, int, bytes, int]]) -> bytes:
    """An rpm header structure: intro, index of (tag, type, data, count), store."""
    index, store = b"", b""
    for tag, kind, data, count in entries:
        if kind == 4:
            store += b"\0" * (-len(store) % 4)  # INT32 data is 4-aligned
        index += struct.pack(">iiii", tag, kind, len(store), count)
        store += data
    return b"\x8e\xad\xe8\x01" + b"\0" * 4 + struct.pack(">II", len(entries), len(store)) + index + store


def build_rpm(name: str = "openssl", version: str = "3.0.7", release: str = "27.el9", arch: str = "x86_64",
              epoch: int | None = 1, source: bool = False, payload: bytes = b"payload") -> bytes:
    """Lead, signature header (padded to 8), main header, payload: what rpm's reader walks through."""
    lead = b"\xed\xab\xee\xdb" + bytes([3, 0]) + struct.pack(">H", 1 if source else 0) + struct.pack(">H", 1)
    lead += name.encode()[:65].ljust(66, b"\0") + struct.pack(">HH", 1, 5)
    lead = lead.ljust(96, b"\0")
    signature = rpm_header_section([(1004, 6, b"odd!\0", 1)])  # a 5-byte store, so padding matters
    signature += b"\0" * (-len(signature) % 8)
    entries = [
        (1000, 6, name.encode() + b"\0", 1),
        (1001, 6, version.encode() + b"\0", 1),
        (1002, 6, release.encode() + b"\0", 1),
        (1022, 6, arch.encode() + b"\0", 1),
    ]
    if epoch is not None:
        entries.insert(3, (1003, 4, struct.pack(">I", epoch), 1))
    return lead + signature + rpm_header_section(entries) + payload


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    """A System V / GNU ar archive, as dpkg-deb writes it."""
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode() + b"`\n"
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def tar_bytes(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        directory = tarfile.TarInfo("./")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


CONTROL = (b"Package: openssl\nSource: openssl (3.0.11-1)\nVersion: 1:3.0.11-1~deb12u2\nArchitecture: amd64\n"
           b"Description: Secure Sockets Layer toolkit\n continuation line: not a field\n")


def build_deb(control: bytes = CONTROL, compression: str = "gz") -> bytes:
    """debian-binary, control.tar.<compression>, data.tar.gz."""
    suffix = f".{compression}" if compression else ""
    control_tar = tar_bytes({"./control": control, "./md5sums": b""}, f"w:{compression}")
    data_tar = tar_bytes({"./usr/bin/openssl": b"\x7fELF"})
    return ar_archive([("debian-binary", b"2.0\n"), (f"control.tar{suffix}", control_tar),
                       ("data.tar.gz", data_tar)])


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# ---- file names --------------------------------------------------------------------------------------------
NAMES = [
    ("python3-libs-3.9.18-1.el9.x86_64.rpm", Nevra("python3-libs", None, "3.9.18", "1.el9", "x86_64", "rpm")),
    ("openssl-3.0.7-27.el9.x86_64.rpm", Nevra("openssl", None, "3.0.7", "27.el9", "x86_64", "rpm")),
    ("bash-5.1.8-6.el9_1.x86_64.rpm", Nevra("bash", None, "5.1.8", "6.el9_1", "x86_64", "rpm")),
    ("tzdata-2024a-1.el9.noarch.rpm", Nevra("tzdata", None, "2024a", "1.el9", "noarch", "rpm")),
    ("openssl-3.0.7-27.el9.src.rpm", Nevra("openssl", None, "3.0.7", "27.el9", "src", "rpm")),
    ("kernel-5.14.0-362.8.1.el9_3.x86_64.rpm",
     Nevra("kernel", None, "5.14.0", "362.8.1.el9_3", "x86_64", "rpm")),
    ("glibc-2.34-83.el9.7.i686.rpm", Nevra("glibc", None, "2.34", "83.el9.7", "i686", "rpm")),
    ("perl-Carp-1.50-460.el9.noarch.rpm", Nevra("perl-Carp", None, "1.50", "460.el9", "noarch", "rpm")),
    ("zlib-1.2.11-40.el9.aarch64.rpm", Nevra("zlib", None, "1.2.11", "40.el9", "aarch64", "rpm")),
    ("foo-1:2.0-3.ppc64le.rpm", Nevra("foo", 1, "2.0", "3", "ppc64le", "rpm")),
    ("foo-12%3A2.0-3.s390x.rpm", Nevra("foo", 12, "2.0", "3", "s390x", "rpm")),
    ("LIBFOO-1.0-1.X86_64.RPM", Nevra("LIBFOO", None, "1.0", "1", "X86_64", "rpm")),
    ("gpg-pubkey-fd431d51-4ae0493b.rpm", Nevra("gpg-pubkey-fd431d51-4ae0493b", None, "", "", "", "rpm")),
    ("openssl.rpm", Nevra("openssl", None, "", "", "", "rpm")),
    ("-1.0-1.x86_64.rpm", Nevra("-1.0-1.x86_64", None, "", "", "", "rpm")),
    ("openssl_3.0.11-1~deb12u2_amd64.deb", Nevra("openssl", None, "3.0.11", "1~deb12u2", "amd64", "deb")),
    ("libc6_2.36-9+deb12u4_amd64.deb", Nevra("libc6", None, "2.36", "9+deb12u4", "amd64", "deb")),
    ("tzdata_2024a-0+deb12u1_all.deb", Nevra("tzdata", None, "2024a", "0+deb12u1", "all", "deb")),
    ("base-files_12.4+deb12u5_amd64.deb", Nevra("base-files", None, "12.4+deb12u5", "", "amd64", "deb")),
    ("libfoo_1%3a2.3-4_arm64.deb", Nevra("libfoo", 1, "2.3", "4", "arm64", "deb")),
    ("libfoo_1%3A2.3-4_arm64.deb", Nevra("libfoo", 1, "2.3", "4", "arm64", "deb")),
    ("bar_2:1.0-1-2_i386.deb", Nevra("bar", 2, "1.0-1", "2", "i386", "deb")),
    ("python3.11_3.11.2-6_amd64.deb", Nevra("python3.11", None, "3.11.2", "6", "amd64", "deb")),
    ("linux-image-6.1.0-18-amd64_6.1.76-1_amd64.deb",
     Nevra("linux-image-6.1.0-18-amd64", None, "6.1.76", "1", "amd64", "deb")),
    ("debian-installer_20230607_amd64.udeb", Nevra("debian-installer", None, "20230607", "", "amd64", "deb")),
    ("foo_1.0.deb", Nevra("foo", None, "1.0", "", "", "deb")),
    ("weird.deb", Nevra("weird", None, "", "", "", "deb")),
    ("a_b_c_d.deb", Nevra("a_b_c_d", None, "", "", "", "deb")),
    ("README.txt", Nevra("README.txt", None, "", "", "", "other")),
    ("archive.tar.gz", Nevra("archive.tar.gz", None, "", "", "", "other")),
    ("noextension", Nevra("noextension", None, "", "", "", "other")),
    (".rpm", Nevra(".rpm", None, "", "", "", "other")),
    ("openssl-3.0.7-27.el9.x86_64.rpm.sig",
     Nevra("openssl-3.0.7-27.el9.x86_64.rpm.sig", None, "", "", "", "other")),
]


@pytest.mark.parametrize("file_name, expected", NAMES, ids=[name for name, _ in NAMES])
def test_parse_file_name(file_name, expected):
    assert parse_file_name(file_name) == expected


@pytest.mark.parametrize("version, expected", [
    ("1:3.0.11-1~deb12u2", (1, "3.0.11", "1~deb12u2")),
    ("1%3a2.3-4", (1, "2.3", "4")),
    ("2.3", (None, "2.3", "")),
    ("2.3-4-5", (None, "2.3-4", "5")),
    ("-5", (None, "-5", "")),
    ("x:1.0-1", (None, "x:1.0", "1")),
    ("99999999999:1.0-1", (None, "99999999999:1.0", "1")),
])
def test_split_deb_version(version, expected):
    assert split_deb_version(version) == expected


def test_random_bytes_named_like_a_package_use_the_name(tmp_path):
    path = write(tmp_path, "openssl-3.0.7-27.el9.x86_64.rpm", random.Random(1).randbytes(5000))
    assert identify(path) == NAMES[1][1]


# ---- real headers ------------------------------------------------------------------------------------------
def test_rpm_header(tmp_path):
    path = write(tmp_path, "x.rpm", build_rpm())
    assert read_header(path) == Nevra("openssl", 1, "3.0.7", "27.el9", "x86_64", "rpm")


def test_rpm_header_without_epoch(tmp_path):
    content = build_rpm(name="python3-libs", version="3.9.18", release="1.el9", epoch=None)
    path = write(tmp_path, "x.rpm", content)
    assert read_header(path) == Nevra("python3-libs", None, "3.9.18", "1.el9", "x86_64", "rpm")


def test_source_rpm_arch_is_src(tmp_path):
    path = write(tmp_path, "openssl-3.0.7-27.el9.src.rpm", build_rpm(source=True))
    assert identify(path).arch == "src"
    nosrc = write(tmp_path, "openssl-3.0.7-27.el9.nosrc.rpm", build_rpm(source=True))
    assert identify(nosrc).arch == "nosrc"


def test_header_wins_over_file_name(tmp_path):
    path = write(tmp_path, "misnamed-9.9-9.noarch.rpm", build_rpm())
    assert identify(path) == Nevra("openssl", 1, "3.0.7", "27.el9", "x86_64", "rpm")
    # Content decides the type too: an rpm under any name is an rpm.
    assert identify(write(tmp_path, "download.bin", build_rpm())).type == "rpm"


@pytest.mark.parametrize("compression", ["gz", "xz", ""])
def test_deb_control(tmp_path, compression):
    path = write(tmp_path, "x.deb", build_deb(compression=compression))
    assert read_header(path) == Nevra("openssl", 1, "3.0.11", "1~deb12u2", "amd64", "deb")


def test_deb_control_fields_are_case_insensitive_and_first_paragraph_only(tmp_path):
    control = b"package: curl\nVERSION: 7.88.1-10+deb12u5\nArchitecture: arm64\n\nPackage: other\n"
    assert read_header(write(tmp_path, "x.deb", build_deb(control))) == Nevra(
        "curl", None, "7.88.1", "10+deb12u5", "arm64", "deb")


def test_deb_header_wins_over_file_name(tmp_path):
    path = write(tmp_path, "openssl_0.1-1_i386.deb", build_deb())
    assert identify(path) == Nevra("openssl", 1, "3.0.11", "1~deb12u2", "amd64", "deb")


def test_zstd_control_falls_back_to_file_name(tmp_path):
    content = ar_archive([("debian-binary", b"2.0\n"), ("control.tar.zst", b"\x28\xb5\x2f\xfd" + b"\0" * 40)])
    path = write(tmp_path, "openssl_3.0.11-1~deb12u2_amd64.deb", content)
    assert read_header(path) is None
    assert identify(path) == NAMES[15][1]


# ---- hostile input: a clean fallback, never an exception ---------------------------------------------------
def intro(entries: int, store: int) -> bytes:
    """A bare rpm header intro declaring ``entries`` index entries and a ``store``-byte data store."""
    return b"\x8e\xad\xe8\x01" + b"\0" * 4 + struct.pack(">II", entries, store)


def rpm_with(entries_section: bytes, signature: bytes | None = None) -> bytes:
    lead = (b"\xed\xab\xee\xdb" + b"\0" * 92)
    if signature is None:
        signature = rpm_header_section([])
    return lead + signature + entries_section


HOSTILE_RPMS = {
    "lead only": b"\xed\xab\xee\xdb" + b"\0" * 92,
    "short lead": b"\xed\xab\xee\xdb\x03",
    "bad signature magic": rpm_with(rpm_header_section([]), signature=b"\0" * 16),
    "huge signature index": rpm_with(b"", signature=intro(2**32 - 1, 0)),
    "huge signature store": rpm_with(b"", signature=intro(1, 2**31)),
    "signature beyond the end": rpm_with(b"", signature=intro(9, 90000)),
    "huge main index": rpm_with(b"\x8e\xad\xe8\x01" + b"\0" * 4 + struct.pack(">II", 70000, 10)),
    "index beyond the end": rpm_with(b"\x8e\xad\xe8\x01" + b"\0" * 4 + struct.pack(">II", 1000, 10)),
    "no name tag": rpm_with(rpm_header_section([(1001, 6, b"1.0\0", 1), (1002, 6, b"1\0", 1),
                                                (1022, 6, b"x86_64\0", 1)])),
    "offset outside store": rpm_with(b"\x8e\xad\xe8\x01" + b"\0" * 4 + struct.pack(">II", 1, 4)
                                     + struct.pack(">iiii", 1000, 6, 4000, 1) + b"abc\0"),
    "negative offset": rpm_with(b"\x8e\xad\xe8\x01" + b"\0" * 4 + struct.pack(">II", 1, 4)
                                + struct.pack(">iiii", 1000, 6, -8, 1) + b"abc\0"),
    "unterminated string": rpm_with(rpm_header_section([(1000, 6, b"a" * 5000, 1), (1001, 6, b"1\0", 1),
                                                        (1002, 6, b"1\0", 1), (1022, 6, b"x\0", 1)])),
    "control characters": rpm_with(rpm_header_section([(1000, 6, b"a\nb\0", 1), (1001, 6, b"1\0", 1),
                                                       (1002, 6, b"1\0", 1), (1022, 6, b"x\0", 1)])),
    "non-ascii": rpm_with(rpm_header_section([(1000, 6, b"\xff\xfe\0", 1), (1001, 6, b"1\0", 1),
                                              (1002, 6, b"1\0", 1), (1022, 6, b"x\0", 1)])),
    "epoch beyond the store": rpm_with(b"\x8e\xad\xe8\x01" + b"\0" * 4 + struct.pack(">II", 1, 2)
                                       + struct.pack(">iiii", 1003, 4, 0, 1) + b"\0\0"),
}


@pytest.mark.parametrize("content", HOSTILE_RPMS.values(), ids=HOSTILE_RPMS.keys())
def test_hostile_rpm_falls_back_to_the_name(tmp_path, content):
    path = write(tmp_path, "openssl-3.0.7-27.el9.x86_64.rpm", content)
    assert read_header(path) is None
    assert identify(path) == NAMES[1][1]


def gzip_bomb() -> bytes:
    """A control.tar.gz that inflates far past the decompression bound, with no control file in reach."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("./zeros")
        info.size = 48 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
        control = tarfile.TarInfo("./control")
        control.size = len(CONTROL)
        tar.addfile(control, io.BytesIO(CONTROL))
    return buffer.getvalue()


HOSTILE_DEBS = {
    "magic only": b"!<arch>\n",
    "short member header": b"!<arch>\ndebian-binary   ",
    "bad member magic": ar_archive([("debian-binary", b"2.0\n")]).replace(b"`\n", b"XX", 1),
    "non-numeric size": b"!<arch>\n" + f"{'control.tar.gz':<16}{0:<12}{0:<6}{0:<6}{100644:<8}".encode()
                        + b"-1        `\n",
    "huge declared size": b"!<arch>\n" + f"{'control.tar.gz':<16}{0:<12}{0:<6}{0:<6}{100644:<8}".encode()
                          + b"9999999999`\n" + b"\0" * 100,
    "size beyond the end": b"!<arch>\n" + f"{'control.tar.gz':<16}{0:<12}{0:<6}{0:<6}{100644:<8}".encode()
                           + b"5000      `\n" + b"\0" * 100,
    "no control member": ar_archive([("debian-binary", b"2.0\n"), ("data.tar.gz", b"x"), ("a", b""),
                                     ("b", b""), ("control.tar.gz", b"late")]),
    "garbage gzip": ar_archive([("debian-binary", b"2.0\n"), ("control.tar.gz", b"\x1f\x8b" + b"\xff" * 50)]),
    "garbage xz": ar_archive([("debian-binary", b"2.0\n"), ("control.tar.xz", b"\xfd7zXZ\0" + b"\xff" * 50)]),
    "gzip bomb": ar_archive([("debian-binary", b"2.0\n"), ("control.tar.gz", gzip_bomb())]),
    "control without version": build_deb(b"Package: openssl\nArchitecture: amd64\n"),
    "control with spaces": build_deb(b"Package: open ssl\nVersion: 1.0\nArchitecture: amd64\n"),
    "control not utf-8": build_deb(b"Package: \xff\xfe\nVersion: 1.0\nArchitecture: amd64\n"),
    "control is a directory": ar_archive([("debian-binary", b"2.0\n"),
                                          ("control.tar", tar_bytes({"./x": b""}, "w"))]),
    "unknown compression": ar_archive([("debian-binary", b"2.0\n"), ("control.tar.bz2", b"BZh9")]),
}


@pytest.mark.parametrize("content", HOSTILE_DEBS.values(), ids=HOSTILE_DEBS.keys())
def test_hostile_deb_falls_back_to_the_name(tmp_path, content):
    path = write(tmp_path, "openssl_3.0.11-1~deb12u2_amd64.deb", content)
    assert read_header(path) is None
    assert identify(path) == NAMES[15][1]


def test_decompression_is_bounded(monkeypatch, tmp_path):
    seen = []
    real = nevra_module.zlib.decompressobj

    class Spy:
        def __init__(self, *args, **kwargs):
            self.inner = real(*args, **kwargs)

        def decompress(self, data, max_length=0):
            seen.append(max_length)
            return self.inner.decompress(data, max_length)

    monkeypatch.setattr(nevra_module.zlib, "decompressobj", Spy)
    bomb = ar_archive([("debian-binary", b"2.0\n"), ("control.tar.gz", gzip_bomb())])
    path = write(tmp_path, "x.deb", bomb)
    assert read_header(path) is None
    assert seen == [nevra_module.MAX_CONTROL_TAR]


@pytest.mark.parametrize("valid", [build_rpm(), build_deb(), build_deb(compression="xz")],
                         ids=["rpm", "deb", "xz"])
def test_every_truncation_is_clean(tmp_path, valid):
    path = tmp_path / "p"
    complete = read_header(write(tmp_path, "p", valid))
    for length in range(len(valid)):
        path.write_bytes(valid[:length])
        assert read_header(path) in (None, complete)


@pytest.mark.parametrize("valid", [build_rpm(), build_deb()], ids=["rpm", "deb"])
def test_random_corruption_is_clean(tmp_path, valid):
    rng = random.Random(20261126)
    path = tmp_path / "p"
    for _ in range(300):
        corrupted = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        path.write_bytes(bytes(corrupted))
        result = read_header(path)
        assert result is None or isinstance(result, Nevra)


def test_unreadable_file_has_no_header(tmp_path):
    assert read_header(tmp_path / "missing.rpm") is None
    assert read_header(tmp_path) is None
