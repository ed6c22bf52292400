"""RFC 9110 preconditions (13.2.2) and byte ranges (14) for GET/HEAD of one static representation.

Werkzeug's ``make_conditional`` (3.1) gets these wrong in ways clients notice (measured on a 100-byte body): it
answers 206 where a matching If-None-Match requires 304, ignores If-Unmodified-Since, rejects several ranges and unknown
units with 416, serves ``bytes=-0``, and honours weak or newer If-Range validators. This module decides the
status and the ranges itself. It is pure (no Flask, no I/O), so the view only renders the decision and every
rule is testable with a plain dict of headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

# More range-specs than this are ignored (200): many tiny ranges are a known amplification attack.
MAX_RANGES = 16

_OWS = " \t"
_STAR = "*"


@dataclass(frozen=True)
class ByteRange:
    """An inclusive span ``start..end`` of byte offsets in a representation."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid byte range {self.start}-{self.end}")

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """The Content-Range field value of this range within a representation of ``size`` bytes."""
        return f"bytes {self.start}-{self.end}/{size}"


@dataclass(frozen=True)
class Representation:
    """The validators and length of the selected representation."""

    etag: str
    last_modified: datetime | None
    size: int


@dataclass(frozen=True)
class Decision:
    """The status to answer with and, for 206, the sorted, coalesced ranges to send."""

    status: int
    ranges: tuple[ByteRange, ...] = ()


def unsatisfiable_content_range(size: int) -> str:
    """The Content-Range field value of a 416 answer (RFC 9110 14.4)."""
    return f"bytes */{size}"


def evaluate(method: str, headers: Mapping[str, str], rep: Representation,
             max_ranges: int = MAX_RANGES) -> Decision:
    """Decide the answer to a GET or HEAD of ``rep`` from its conditional and Range header fields."""
    failed = _precondition_status(headers, rep)
    if failed is not None:
        return Decision(failed)
    if method != "GET":  # Range applies to GET only (RFC 9110 14.2): HEAD gets the 200 headers.
        return Decision(200)
    return _range_decision(headers, rep, max_ranges)


# --- Preconditions (RFC 9110 13.1, evaluated in the order of 13.2.2) ---


def _precondition_status(headers: Mapping[str, str], rep: Representation) -> int | None:
    """412 or 304 when a precondition decides the answer, else None."""
    if_match = headers.get("If-Match")
    if_none_match = headers.get("If-None-Match")
    if if_match is None and if_none_match == rep.etag and headers.get("If-Unmodified-Since") is None:
        # The usual revalidation: the one tag we sent, sent back as is (weak comparison matches, 13.1.2). Nothing
        # earlier in 13.2.2 applies, so this is the general rule's answer without parsing a list.
        return 304
    current = _parse_entity_tag(rep.etag)
    last_modified = _whole_seconds(rep.last_modified) if rep.last_modified is not None else None
    if if_match is not None:
        if not _field_matches(if_match, current, strong=True):
            return 412
    elif _is_after(last_modified, headers.get("If-Unmodified-Since")):
        return 412
    if if_none_match is not None:
        if _field_matches(if_none_match, current, strong=False):
            return 304
    elif last_modified is not None and _is_not_after(last_modified, headers.get("If-Modified-Since")):
        return 304
    return None


def _is_after(last_modified: datetime | None, field: str | None) -> bool:
    """True when the field is one valid HTTP-date and the representation changed after it."""
    date = parse_http_date(field) if field is not None else None
    return date is not None and last_modified is not None and last_modified > date


def _is_not_after(last_modified: datetime, field: str | None) -> bool:
    """True when the field is one valid HTTP-date and the representation has not changed since."""
    date = parse_http_date(field) if field is not None else None
    return date is not None and last_modified <= date


