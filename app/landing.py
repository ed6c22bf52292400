"""The pages a person holding a download link sees in a browser: the click-through page that keeps email link
scanners from burning single-use links, and the page that says why a link cannot download (instead of XML)."""

from __future__ import annotations

import html

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from app.headers import TOKEN_CACHE_HEADERS, file_name_of

# One page shape for both pages: readable on a phone, no script, no external asset.
_PAGE_SHAPE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; padding: 0 1rem; }}
button {{ font-size: 1rem; padding: 0.6rem 1.2rem; cursor: pointer; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""
_LANDING_BODY = """<p>This download link works only once. Press the button to start the download;
after that, the link can no longer be used.</p>
<form method="post">
<button type="submit">Download {file_name}</button>
</form>"""


# What a person can do about each status; never whose package or which file.
_ERROR_TEXTS = {
    403: ("This download link cannot be used",
          "It has already been used, has expired or is not valid. Ask the person who sent it for a new one."),
    404: ("This package is not available", "It may have been removed. Ask the person who sent the link."),
}
_UNAVAILABLE = ("The download is not available right now", "Please try again in a few minutes.")
_INVALID = ("This download link is not valid", "Ask the person who sent it for a new one.")


def render_error_page(status: int) -> str:
    """The page for a browser whose download link failed with ``status``."""
    title, advice = _ERROR_TEXTS.get(status) or (_UNAVAILABLE if status >= 500 or status == 429 else _INVALID)
    return _PAGE_SHAPE.format(title=html.escape(title), body=f"<p>{html.escape(advice)}</p>")


# Token path, and a page with no script and no external asset: nothing else may load or frame it.
LANDING_HEADERS = {
    **TOKEN_CACHE_HEADERS,
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}


def render_landing_page(file_name: str) -> str:
    """Return the HTML page whose button POSTs back to the same URL (query string and token included)."""
    # No action attribute: the form posts to the current URL, which carries the token in its query string.
    # The name the download will be saved under (Content-Disposition's): no path, no control, format or bidi
    # characters (U+202E would make "invoice\u202egpj.exe" read as "invoiceexe.jpg").
    name = html.escape(file_name_of(file_name), quote=True)
    return _PAGE_SHAPE.format(title=f"Download {name}", body=_LANDING_BODY.format(file_name=name))


def prefers_html(accept_header: str | None) -> bool:
    """Return True when the Accept header ranks text/html above a binary download (a browser, not curl)."""
    if not accept_header:
        return False
    accept = parse_accept_header(accept_header, MIMEAccept)
    html_quality = accept.quality("text/html")
    # quality() also matches wildcards, so "*/*" alone ranks text/html and a binary equally: not a browser.
    binary_quality = accept.quality("application/octet-stream")
    any_quality = max((quality for value, quality in accept if value == "*/*"), default=0)
    return html_quality > 0 and html_quality > max(binary_quality, any_quality)
