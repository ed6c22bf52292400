"""webdav:// and webdavs://: a WebDAV share through webdav4 (the `webdav` extra), addressed as users write it.

``webdav://user@host:port/path`` is ``http://host:port`` with root ``/path`` (``webdavs://``: https); webdav4 itself
wants the server as its ``base_url`` option and the path apart. ``PKGDL_STORAGE_OPTIONS`` may add ``auth`` (a
[user, password] pair) and anything webdav4's client takes (``timeout``, ``verify``...).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from storage_backends.generic import FsspecBackend

TIMEOUT_SECONDS = 10
_URL_SAFE = re.compile(r"[A-Za-z0-9._~@+/-]+")


class WebdavBackend(FsspecBackend):
    """The generic adapter with webdav4's filesystem, its URL turned into base_url and root."""

    protocol = "webdav"

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> WebdavBackend:
        import fsspec

        fsspec.get_filesystem_class("webdav")  # ImportError: the extra is missing (the registry names it)
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError("webdav:// storage URL needs a host: webdav://host:port/path")
        scheme = "https" if parts.scheme.lower() == "webdavs" else "http"
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        options = {"base_url": f"{scheme}://{netloc}", "timeout": TIMEOUT_SECONDS, **options}
        if parts.username and "auth" not in options:
            options["auth"] = (parts.username, parts.password or "")
        if isinstance(options.get("auth"), list):  # JSON has no tuples; httpx wants one
            options["auth"] = tuple(options["auth"])
        return cls(parts.path.rstrip("/") or "/", options)

    def locate(self, path: str) -> str:
        """Only names that need no percent-encoding: webdav4 hands paths to httpx unencoded in some calls and
        compares them decoded in others, and wsgidav decodes a MOVE's Destination before parsing it as a URL, so
        '%', '?', '#', ';' or a space would name another object. pkgdl's own objects (content-addressed blobs,
        manifests under uid/siid/sid) never have them; anything else is refused (ValueError), never misread."""
        if not _URL_SAFE.fullmatch(path):
            raise ValueError("storage path for webdav:// must use only letters, digits and . _ ~ @ + - /")
        return f"{self.root.rstrip('/')}/{path}"

    def move_over(self, fs: Any, source: str, target: str) -> None:
        """One MOVE with Overwrite: T (fsspec's generic move is COPY without overwrite, then DELETE)."""
        fs.client.move(fs._strip_protocol(source), fs._strip_protocol(target), overwrite=True)
