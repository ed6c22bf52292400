"""Layout of a ``multipart/byteranges`` body (RFC 9110 section 14.6) for a multi-range 206 answer.

The layout (the bytes before each part, the closing delimiter and the exact total length) is computed before
any byte of the representation is read, so the answer carries an exact Content-Length and each part streams
straight from storage.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from app.conditional import ByteRange

# RFC 2046 5.1.1: 1 to 70 bchars, the last one not a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A field value that cannot break out of its header line: visible ASCII, space and tab only.
_FIELD_VALUE = re.compile(r"[\x20-\x7e\t]*")


def new_boundary() -> str:
    """A fresh random boundary; 128 random bits make a collision with the content negligible."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class MultipartLayout:
    """The bytes around each part of a multipart/byteranges body, its exact length and its Content-Type."""

    parts: tuple[tuple[bytes, ByteRange], ...]
    closing: bytes
    content_length: int
    content_type: str


def multipart_layout(ranges: Sequence[ByteRange], size: int, part_content_type: str,
                     boundary: str) -> MultipartLayout:
    """Lay out a multipart/byteranges body sending ``ranges`` of a ``size``-byte representation."""
    _check(ranges, size, part_content_type, boundary)
    parts = tuple((_preamble(boundary, part_content_type, byte_range, size, first=index == 0), byte_range)
                  for index, byte_range in enumerate(ranges))
    closing = f"\r\n--{boundary}--\r\n".encode("ascii")
    length = sum(len(preamble) + byte_range.length for preamble, byte_range in parts) + len(closing)
    return MultipartLayout(parts, closing, length, _content_type(boundary))


def _check(ranges: Sequence[ByteRange], size: int, part_content_type: str, boundary: str) -> None:
    """Refuse inputs that would produce a body whose framing or length is wrong."""
    if not ranges:
        raise ValueError("a multipart/byteranges body needs at least one range")
    if any(byte_range.end >= size for byte_range in ranges):
        raise ValueError("a range extends past the end of the representation")
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError("invalid multipart boundary")
    if not _FIELD_VALUE.fullmatch(part_content_type):
        raise ValueError("part content type must be printable ASCII on one line")


def _preamble(boundary: str, part_content_type: str, byte_range: ByteRange, size: int, *,
              first: bool) -> bytes:
    """The delimiter and header fields that open one part."""
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1); the first one starts the body.
    lead = "" if first else "\r\n"
    return (f"{lead}--{boundary}\r\n"
            f"Content-Type: {part_content_type}\r\n"
            f"Content-Range: {byte_range.content_range(size)}\r\n\r\n").encode("ascii")


def _content_type(boundary: str) -> str:
    """The response Content-Type; a boundary with characters outside token must be quoted."""
    value = boundary if _TOKEN.fullmatch(boundary) else f'"{boundary}"'
    return f"multipart/byteranges; boundary={value}"
