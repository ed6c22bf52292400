"""Content-Disposition, Repr-Digest and dates."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.headers import content_disposition, repr_digest


@pytest.mark.parametrize("name, fallback, encoded", [
    ("openssl-3.0.7-27.el9.x86_64.rpm", "openssl-3.0.7-27.el9.x86_64.rpm", "openssl-3.0.7-27.el9.x86_64.rpm"),
    ('a"b.rpm', "a_b.rpm", "a%22b.rpm"),
    ("dir/evil.rpm", "evil.rpm", "evil.rpm"),
    ("dir\\evil.rpm", "evil.rpm", "evil.rpm"),
    ("x\r\nSet-Cookie: a=b.rpm", "xSet-Cookie_ a=b.rpm", "xSet-Cookie%3A%20a%3Db.rpm"),
    ("café_1.0_all.deb", "cafe_1.0_all.deb", "caf%C3%A9_1.0_all.deb"),
    ("日本語.rpm", ".rpm", "%E6%97%A5%E6%9C%AC%E8%AA%9E.rpm"),
    ("..", "download", "download"),
    ("", "download", "download"),
])
def test_content_disposition(name, fallback, encoded):
    assert content_disposition(name) == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


@given(st.text())
def test_content_disposition_never_lets_dangerous_characters_through(name):
    value = content_disposition(name)
    fallback = re.fullmatch(r"attachment; filename=\"([^\"]*)\"; filename\*=UTF-8''([A-Za-z0-9!#$&+\-.^_`|~%]+)",
                            value)
    assert fallback, value
    assert not set(fallback.group(1)) & set("\"\\/\r\n\0")
    assert all(32 <= ord(ch) < 127 for ch in value)


def test_repr_digest():
    digest = hashlib.sha256(b"abc")
    assert repr_digest(digest.hexdigest()) == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
