"""The scanner-proof landing page and the Accept test that decides who sees it."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from app.headers import file_name_of
from app.landing import prefers_html, render_landing_page

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FIREFOX_OLD = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"
SAFARI = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
EDGE = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "p", "form", "button"}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),  # python-requests without headers, many SDKs
        ("", False),
        ("*/*", False),  # curl, wget
        ("application/xml", False),  # UForge SDKs
        ("application/json", False),
        ("application/octet-stream", False),
        ("application/xml, */*", False),
        ("text/html;q=0", False),
        ("text/html;q=0, */*", False),
        ("text/html;q=0.5, */*", False),  # ranks a download higher
        ("text/html, application/octet-stream", False),  # a tie is not a preference
        ("not a media type", False),
        (CHROME, True),
        (EDGE, True),
        (FIREFOX, True),
        (FIREFOX_OLD, True),
        (SAFARI, True),
        ("text/html", True),
        ("TEXT/HTML", True),
        ("text/*, */*;q=0.5", True),
        ("text/html, */*;q=0.1", True),
    ],
)
def test_prefers_html(accept: str | None, expected: bool) -> None:
    assert prefers_html(accept) is expected


class _FormFinder(HTMLParser):
    """Collects every tag, the attributes of forms, the text of buttons and any linked resource."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.buttons: list[str] = []
        self.tags: set[str] = set()
        self.external: list[str] = []
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self.forms.append(dict(attrs))
        self.tags.add(tag)
        if tag == "button":
            self._in_button = True
            self.buttons.append("")
        self.external += [value or "" for name, value in attrs if name in ("src", "href")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button:
            self.buttons[-1] += data


def parse(page: str) -> _FormFinder:
    finder = _FormFinder()
    finder.feed(page)
    finder.close()
    return finder


def test_page_has_one_post_form_back_to_the_same_url() -> None:
    page = render_landing_page("openssl-3.0.7-27.el9.x86_64.rpm")
    assert page.startswith("<!DOCTYPE html>")
    found = parse(page)
    assert found.forms == [{"method": "post"}]  # no action: the query string with the token is kept
    assert found.buttons == ["Download openssl-3.0.7-27.el9.x86_64.rpm"]
    assert found.tags <= PAGE_TAGS  # no script, image or anything else
    assert found.external == []
    assert "only once" in page


@pytest.mark.parametrize(
    "hostile",
    [
        '<script>alert("x")</script>.rpm',
        '"><img src=x onerror=alert(1)>.deb',
        "' onmouseover='alert(1)",
        "a&b<c>d.rpm",
    ],
)
def test_page_escapes_the_file_name(hostile: str) -> None:
    page = render_landing_page(hostile)
    assert hostile not in page
    found = parse(page)
    assert found.tags <= PAGE_TAGS
    assert found.forms == [{"method": "post"}]
    assert found.external == []
    assert found.buttons == [f"Download {file_name_of(hostile)}"]  # as text, the name it is saved under


def test_page_shows_the_saved_name_without_bidi_overrides() -> None:
    page = render_landing_page("invoice\u202egpj.exe")
    assert "\u202e" not in page and "Download invoicegpj.exe" in page
    assert parse(render_landing_page("../x/\r\nevil.rpm")).buttons == ["Download evil.rpm"]
