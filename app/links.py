"""URIs of packages and binaries, as the listing and minted email links spell them."""

from __future__ import annotations

from urllib.parse import quote

from flask import g, request

from app.tokens import PackageRef

TOKEN_PARAMETER = "downloadToken"  # noqa: S105 - a parameter name, not a secret


def package_uri(ref: PackageRef) -> str:
    """The package's UForge uri (relative, no leading slash)."""
    return f"users/{quote(ref.uid, safe='@')}/scannedinstances/{ref.siid}/scans/{ref.sid}/packages/{ref.pid}"


def binary_uri(ref: PackageRef, token: str) -> str:
    """The relative /bin URI carrying a download token."""
    return f"{package_uri(ref)}/bin?{TOKEN_PARAMETER}={quote(token, safe='')}"


def on_token_path() -> bool:
    """Whether the current request is on the token path: admitted by its token, or carrying one that was refused
    or not checked yet; not when credentials admitted it (app/access.py sets g.access). Its answers, errors
    included, are uncacheable, and a browser gets its errors as a page."""
    access = g.get("access")
    if access is not None:
        return access.by_token
    return bool(request.query_string) and TOKEN_PARAMETER in request.args


def download_url(public_url: str, ref: PackageRef, token: str) -> str:
    """An absolute link for an email, built from PKGDL_PUBLIC_URL, never from a request's Host header."""
    return f"{public_url.rstrip('/')}/{binary_uri(ref, token)}"
