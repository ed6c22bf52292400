"""X-Accel offload (PKGDL_OFFLOAD=x-accel): the app authorizes and claims the link, nginx sends the bytes from an
internal location of deploy/nginx.conf.template and reports how far it got. This module knows those locations and
the headers the two sides exchange."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from flask import Response

from app.delivery import BodyPlan, DeliveryPolicy
from app.manifest import Package
from storage_backends import Storage

# Requests that carry these are streamed by us even in offload mode: nginx's static module would evaluate them
# again against its own validators (an mtime/size ETag), and its multipart ranges are not coalesced.
_CONDITIONAL_HEADERS = ("Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")
DISPOSITION_HEADER = "X-Pkgdl-Content-Disposition"
TICKET_HEADER = "X-Pkgdl-Ticket"
SENT_HEADER = "X-Pkgdl-Sent"  # nginx's $body_bytes_sent, in its report at the end of an offloaded transfer
# The size of a package whose claim recorded it written whole: nginx reports only a transfer that sent less.
RECORDED_HEADER = "X-Pkgdl-Recorded"
# A package of at most one chunk (app/download.py's CHUNK_SIZE) is claimed as written whole, as when the app streams
# it in one write.
ONE_WRITE = 1 << 20
REQUEST_PATH_HEADER = "X-Pkgdl-Request-Path"  # the client's path (no query) when nginx reports a failed offload
OFFLOAD_LOCAL_PREFIX = "/_pkgdl/local/"
OFFLOAD_S3_PREFIX = "/_pkgdl/s3"
PRESIGNED_SECONDS = 60


def is_conditional(request_headers: Mapping[str, str]) -> bool:
    return any(request_headers.get(name) is not None for name in _CONDITIONAL_HEADERS)


def offload_target(storage: Storage, package: Package, is_local: bool) -> str | None:
    """Where nginx finds the bytes: the file under the storage root, or a presigned S3 GET; None streams."""
    if is_local:
        return OFFLOAD_LOCAL_PREFIX + quote(package.path)
    presigned = storage.presigned_url(package.path, PRESIGNED_SECONDS)
    if presigned is None:
        return None
    url = urlsplit(presigned)
    return f"{OFFLOAD_S3_PREFIX}{url.path}?{url.query}"


def offloaded_response(target: str, package: Package, headers: dict[str, str], policy: DeliveryPolicy) -> Response:
    """Authorized, preconditions passed: claim the link for the whole package, then let nginx send the bytes
    (deploy/nginx.conf.template).

    Content-Disposition travels as X-Pkgdl-Content-Disposition, which nginx adds back only when it sends the file:
    an error of its own (the file unreadable) must not be saved under the package's name. With the ticket nginx
    reports how many bytes it sent when the transfer ends (POST /_pkgdl/offload-done), or that it could not read the
    file (POST /_pkgdl/offload-failed), so the link is settled as if the app had streamed; nginx never forwards
    either header to the client.
    """
    # A small package's claim records it as written whole, as when the app streams it in one write: a transfer
    # that completes then needs no report (one request to the app per download instead of two; nginx compares its
    # $body_bytes_sent with RECORDED_HEADER), one that breaks reports and is undone to what was sent.
    policy.observer.before_first_byte(BodyPlan.whole(package.size), whole=True, in_hand=package.size <= ONE_WRITE)
    headers[DISPOSITION_HEADER] = headers.pop("Content-Disposition")
    ticket = policy.observer.offload_ticket()
    if ticket is not None:
        headers[TICKET_HEADER] = ticket
        if policy.observer.recorded_whole():
            headers[RECORDED_HEADER] = str(package.size)
    headers["X-Accel-Redirect"] = target
    headers["X-Accel-Buffering"] = "no"
    policy.observer.finished(200, package.size, "offloaded")
    response = Response(status=200, headers=headers)
    response.headers["Content-Length"] = str(package.size)
    return response