def _whole_seconds(moment: datetime) -> datetime:
    """UTC at whole-second precision, the precision of an HTTP-date; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


# --- Entity tags (RFC 9110 8.8.3) ---


@dataclass(frozen=True)
class _EntityTag:
    weak: bool
    opaque: str


# etagc = %x21 / %x23-7E / obs-text; header values arrive as latin-1 text, so obs-text is \x80-\xff.
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
# One list element: quoted strings (commas inside them do not split) and other characters up to a comma.
# A single character per repetition keeps the pattern linear on hostile input.
_LIST_ELEMENT = re.compile(r'(?:"[^"]*"?|[^,"])+')


def _parse_entity_tag(text: str) -> _EntityTag | None:
    """One entity-tag, or None when the text is anything else."""
    match = _ENTITY_TAG.fullmatch(text.strip(_OWS))
    return _EntityTag(match.group(1) is not None, match.group(2)) if match else None


def _list_elements(value: str) -> list[str]:
    """The non-empty elements of a comma-separated field value (RFC 9110 5.6.1), trimmed of whitespace."""
    elements = (match.group().strip(_OWS) for match in _LIST_ELEMENT.finditer(value))
    return [element for element in elements if element]


def _parse_etag_field(value: str) -> str | tuple[_EntityTag, ...]:
    """``*`` or the valid entity-tags of an If-Match / If-None-Match value; unquoted garbage is skipped."""
    elements = _list_elements(value)
    # A field received twice arrives joined ("*, *"): still "*".
    if elements and all(element == _STAR for element in elements):
        return _STAR
    return tuple(tag for tag in map(_parse_entity_tag, elements) if tag is not None)


def _field_matches(value: str, current: _EntityTag | None, *, strong: bool) -> bool:
    """Whether an If-Match (strong) or If-None-Match (weak) value matches the current entity-tag."""
    parsed = _parse_etag_field(value)
    if parsed == _STAR:
        return True  # the representation exists
    if current is None:
        return False
    compare = _strong_match if strong else _weak_match
    return any(compare(tag, current) for tag in parsed)


def _strong_match(a: _EntityTag, b: _EntityTag) -> bool:
    """Strong comparison (RFC 9110 8.8.3.2): both strong and the same opaque tag."""
    return not a.weak and not b.weak and a.opaque == b.opaque


def _weak_match(a: _EntityTag, b: _EntityTag) -> bool:
    """Weak comparison (RFC 9110 8.8.3.2): the same opaque tag, weakness ignored."""
    return a.opaque == b.opaque


# --- HTTP-date (RFC 9110 5.6.7) ---

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY_NAME = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_NAME_L = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_TIME = "(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
# HTTP-date is case-sensitive and has exactly one space between its parts; [0-9] rather than \d, which
# takes any Unicode digit.
_IMF_FIXDATE = re.compile(rf"{_DAY_NAME}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT")
_RFC850_DATE = re.compile(rf"{_DAY_NAME_L}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT")
_ASCTIME_DATE = re.compile(rf"{_DAY_NAME} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})")


def parse_http_date(value: str, now: datetime | None = None) -> datetime | None:
    """An IMF-fixdate, RFC 850 or asctime date as aware UTC, or None for anything else (one date only)."""
    value = value.strip(_OWS)
    for pattern in (_IMF_FIXDATE, _ASCTIME_DATE):
        match = pattern.fullmatch(value)
        if match:
            return _datetime_of(match, int(match.group("year")))
    match = _RFC850_DATE.fullmatch(value)
    if match:
        return _rfc850_datetime(match, now or datetime.now(UTC))
    return None


def _datetime_of(match: re.Match[str], year: int) -> datetime | None:
    """The matched calendar fields as a datetime, or None when they name no real instant (Feb 30, 25:00)."""
    try:
        return datetime(year, _MONTHS.index(match.group("month")) + 1, int(match.group("day")),
                        int(match.group("hour")), int(match.group("minute")), int(match.group("second")),
                        tzinfo=UTC)
    except ValueError:
        return None


def _rfc850_datetime(match: re.Match[str], now: datetime) -> datetime | None:
    """RFC 850's two-digit year: more than 50 years in the future means the past century (RFC 9110 5.6.7)."""
    year = now.year - now.year % 100 + int(match.group("year"))
    candidate = _datetime_of(match, year)
    if candidate is not None and candidate > _years_later(now, 50):
        return _datetime_of(match, year - 100)
    return candidate


