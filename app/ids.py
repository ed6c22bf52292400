"""The rules for identifiers and media types, in one place: URL path ids, logins, manifest ids, `type/subtype`.

Patterns are used with `fullmatch` only: `^...$` with `match` would accept a trailing newline ("alice\n").
"""

from __future__ import annotations

import re

# A login is a uid: the users file, the CLI and the URL path accept exactly the same names (ASCII only).
UID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", re.ASCII)
UID_RULE = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
# siid, sid and pid in a URL: ASCII digits (str.isdigit would accept "²"), at most 18 so they fit a signed long.
NUMBER_PATTERN = re.compile(r"[0-9]{1,18}")
MAX_ID = 10**18 - 1
# A plain `type/subtype` (RFC 6838 restricted names, no parameters).
MEDIA_TYPE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def is_uid(text: object) -> bool:
    """True for a valid uid or login."""
    return isinstance(text, str) and UID_PATTERN.fullmatch(text) is not None


def is_number_segment(text: str) -> bool:
    """True for a URL segment that is a siid, sid or pid."""
    return NUMBER_PATTERN.fullmatch(text) is not None


def is_id(value: object) -> bool:
    """True for a JSON integer id (not a bool) from 0 to MAX_ID."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def is_media_type(text: str) -> bool:
    """True for a plain `type/subtype`."""
    return MEDIA_TYPE_PATTERN.fullmatch(text) is not None
