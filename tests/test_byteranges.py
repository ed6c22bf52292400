"""multipart/byteranges layout: an assembled body parses back to the right parts, at the announced length."""

from __future__ import annotations

import email.parser
import email.policy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.byteranges import MultipartLayout, multipart_layout, new_boundary
from app.conditional import ByteRange

DATA = bytes(range(256)) * 4 + b"\r\n--\r\n\n\r" * 3  # binary, with line breaks and dashes inside the parts
SIZE = len(DATA)


def assemble(layout: MultipartLayout, data: bytes) -> bytes:
    """The body the view streams: each preamble, then its range's bytes, then the closing delimiter."""
    return b"".join(preamble + data[r.start:r.end + 1] for preamble, r in layout.parts) + layout.closing


def manual_parse(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a body by RFC 2046: CRLF "--" boundary delimits; the first delimiter starts the body."""
    delimiter = b"\r\n--" + boundary.encode()
    assert body.startswith(delimiter[2:] + b"\r\n")
    assert body.endswith(delimiter + b"--\r\n")
    inner = body[len(delimiter) - 2:-len(delimiter + b"--\r\n")]
    parts = []
    for chunk in inner.split(delimiter):
        assert chunk.startswith(b"\r\n")
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        fields = dict(line.decode("ascii").split(": ", 1) for line in head.split(b"\r\n"))
        parts.append((fields, payload))
    return parts


@pytest.mark.parametrize("ranges", [
    [ByteRange(0, 0), ByteRange(SIZE - 1, SIZE - 1)],
    [ByteRange(0, 9), ByteRange(20, 29), ByteRange(1000, SIZE - 1)],
    [ByteRange(5, 1030)],
    [ByteRange(i * 10, i * 10 + 4) for i in range(16)],
])
def test_body_parses_with_email_parser(ranges: list[ByteRange]) -> None:
    boundary = new_boundary()
    layout = multipart_layout(ranges, SIZE, "application/x-rpm", boundary)
    body = assemble(layout, DATA)
    assert layout.content_length == len(body)
    assert layout.content_type == f"multipart/byteranges; boundary={boundary}"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {layout.content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart()
    parts = list(message.iter_parts())
    assert len(parts) == len(ranges)
    for part, expected in zip(parts, ranges, strict=True):
        assert part["Content-Type"] == "application/x-rpm"
        assert part["Content-Range"] == f"bytes {expected.start}-{expected.end}/{SIZE}"
        assert part.get_payload(decode=True) == DATA[expected.start:expected.end + 1]
    assert message.defects == []


@st.composite
def disjoint_ranges(draw: st.DrawFn) -> list[ByteRange]:
    """1 to 16 sorted, non-adjacent ranges inside DATA."""
    cuts = sorted(draw(st.sets(st.integers(0, SIZE - 1), min_size=1, max_size=32)))
    ranges = [ByteRange(a, b) for a, b in zip(cuts[::2], cuts[1::2] + [cuts[-1]], strict=False)]
    return [r for i, r in enumerate(ranges) if i == 0 or r.start > ranges[i - 1].end + 1][:16]


@settings(max_examples=200, deadline=None)
@given(disjoint_ranges(), st.sampled_from(["application/octet-stream", "text/plain; charset=utf-8"]))
def test_layout_round_trips(ranges: list[ByteRange], content_type: str) -> None:
    boundary = new_boundary()
    layout = multipart_layout(ranges, SIZE, content_type, boundary)
    body = assemble(layout, DATA)
    assert layout.content_length == len(body)
    parsed = manual_parse(body, boundary)
    assert [payload for _, payload in parsed] == [DATA[r.start:r.end + 1] for r in ranges]
    assert [fields for fields, _ in parsed] == [
        {"Content-Type": content_type, "Content-Range": r.content_range(SIZE)} for r in ranges]


def test_exact_bytes() -> None:
    layout = multipart_layout([ByteRange(0, 1), ByteRange(5, 5)], 10, "text/plain", "B")
    assert layout.parts == (
        (b"--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n", ByteRange(0, 1)),
        (b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-5/10\r\n\r\n", ByteRange(5, 5)),
    )
    assert layout.closing == b"\r\n--B--\r\n"
    assert layout.content_length == sum(len(p) for p, _ in layout.parts) + 3 + len(layout.closing)


def test_new_boundary_is_random_and_valid() -> None:
    boundaries = {new_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", b) for b in boundaries)


def test_boundary_outside_token_is_quoted() -> None:
    layout = multipart_layout([ByteRange(0, 0)], 1, "text/plain", "a:b c")
    assert layout.content_type == 'multipart/byteranges; boundary="a:b c"'


@pytest.mark.parametrize(("ranges", "size", "content_type", "boundary"), [
    ([], 10, "text/plain", "B"),
    ([ByteRange(0, 10)], 10, "text/plain", "B"),
    ([ByteRange(0, 1)], 10, "text/plain\r\nX-Evil: 1", "B"),
    ([ByteRange(0, 1)], 10, "text/plain", ""),
    ([ByteRange(0, 1)], 10, "text/plain", "x" * 71),
    ([ByteRange(0, 1)], 10, "text/plain", "ends with space "),
    ([ByteRange(0, 1)], 10, "text/plain", 'quote"'),
    ([ByteRange(0, 1)], 10, "text/plain", "bo\r\nundary"),
])
def test_refuses_inputs_that_would_break_framing(ranges: list[ByteRange], size: int, content_type: str,
                                                 boundary: str) -> None:
    with pytest.raises(ValueError):
        multipart_layout(ranges, size, content_type, boundary)
