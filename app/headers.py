"""Response header values that need care: Content-Disposition (RFC 6266/8187), Repr-Digest (RFC 9530), dates."""

from __future__ import annotations

import base64
import functools
import re
import unicodedata
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import quote

# How a package answer may be cached: per user on the Basic path (revalidated: no-cache), never on the token path,
# whose URL is a bearer credential (no-store, and no Referer carrying it elsewhere).
BASIC_CACHE_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Authorization"}
TOKEN_CACHE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

# RFC 8187 attr-char minus the always-safe ALPHA / DIGIT that quote() keeps anyway.
_ATTR_CHAR_PUNCTUATION = "!#$&+-.^_`|~"
# What the quoted ASCII fallback keeps; everything else (quotes, backslash, slash, controls, ';') becomes '_'.
_UNSAFE_FALLBACK = re.compile(r"[^A-Za-z0-9._+\-~@=,()\[\] ]")


def without_controls(text: str) -> str:
    """The text without control, format, surrogate and unassigned characters (a manifest name may hold a CR/LF, or
    a lone surrogate that UTF-8 cannot encode)."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")


def file_name_of(full_name: str) -> str:
    """The last path segment of a package's file name, without control characters; 'download' when nothing is left."""
    base = without_controls(re.split(r"[/\\]", full_name)[-1]).strip()
    return base if base not in ("", ".", "..") else "download"


def content_disposition(full_name: str) -> str:
    """`attachment`, an ASCII fallback and the exact UTF-8 name; no CR, LF, quote, slash or backslash gets through."""
    name = file_name_of(full_name)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = _UNSAFE_FALLBACK.sub("_", ascii_name).strip() or "download"
    encoded = quote(name, safe=_ATTR_CHAR_PUNCTUATION)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def repr_digest(sha256_hex: str) -> str:
    """RFC 9530 Repr-Digest of the whole representation, from the catalog's sha256."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode('ascii')}:"


@functools.lru_cache(maxsize=4096)  # a package's Last-Modified is formatted on every 200 and 304
def http_date(moment: datetime) -> str:
    """IMF-fixdate (RFC 9110 5.6.7)."""
    return format_datetime(moment, usegmt=True)
