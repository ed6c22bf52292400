"""RFC 9110 preconditions and Range: a rule table, werkzeug's deviations, a reference-model property test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import EnvironHeaders
from werkzeug.test import EnvironBuilder

from app.conditional import (
    MAX_RANGES,
    ByteRange,
    Decision,
    Representation,
    evaluate,
    parse_http_date,
    unsatisfiable_content_range,
)

LM = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
REP = Representation(etag='"abc"', last_modified=LM, size=100)
NO_DATE = Representation(etag='"abc"', last_modified=None, size=100)
EMPTY = Representation(etag='"abc"', last_modified=LM, size=0)

LM_IMF = "Sun, 06 Nov 1994 08:49:37 GMT"
LM_850 = "Sunday, 06-Nov-94 08:49:37 GMT"
LM_ASC = "Sun Nov  6 08:49:37 1994"
BEFORE = "Sun, 06 Nov 1994 08:49:36 GMT"
AFTER = "Sun, 06 Nov 1994 08:49:38 GMT"
BEFORE_850 = "Saturday, 05-Nov-94 08:49:37 GMT"
BEFORE_ASC = "Sat Nov  5 08:49:37 1994"
AFTER_850 = "Monday, 07-Nov-94 08:49:37 GMT"
AFTER_ASC = "Mon Nov  7 08:49:37 1994"
HUGE = "9" * 5000  # int() refuses strings over 4300 digits


def row(name: str, headers: dict[str, str], status: int, ranges: list[tuple[int, int]] | None = None,
        method: str = "GET", rep: Representation = REP):  # noqa: ANN201
    """One table row: request, representation and the RFC 9110 answer."""
    return pytest.param(method, headers, rep, status, tuple(ranges or ()), id=name)


def rng(spec: str, **more: str) -> dict[str, str]:
    """Headers with a Range field."""
    return {"Range": spec, **more}


SIXTEEN = ",".join(f"{i * 5}-{i * 5}" for i in range(16))
SEVENTEEN = ",".join(f"{i * 5}-{i * 5}" for i in range(17))
THOUSAND = ",".join(f"{i % 100}-{i % 100}" for i in range(1000))

TABLE = [
    # Every row of RESEARCH.md's werkzeug table, with the RFC 9110 answer.
    row("wz-inm-match-beats-range", rng("bytes=0-9", **{"If-None-Match": '"abc"'}), 304),
    row("wz-if-match-and-inm-both-match", {"If-Match": '"abc"', "If-None-Match": '"abc"'}, 304),
    row("wz-ius-before-last-modified", {"If-Unmodified-Since": BEFORE}, 412),
    row("wz-if-match-fails", {"If-Match": '"zzz"'}, 412),
    row("wz-several-ranges", rng("bytes=0-9,20-29"), 206, [(0, 9), (20, 29)]),
    row("wz-unknown-unit", rng("items=0-1"), 200),
    row("wz-suffix-zero", rng("bytes=-0"), 416),
    row("wz-if-range-weak-etag", rng("bytes=0-9", **{"If-Range": 'W/"abc"'}), 200),
    row("wz-if-range-date-newer", rng("bytes=0-9", **{"If-Range": AFTER}), 200),
    row("wz-head-range", rng("bytes=0-9"), 200, method="HEAD"),
    # No conditionals.
    row("plain-get", {}, 200),
    row("plain-head", {}, 200, method="HEAD"),
    # If-Match: strong comparison, lists, "*".
    row("im-star", {"If-Match": "*"}, 200),
    row("im-star-repeated", {"If-Match": "*, *"}, 200),
    row("im-strong-match", {"If-Match": '"abc"'}, 200),
    row("im-weak-never-matches", {"If-Match": 'W/"abc"'}, 412),
    row("im-list-match", {"If-Match": '"x", "abc"'}, 200),
    row("im-list-weak-only", {"If-Match": '"x", W/"abc"'}, 412),
    row("im-list-no-space", {"If-Match": '"x","abc"'}, 200),
    row("im-unquoted-garbage", {"If-Match": "abc"}, 412),
    row("im-garbage-skipped", {"If-Match": 'garbage, "abc"'}, 200),
    row("im-unterminated", {"If-Match": '"abc'}, 412),
    row("im-empty", {"If-Match": ""}, 412),
    row("im-lowercase-w", {"If-Match": 'w/"abc"'}, 412),
    row("im-star-in-list-is-not-star", {"If-Match": '*, "x"'}, 412),
    row("im-non-latin1", {"If-Match": '"\u2603"'}, 412),
    row("im-comma-inside-tag", {"If-Match": '"x", "a,b"'}, 200, rep=Representation('"a,b"', LM, 100)),
    row("im-match-ignores-ius", {"If-Match": '"abc"', "If-Unmodified-Since": BEFORE}, 200),
    row("im-fail-beats-inm", {"If-Match": '"x"', "If-None-Match": '"abc"'}, 412),
    row("im-fail-beats-range", rng("bytes=0-9", **{"If-Match": '"x"'}), 412),
    row("im-match-then-range", rng("bytes=0-9", **{"If-Match": '"abc"'}), 206, [(0, 9)]),
    # If-Unmodified-Since.
    row("ius-equal", {"If-Unmodified-Since": LM_IMF}, 200),
    row("ius-after", {"If-Unmodified-Since": AFTER}, 200),
    row("ius-before-rfc850", {"If-Unmodified-Since": BEFORE_850}, 412),
    row("ius-before-asctime", {"If-Unmodified-Since": BEFORE_ASC}, 412),
    row("ius-invalid", {"If-Unmodified-Since": "yesterday"}, 200),
    row("ius-two-dates", {"If-Unmodified-Since": f"{BEFORE}, {BEFORE}"}, 200),
    row("ius-lowercase", {"If-Unmodified-Since": BEFORE.lower()}, 200),
    row("ius-iso8601", {"If-Unmodified-Since": "1994-11-06T08:49:36Z"}, 200),
    row("ius-unknown-last-modified", {"If-Unmodified-Since": BEFORE}, 200, rep=NO_DATE),
    # If-None-Match: weak comparison, lists, "*".
    row("inm-strong", {"If-None-Match": '"abc"'}, 304),
    row("inm-weak-matches", {"If-None-Match": 'W/"abc"'}, 304),
    row("inm-star", {"If-None-Match": "*"}, 304),
    row("inm-list", {"If-None-Match": '"x", W/"abc"'}, 304),
    row("inm-no-match", {"If-None-Match": '"x"'}, 200),
    row("inm-garbage", {"If-None-Match": "abc"}, 200),
    row("inm-nul", {"If-None-Match": "\x00"}, 200),
    row("inm-head", {"If-None-Match": '"abc"'}, 304, method="HEAD"),
    row("inm-present-ignores-ims", {"If-None-Match": '"x"', "If-Modified-Since": AFTER}, 200),
    row("inm-no-match-then-range", rng("bytes=0-9", **{"If-None-Match": '"x"'}), 206, [(0, 9)]),
    row("inm-weak-rep", {"If-None-Match": '"abc"'}, 304, rep=Representation('W/"abc"', None, 0)),
    # If-Modified-Since.
    row("ims-equal-imf", {"If-Modified-Since": LM_IMF}, 304),
    row("ims-equal-rfc850", {"If-Modified-Since": LM_850}, 304),
    row("ims-equal-asctime", {"If-Modified-Since": LM_ASC}, 304),
    row("ims-after-rfc850", {"If-Modified-Since": AFTER_850}, 304),
    row("ims-after-asctime", {"If-Modified-Since": AFTER_ASC}, 304),
    row("ims-before", {"If-Modified-Since": BEFORE}, 200),
    row("ims-invalid", {"If-Modified-Since": "not a date"}, 200),
    row("ims-two-dates", {"If-Modified-Since": f"{LM_IMF}, {LM_IMF}"}, 200),
    row("ims-utc-not-gmt", {"If-Modified-Since": LM_IMF.replace("GMT", "UTC")}, 200),
    row("ims-trailing-garbage", {"If-Modified-Since": LM_IMF + " x"}, 200),
    row("ims-feb-30", {"If-Modified-Since": "Sun, 30 Feb 2020 08:49:37 GMT"}, 200),
    row("ims-unknown-last-modified", {"If-Modified-Since": AFTER}, 200, rep=NO_DATE),
    row("ims-beats-range", rng("bytes=0-9", **{"If-Modified-Since": LM_IMF}), 304),
    # Range: forms, clamping, suffixes.
    row("range-single", rng("bytes=0-9"), 206, [(0, 9)]),
    row("range-unit-case", rng("BYTES=0-9"), 206, [(0, 9)]),
    row("range-open", rng("bytes=90-"), 206, [(90, 99)]),
    row("range-suffix", rng("bytes=-10"), 206, [(90, 99)]),
    row("range-suffix-larger-than-size", rng("bytes=-1000"), 206, [(0, 99)]),
    row("range-clamped", rng("bytes=50-1000"), 206, [(50, 99)]),
    row("range-whole", rng("bytes=0-"), 206, [(0, 99)]),
    row("range-last-byte", rng("bytes=99-99"), 206, [(99, 99)]),
    row("range-first-past-end", rng("bytes=100-"), 416),
    row("range-all-past-end", rng("bytes=100-200,150-"), 416),
    row("range-one-satisfiable", rng("bytes=100-200,0-0"), 206, [(0, 0)]),
    row("range-suffix-zero-dropped", rng("bytes=-0,5-6"), 206, [(5, 6)]),
    row("range-huge-last", rng("bytes=0-99999999999999999999999"), 206, [(0, 99)]),
    row("range-huge-first", rng("bytes=99999999999999999999-"), 416),
    row("range-huge-suffix", rng(f"bytes=-{HUGE}"), 206, [(0, 99)]),
    row("range-huge-first-gt-last", rng(f"bytes={HUGE}-{'8' * 5000}"), 200),
    row("range-leading-zeros", rng(f"bytes={'0' * 5000}5-9"), 206, [(5, 9)]),
    # Range: coalescing and ordering.
    row("range-overlap", rng("bytes=0-9,5-14"), 206, [(0, 14)]),
    row("range-adjacent", rng("bytes=0-9,10-19"), 206, [(0, 19)]),
    row("range-sorted", rng("bytes=20-29,0-9"), 206, [(0, 9), (20, 29)]),
    row("range-contained", rng("bytes=0-50,10-20"), 206, [(0, 50)]),
    row("range-first-and-last", rng("bytes=0-0,-1"), 206, [(0, 0), (99, 99)]),
    row("range-open-and-suffix-merge", rng("bytes=0-,-100"), 206, [(0, 99)]),
    row("range-gap-of-one", rng("bytes=0-9,11-19"), 206, [(0, 9), (11, 19)]),
    # Range: list syntax and the DoS guard.
    row("range-ows", rng("bytes= 0-9 ,\t20-29 "), 206, [(0, 9), (20, 29)]),
    row("range-empty-elements", rng("bytes=,0-9,,"), 206, [(0, 9)]),
    row("range-16", rng(f"bytes={SIXTEEN}"), 206, [(i * 5, i * 5) for i in range(16)]),
    row("range-17", rng(f"bytes={SEVENTEEN}"), 200),
    row("range-1000", rng(f"bytes={THOUSAND}"), 200),
    row("range-16-same", rng("bytes=" + ",".join(["0-0"] * 16)), 206, [(0, 0)]),
    # Range: invalid fields are ignored (200).
    row("range-first-gt-last", rng("bytes=5-3"), 200),
    row("range-letters", rng("bytes=abc"), 200),
    row("range-empty-set", rng("bytes="), 200),
    row("range-only-commas", rng("bytes=, ,"), 200),
    row("range-three-numbers", rng("bytes=1-2-3"), 200),
    row("range-no-equals", rng("0-9"), 200),
    row("range-space-before-equals", rng("bytes =0-9"), 200),
    row("range-sign", rng("bytes=+1-2"), 200),
    row("range-dash-only", rng("bytes=-"), 200),
    row("range-inner-spaces", rng("bytes=0 - 9"), 200),
    row("range-unicode-digits", rng("bytes=\u0663-\u0664"), 200),
    row("range-one-bad-spoils-all", rng("bytes=0-9,x"), 200),
    row("range-nul", rng("bytes=0-9\x00"), 200),
    row("range-empty-field", rng(""), 200),
    row("range-empty-representation", rng("bytes=0-9"), 200, rep=EMPTY),
    row("range-empty-representation-suffix", rng("bytes=-5"), 200, rep=EMPTY),
    # If-Range.
    row("ir-etag-match", rng("bytes=0-9", **{"If-Range": '"abc"'}), 206, [(0, 9)]),
    row("ir-etag-no-match", rng("bytes=0-9", **{"If-Range": '"x"'}), 200),
    row("ir-date-exact-imf", rng("bytes=0-9", **{"If-Range": LM_IMF}), 206, [(0, 9)]),
    row("ir-date-exact-rfc850", rng("bytes=0-9", **{"If-Range": LM_850}), 206, [(0, 9)]),
    row("ir-date-exact-asctime", rng("bytes=0-9", **{"If-Range": LM_ASC}), 206, [(0, 9)]),
    row("ir-date-older", rng("bytes=0-9", **{"If-Range": BEFORE}), 200),
    row("ir-date-unknown-last-modified", rng("bytes=0-9", **{"If-Range": LM_IMF}), 200, rep=NO_DATE),
    row("ir-garbage", rng("bytes=0-9", **{"If-Range": "garbage"}), 200),
    row("ir-list", rng("bytes=0-9", **{"If-Range": '"abc", "x"'}), 200),
    row("ir-empty", rng("bytes=0-9", **{"If-Range": ""}), 200),
    row("ir-without-range", {"If-Range": '"x"'}, 200),
    row("ir-weak-rep", rng("bytes=0-9", **{"If-Range": '"abc"'}), 200,
        rep=Representation('W/"abc"', LM, 100)),
    row("ir-match-unsatisfiable", rng("bytes=500-", **{"If-Range": '"abc"'}), 416),
    row("ir-no-match-unsatisfiable", rng("bytes=500-", **{"If-Range": '"x"'}), 200),
]


@pytest.mark.parametrize(("method", "headers", "rep", "status", "ranges"), TABLE)
def test_table(method: str, headers: dict[str, str], rep: Representation, status: int,
               ranges: tuple[tuple[int, int], ...]) -> None:
    decision = evaluate(method, headers, rep)
    assert (decision.status, [(r.start, r.end) for r in decision.ranges]) == (status, list(ranges))


def test_table_size() -> None:
    assert len(TABLE) >= 60


def test_environ_headers_case_insensitive_and_joined() -> None:
    # A field sent twice reaches the app joined with ", "; werkzeug's EnvironHeaders is what the view passes.
    environ = EnvironBuilder(headers=[("if-none-match", '"x"'), ("If-None-Match", 'W/"abc"'),
                                      ("range", "bytes=0-1")]).get_environ()
    assert evaluate("GET", EnvironHeaders(environ), REP) == Decision(304)


def test_max_ranges_parameter() -> None:
    assert evaluate("GET", rng("bytes=0-1,5-6"), REP, max_ranges=1).status == 200
    assert evaluate("GET", rng("bytes=0-1,5-6"), REP, max_ranges=2).status == 206
    assert MAX_RANGES == 16


def test_byte_range_helpers() -> None:
    assert ByteRange(0, 99).length == 100
    assert ByteRange(0, 99).content_range(1000) == "bytes 0-99/1000"
    assert unsatisfiable_content_range(1000) == "bytes */1000"
    with pytest.raises(ValueError):
        ByteRange(5, 4)
    with pytest.raises(ValueError):
        ByteRange(-1, 4)


def test_last_modified_precision_and_naive() -> None:
    # Sub-second Last-Modified still compares at the precision of an HTTP-date.
    fractional = Representation('"abc"', LM + timedelta(microseconds=999_999), 100)
    assert evaluate("GET", {"If-Modified-Since": LM_IMF}, fractional).status == 304
    assert evaluate("GET", rng("bytes=0-0", **{"If-Range": LM_IMF}), fractional).status == 206
    naive = Representation('"abc"', LM.replace(tzinfo=None), 100)
    assert evaluate("GET", {"If-Modified-Since": LM_IMF}, naive).status == 304


@pytest.mark.parametrize(("text", "year"), [
    ("Sunday, 06-Nov-94 08:49:37 GMT", 1994),
    # 50 years after 2025-06-01 is 2075-06-01: later dates belong to the past century.
    ("Saturday, 06-Nov-76 08:49:37 GMT", 1976),
    ("Thursday, 06-Nov-75 08:49:37 GMT", 1975),
    ("Sunday, 06-Jan-75 08:49:37 GMT", 2075),
    ("Tuesday, 06-Nov-01 08:49:37 GMT", 2001),
])
def test_rfc850_two_digit_year(text: str, year: int) -> None:
    parsed = parse_http_date(text, now=datetime(2025, 6, 1, tzinfo=UTC))
    assert parsed is not None and parsed.year == year


@pytest.mark.parametrize("text", [
    "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
    "Sun,  06 Nov 1994 08:49:37 GMT", "Sun Nov 6 08:49:37 1994", "Sunday, 06-Nov-1994 08:49:37 GMT",
    "Sun, 06 nov 1994 08:49:37 GMT", "Sun, 06 Nov 0000 08:49:37 GMT", "", "GMT",
])
def test_invalid_dates(text: str) -> None:
    assert parse_http_date(text) is None


# --- Reference model: the same rules over structured inputs, ranges as a set of byte offsets ---

INVALID = object()
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
LONG_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
OPAQUES = ["abc", "abd", "", "a,b", "W/", "\xe9"]
GARBAGE_TAGS = ["abc", "W/abc", 'w/"abc"', '"ab c"', '"\x00"', '"\u2603"', "W/ \"abc\""]


def fmt_date(moment: datetime, style: str) -> str:
    """An HTTP-date in one of the three formats (written independently of the parser)."""
    day, month = DAYS[moment.weekday()], MONTHS[moment.month - 1]
    clock = f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    if style == "imf":
        return f"{day}, {moment.day:02d} {month} {moment.year:04d} {clock} GMT"
    if style == "rfc850":
        return f"{LONG_DAYS[moment.weekday()]}, {moment.day:02d}-{month}-{moment.year % 100:02d} {clock} GMT"
    return f"{day} {month} {moment.day:2d} {clock} {moment.year}"


@st.composite
def tag_text(draw: st.DrawFn) -> tuple[str, tuple[bool, str] | None]:
    """One list element: a valid entity-tag (with its meaning) or garbage (None)."""
    pad = draw(st.sampled_from(["", " ", "\t"]))
    if draw(st.booleans()):
        weak, opaque = draw(st.booleans()), draw(st.sampled_from(OPAQUES))
        return f'{pad}{"W/" if weak else ""}"{opaque}"{pad}', (weak, opaque)
    return pad + draw(st.sampled_from(GARBAGE_TAGS)), None


@st.composite
def etag_field(draw: st.DrawFn) -> tuple[str | None, object]:
    """An If-Match / If-None-Match value and its meaning: None (absent), "*" or a tuple of (weak, opaque)."""
    kind = draw(st.sampled_from(["absent", "absent", "absent", "star", "list", "list"]))
    if kind == "absent":
        return None, None
    if kind == "star":
        return draw(st.sampled_from(["*", " *", "*, *"])), "*"
    elements = draw(st.lists(st.one_of(tag_text(), st.sampled_from([("", None), (" ", None)])), max_size=4))
    separators = draw(st.lists(st.sampled_from([",", ", ", " ,", ",\t", ", ,"]), min_size=len(elements),
                               max_size=len(elements)))
    text = "".join(sep + element for sep, (element, _) in zip(separators, elements, strict=True))
    return text, tuple(meaning for _, meaning in elements if meaning is not None)


@st.composite
def date_field(draw: st.DrawFn, base: datetime) -> tuple[str | None, object]:
    """A date field value near ``base`` and its meaning: None (absent), INVALID or the datetime."""
    kind = draw(st.sampled_from(["absent", "absent", "absent", "valid", "valid", "invalid"]))
    if kind == "absent":
        return None, None
    if kind == "invalid":
        junk = fmt_date(base, "imf")
        return draw(st.sampled_from(["", "yesterday", junk.lower(), f"{junk}, {junk}",
                                     junk.replace("GMT", "UTC"), base.isoformat(),
                                     "Sun, 31 Feb 1994 08:49:37 GMT"])), INVALID
    offset = draw(st.sampled_from([-86400 * 400, -3600, -1, 0, 0, 1, 3600, 86400 * 400]))
    moment = base + timedelta(seconds=offset)
    return fmt_date(moment, draw(st.sampled_from(["imf", "rfc850", "asctime"]))), moment


@st.composite
def if_range_field(draw: st.DrawFn, base: datetime) -> tuple[str | None, object]:
    """An If-Range value and its meaning: None, ("tag", weak, opaque), ("date", datetime) or INVALID."""
    kind = draw(st.sampled_from(["absent", "absent", "absent", "tag", "date", "invalid"]))
    if kind == "absent":
        return None, None
    if kind == "tag":
        weak, opaque = draw(st.booleans()), draw(st.sampled_from(OPAQUES))
        return f'{"W/" if weak else ""}"{opaque}"', ("tag", weak, opaque)
    if kind == "date":
        moment = base + timedelta(seconds=draw(st.sampled_from([-1, 0, 0, 1])))
        return fmt_date(moment, draw(st.sampled_from(["imf", "rfc850", "asctime"]))), ("date", moment)
    return draw(st.sampled_from(["garbage", '"abc", "x"', "", "W/abc", '"abc'])), INVALID


# Mostly small numbers, so ranges often touch, overlap and hit the end of small representations.
NUMBER = st.one_of(st.integers(0, 12), st.integers(0, 40), st.integers(0, 130), st.just(10**30))


@st.composite
def range_spec(draw: st.DrawFn) -> tuple:
    """One Range element: ("int", first, last|None), ("suffix", n), ("empty", text) or ("bad", text)."""
    kinds = ["short"] * 12 + ["wide", "open", "suffix", "empty"] * 2 + ["backwards", "bad"]
    kind = draw(st.sampled_from(kinds))
    first = draw(NUMBER)
    if kind == "short":  # short closed ranges: several of them stay apart, touch or overlap
        return "int", first, first + draw(st.integers(0, 3))
    if kind == "wide":
        return "int", first, first + draw(st.one_of(st.integers(0, 130), st.just(10**30)))
    if kind == "open":
        return "int", first, None
    if kind == "backwards":  # last < first: invalid
        return "int", first + 1, first
    if kind == "suffix":
        return "suffix", first
    if kind == "empty":
        return "empty", draw(st.sampled_from(["", " "]))
    return "bad", draw(st.sampled_from(["abc", "-", "1-2-3", "+1-2", "0x1-2", "1 -2"]))


@st.composite
def range_field(draw: st.DrawFn) -> tuple[str | None, object]:
    """A Range value and its meaning: None, INVALID, or a list of specs as range_spec makes them."""
    kind = draw(st.sampled_from(["absent", "other", "bytes", "bytes", "bytes", "bytes"]))
    if kind == "absent":
        return None, None
    if kind == "other":
        return draw(st.sampled_from(["items=0-1", "bytes 0-1", "bytes:0-1", "0-1", ""])), INVALID
    count = draw(st.sampled_from([1, 2, 3, 4, 5, 20]))
    elements = [draw(range_spec()) for _ in range(count)]
    if elements[0][0] == "int" and elements[0][2] is not None and draw(st.booleans()):
        # A range that starts right after the first one: adjacency must be coalesced.
        after = elements[0][2] + 1
        elements.insert(draw(st.integers(0, len(elements))), ("int", after, after + draw(st.integers(0, 3))))
    texts, specs, valid = [], [], True
    for element in elements:
        if element[0] == "int":
            first, last = element[1], element[2]
            lead = draw(st.sampled_from(["", "00"]))
            texts.append(f"{lead}{first}-" + ("" if last is None else str(last)))
            valid = valid and (last is None or last >= first)
            specs.append(element)
        elif element[0] == "suffix":
            texts.append(f"-{element[1]}")
            specs.append(element)
        elif element[0] == "bad":
            texts.append(element[1])
            valid = False
        else:
            texts.append(element[1])
    unit = draw(st.sampled_from(["bytes", "BYTES", "Bytes"]))
    text = f"{unit}={','.join(texts)}"
    return text, (specs if valid and specs else INVALID)


def reference(method: str, meanings: dict[str, object], etag: tuple[bool, str],
              last_modified: datetime | None, size: int, max_ranges: int) -> tuple[int, set[int]]:
    """RFC 9110 13.2.2 and 14 written out over the structured meanings; ranges as a set of offsets."""
    im, ius, inm, ims = (meanings[k] for k in ("If-Match", "If-Unmodified-Since", "If-None-Match",
                                                "If-Modified-Since"))
    if im is not None:
        if im != "*" and not any(not weak and not etag[0] and opaque == etag[1] for weak, opaque in im):
            return 412, set()
    elif isinstance(ius, datetime) and last_modified is not None and last_modified > ius:
        return 412, set()
    if inm is not None:
        if inm == "*" or any(opaque == etag[1] for _, opaque in inm):
            return 304, set()
    elif isinstance(ims, datetime) and last_modified is not None and last_modified <= ims:
        return 304, set()
    specs, if_range = meanings["Range"], meanings["If-Range"]
    if method != "GET" or specs is None or specs is INVALID or size == 0 or len(specs) > max_ranges:
        return 200, set()
    if if_range is INVALID:
        return 200, set()
    if isinstance(if_range, tuple) and if_range[0] == "tag":
        if if_range[1] or etag[0] or if_range[2] != etag[1]:
            return 200, set()
    if isinstance(if_range, tuple) and if_range[0] == "date" and if_range[1] != last_modified:
        return 200, set()
    selected: set[int] = set()
    for spec in specs:
        if spec[0] == "suffix":
            selected.update(range(max(0, size - spec[1]), size))
        elif spec[1] < size:
            selected.update(range(spec[1], size if spec[2] is None else min(spec[2] + 1, size)))
    return (206, selected) if selected else (416, set())


@st.composite
def scenario(draw: st.DrawFn):  # noqa: ANN201
    """A representation and a request with each conditional field valid, invalid or absent."""
    last_modified = draw(st.one_of(st.none(), st.datetimes(datetime(1990, 1, 1), datetime(2030, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC))))
    base = last_modified or datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    etag = (draw(st.booleans()), draw(st.sampled_from(OPAQUES)))
    absent = st.just((None, None))
    # Half the cases carry no precondition, so that the Range rules are reached often.
    conditions = draw(st.booleans())
    fields = {
        "If-Match": draw(etag_field() if conditions else absent),
        "If-None-Match": draw(etag_field() if conditions else absent),
        "If-Unmodified-Since": draw(date_field(base) if conditions else absent),
        "If-Modified-Since": draw(date_field(base) if conditions else absent),
        "If-Range": draw(if_range_field(base)), "Range": draw(range_field()),
    }
    size = draw(st.one_of(st.integers(0, 12), st.integers(0, 120)))
    # Small limits make "one range-spec too many" common.
    max_ranges = draw(st.sampled_from([1, 3, MAX_RANGES, MAX_RANGES]))
    return draw(st.sampled_from(["GET", "GET", "HEAD"])), fields, etag, last_modified, size, max_ranges


@settings(max_examples=500, deadline=None)
@given(scenario())
def test_matches_reference_model(case) -> None:  # noqa: ANN001
    method, fields, etag, last_modified, size, max_ranges = case
    headers = {name: text for name, (text, _) in fields.items() if text is not None}
    meanings = {name: meaning for name, (_, meaning) in fields.items()}
    rep = Representation(f'{"W/" if etag[0] else ""}"{etag[1]}"', last_modified, size)
    decision = evaluate(method, headers, rep, max_ranges)
    status, selected = reference(method, meanings, etag, last_modified, size, max_ranges)
    assert decision.status == status
    if status != 206:
        assert decision.ranges == ()
        return
    covered: set[int] = set()
    for index, part in enumerate(decision.ranges):
        assert 0 <= part.start <= part.end < size
        if index:
            assert part.start > decision.ranges[index - 1].end + 1  # sorted, disjoint, not adjacent
        covered.update(range(part.start, part.end + 1))
    assert covered == selected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["GET", "HEAD"]),
       st.dictionaries(st.sampled_from(["If-Match", "If-None-Match", "If-Unmodified-Since",
                                        "If-Modified-Since", "If-Range", "Range"]),
                       st.one_of(st.text(), st.text(alphabet='"W/,*- =0123456789bytes\t\x00'))),
       st.integers(0, 1000))
def test_never_crashes(method: str, headers: dict[str, str], size: int) -> None:
    decision = evaluate(method, headers, Representation('"abc"', LM, size))
    assert decision.status in (200, 206, 304, 412, 416)
    assert all(0 <= r.start <= r.end < size for r in decision.ranges)


def test_huge_hostile_fields_are_fast() -> None:
    hostile = '"' + "a" * 1_000_000 + ", " * 100_000
    headers = {"If-Match": hostile, "If-None-Match": "W/" * 200_000,
               "Range": "bytes=" + "0" * 1_000_000 + "-", "If-Modified-Since": " " * 1_000_000}
    assert evaluate("GET", headers, REP).status == 412
    headers.pop("If-Match")
    assert evaluate("GET", headers, REP) == Decision(206, (ByteRange(0, 99),))


@settings(max_examples=400, deadline=None)
@given(range_field(), st.one_of(st.integers(1, 12), st.integers(1, 120)), st.sampled_from([1, 3, MAX_RANGES]))
def test_ranges_match_byte_set_model(field, size: int, max_ranges: int) -> None:  # noqa: ANN001
    # Range alone, so that every example reaches the range rules of the combined model above.
    text, meaning = field
    headers = {} if text is None else {"Range": text}
    meanings = dict.fromkeys(["If-Match", "If-Unmodified-Since", "If-None-Match", "If-Modified-Since",
                              "If-Range"], None) | {"Range": meaning}
    decision = evaluate("GET", headers, Representation('"abc"', LM, size), max_ranges)
    status, selected = reference("GET", meanings, (False, "abc"), LM, size, max_ranges)
    assert decision.status == status
    covered = [offset for part in decision.ranges for offset in range(part.start, part.end + 1)]
    assert covered == sorted(selected)  # sorted and no byte twice
    assert all(b.start > a.end + 1 for a, b in zip(decision.ranges, decision.ranges[1:]))  # coalesced
