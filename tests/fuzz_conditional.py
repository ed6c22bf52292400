"""atheris harness for app.conditional.evaluate (Range / If-* parsing) and the path id patterns of app.views.

    .venv/bin/python tests/fuzz_conditional.py -atheris_runs=20000           # bounded run (tests/test_fuzz_smoke.py)
    .venv/bin/python tests/fuzz_conditional.py -max_total_time=600 CORPUS/   # longer run (make fuzz)

Invariants: evaluate never raises; the status is one of 200, 206, 304, 412, 416; only GET with a non-empty
representation gets 206 or 416; a 206 has 1..MAX_RANGES ranges, sorted, disjoint and not adjacent (coalesced), inside
the representation; other statuses carry no ranges. The id patterns accept exactly the reference grammar
(ASCII only; uid 1..64 characters starting with a letter or digit; numbers 1..18 ASCII digits).
"""

from __future__ import annotations

import string
import sys
from datetime import UTC, datetime
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["app.conditional"]):
    from app import conditional

from app.ids import NUMBER_PATTERN, UID_PATTERN  # noqa: E402 - after the instrumented import

ETAG = '"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"'
FIELDS = ("Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")
# Fragments that steer the fuzzer into the grammar quickly; it mutates and combines them with random text.
FRAGMENTS = ("bytes=", "bytes=0-", "-", ",", "0", "1", "9" * 25, " ", "\t", "*", "W/", '"', ETAG, "items=",
             "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
             "\u0661", "\uff11", "=", ";")
UID_CHARS = set(string.ascii_letters + string.digits + "._@-")


def header_value(fdp: atheris.FuzzedDataProvider) -> str:
    """Either free text or a concatenation of grammar fragments and short random pieces."""
    if fdp.ConsumeBool():
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    parts = []
    for _ in range(fdp.ConsumeIntInRange(0, 24)):
        if fdp.ConsumeBool():
            parts.append(FRAGMENTS[fdp.ConsumeIntInRange(0, len(FRAGMENTS) - 1)])
        else:
            parts.append(str(fdp.ConsumeIntInRange(0, 1 << 40)) if fdp.ConsumeBool()
                         else fdp.ConsumeUnicodeNoSurrogates(3))
    return "".join(parts)


def check_decision(method: str, headers: dict[str, str], rep: conditional.Representation) -> None:
    decision = conditional.evaluate(method, headers, rep)
    status, found = decision.status, decision.ranges
    assert status in (200, 206, 304, 412, 416), decision
    if status == 206:
        assert method == "GET" and rep.size > 0, decision
        assert 1 <= len(found) <= conditional.MAX_RANGES, decision
        for byte_range in found:
            assert 0 <= byte_range.start <= byte_range.end < rep.size, (decision, rep.size)
        for left, right in zip(found, found[1:], strict=False):
            assert left.end + 1 < right.start, f"ranges not sorted, disjoint and coalesced: {found}"
    else:
        assert found == (), decision
    if status == 416:
        assert method == "GET" and rep.size > 0 and "Range" in headers, decision
    if method == "HEAD" or rep.size == 0:
        assert status in (200, 304, 412), decision


def uid_reference(text: str) -> bool:
    return 1 <= len(text) <= 64 and text[0].isascii() and text[0].isalnum() and set(text) <= UID_CHARS


def number_reference(text: str) -> bool:
    return 1 <= len(text) <= 18 and all(ch in string.digits for ch in text)


def check_ids(text: str) -> None:
    assert bool(UID_PATTERN.fullmatch(text)) == uid_reference(text), repr(text)
    assert bool(NUMBER_PATTERN.fullmatch(text)) == number_reference(text), repr(text)
    if UID_PATTERN.fullmatch(text):
        assert text not in (".", "..") and "/" not in text and "\\" not in text and "\x00" not in text


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    size = fdp.ConsumeIntInRange(0, 1 << 20) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 8)
    last_modified = None
    if fdp.ConsumeBool():
        last_modified = datetime.fromtimestamp(fdp.ConsumeIntInRange(0, 4_000_000_000), UTC)
    rep = conditional.Representation(etag=ETAG, last_modified=last_modified, size=size)
    method = "HEAD" if fdp.ConsumeIntInRange(0, 3) == 0 else "GET"
    # Range most of the time, each precondition now and then (a failing If-Match would otherwise hide Range).
    headers = {field: header_value(fdp) for field in FIELDS
               if (fdp.ConsumeIntInRange(0, 3) != 0 if field == "Range" else fdp.ConsumeIntInRange(0, 3) == 0)}
    check_decision(method, headers, rep)
    check_ids(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80)) if fdp.ConsumeBool()
              else header_value(fdp))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
