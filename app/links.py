"""URIs of packages and binaries, as the listing and minted email links spell them."""

from __future__ import annotations

from urllib.parse import quote

from app.tokens import PackageRef


def package_uri(ref: PackageRef) -> str:
    """The package's UForge uri (relative, no leading slash)."""
    return f"users/{quote(ref.uid, safe='@')}/scannedinstances/{ref.siid}/scans/{ref.sid}/packages/{ref.pid}"


def binary_uri(ref: PackageRef, token: str) -> str:
    """The relative /bin URI carrying a download token."""
    return f"{package_uri(ref)}/bin?downloadToken={quote(token, safe='')}"


def download_url(public_url: str, ref: PackageRef, token: str) -> str:
    """An absolute link for an email, built from PKGDL_PUBLIC_URL, never from a request's Host header."""
    return f"{public_url.rstrip('/')}/{binary_uri(ref, token)}"