def _years_later(moment: datetime, years: int) -> datetime:
    """The same calendar moment ``years`` later (Feb 29 becomes Feb 28 in a common year)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


# --- Range (RFC 9110 14.1, 14.2) and If-Range (13.1.5) ---

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_Spec = tuple[str, str]  # (first-pos digits, last-pos digits); an empty first-pos means a suffix-range


def _range_decision(headers: Mapping[str, str], rep: Representation, max_ranges: int) -> Decision:
    """206 with ranges, 416, or 200 when the Range field is absent, invalid, unknown or not applicable."""
    value = headers.get("Range")
    if value is None or rep.size == 0:  # an empty representation is always sent whole
        return Decision(200)
    specs = _parse_byte_ranges(value, max_ranges)
    if specs is None or not _if_range_holds(headers.get("If-Range"), rep):
        return Decision(200)
    ranges = [byte_range for spec in specs if (byte_range := _satisfiable(spec, rep.size)) is not None]
    if not ranges:
        return Decision(416)
    return Decision(206, _coalesce(ranges))


def _parse_byte_ranges(value: str, max_ranges: int) -> list[_Spec] | None:
    """The range-specs of a ``bytes=`` Range value, or None to ignore it (invalid, other unit, too many)."""
    unit, equals, range_set = value.strip(_OWS).partition("=")
    if not equals or not unit.isascii() or unit.lower() != "bytes":
        return None
    specs: list[_Spec] = []
    for element in range_set.split(","):
        element = element.strip(_OWS)
        if not element:
            continue  # empty list elements are tolerated (RFC 9110 5.6.1)
        if len(specs) == max_ranges:
            return None
        spec = _parse_range_spec(element)
        if spec is None:
            return None
        specs.append(spec)
    return specs or None


def _parse_range_spec(element: str) -> _Spec | None:
    """One int-range or suffix-range, or None when the element is neither."""
    match = _RANGE_SPEC.fullmatch(element)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if first and last and _digits_key(last) < _digits_key(first):
        return None  # last-pos < first-pos makes the whole field invalid
    return first, last


def _digits_key(digits: str) -> tuple[int, str]:
    """Orders decimal strings by value without int(), which refuses strings over 4300 digits."""
    significant = digits.lstrip("0")
    return len(significant), significant


def _capped(digits: str, cap: int) -> int:
    """min(value, cap) of a decimal string of any length."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(cap)):
        return cap
    return min(int(significant), cap)


def _satisfiable(spec: _Spec, size: int) -> ByteRange | None:
    """The bytes a range-spec selects in a non-empty representation, or None when it selects none."""
    first, last = spec
    if not first:
        suffix = _capped(last, size)
        return ByteRange(size - suffix, size - 1) if suffix > 0 else None
    start = _capped(first, size)
    if start >= size:
        return None
    end = size - 1 if not last else min(_capped(last, size), size - 1)
    return ByteRange(start, end)


def _coalesce(ranges: list[ByteRange]) -> tuple[ByteRange, ...]:
    """Sorted ranges with overlapping and adjacent ones merged, so no byte is sent twice."""
    merged: list[ByteRange] = []
    for byte_range in sorted(ranges, key=lambda r: r.start):
        if merged and byte_range.start <= merged[-1].end + 1:
            if byte_range.end > merged[-1].end:
                merged[-1] = ByteRange(merged[-1].start, byte_range.end)
        else:
            merged.append(byte_range)
    return tuple(merged)


def _if_range_holds(value: str | None, rep: Representation) -> bool:
    """Whether Range may be honoured: no If-Range, or one matching a strong validator (RFC 9110 13.1.5)."""
    if value is None:
        return True
    text = value.strip(_OWS)
    if text.startswith(('"', "W/")):
        tag, current = _parse_entity_tag(text), _parse_entity_tag(rep.etag)
        return tag is not None and current is not None and _strong_match(tag, current)
    date = parse_http_date(text)
    # A date validator matches only when it is exactly the Last-Modified.
    return date is not None and rep.last_modified is not None and _whole_seconds(rep.last_modified) == date
