"""The click-through page that keeps email link scanners from burning single-use download links."""

from __future__ import annotations

import html

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from app.headers import TOKEN_CACHE_HEADERS, file_name_of

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>Download {file_name}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; padding: 0 1rem; }}
button {{ font-size: 1rem; padding: 0.6rem 1.2rem; cursor: pointer; }}
</style>
</head>
<body>
<h1>Download {file_name}</h1>
<p>This download link works only once. Press the button to start the download;
after that, the link can no longer be used.</p>
<form method="post">
<button type="submit">Download {file_name}</button>
</form>
</body>
</html>
"""


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
    return _PAGE.format(file_name=html.escape(file_name_of(file_name), quote=True))


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
