"""The one table from exceptions to HTTP answers; views raise, nothing else maps errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, has_request_context, request
from werkzeug.exceptions import HTTPException

from app.landing import LANDING_HEADERS, prefers_html, render_error_page
from app.links import on_token_path
from app.manifest import ManifestError
from app.representations import error_response
from storage_backends import BlobSizeMismatch, RangeNotSupported

log = logging.getLogger("pkgdl")

RETRY_AFTER_SECONDS = "5"
WWW_AUTHENTICATE = 'Basic realm="pkgdl", charset="UTF-8"'


class ServiceError(Exception):
    """An error with a fixed client-facing status and generic message; subclasses take their data (a wait, a
    range) in their constructor and say which headers it becomes."""

    status = 500
    message = "Internal server error."
    message_id = "pkgdl.internal"
    request_uri: str | None = None  # the client's URI when the request is a report about another one (nginx's)

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message

    def headers(self) -> dict[str, str]:
        """Headers this error's answer carries besides those of its status."""
        return {}


class InvalidRequest(ServiceError):
    status, message, message_id = 400, "The request is not valid.", "pkgdl.badRequest"


class AuthenticationRequired(ServiceError):
    status, message, message_id = 401, "Authentication is required.", "pkgdl.unauthorized"


class AccessDenied(ServiceError):
    status, message, message_id = 403, "Access to this resource is denied.", "pkgdl.forbidden"


class NotFound(ServiceError):
    status, message, message_id = 404, "The requested resource was not found.", "pkgdl.notFound"


class MethodNotAllowed(ServiceError):
    status, message, message_id = 405, "The method is not allowed for this resource.", "pkgdl.methodNotAllowed"


class TooManyAttempts(ServiceError):
    status, message, message_id = 429, "Too many failed login attempts; try again later.", "pkgdl.tooManyRequests"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """When the window frees a place."""
        return {"Retry-After": str(self.retry_after)}


class Unavailable(ServiceError):
    status, message, message_id = 503, "A backing service is unavailable; try again later.", "pkgdl.unavailable"


class SignInUnavailable(Unavailable):
    """The directory that checks passwords cannot answer: 503, never 401 (a 401 makes clients drop good
    credentials); download links keep working."""

    message, message_id = "Sign-in is unavailable; try again later.", "pkgdl.signInUnavailable"


class OffloadFailed(ServiceError):
    """nginx could not read an offloaded package; ``request_uri`` is the client's path, as nginx reports it."""

    status, message, message_id = 502, "The package could not be read; try again later.", "pkgdl.offloadFailed"

    def __init__(self, request_uri: str | None = None) -> None:
        super().__init__()
        self.request_uri = request_uri


class RangeNotSatisfiable(ServiceError):
    status, message, message_id = 416, "The requested range is not satisfiable.", "pkgdl.rangeNotSatisfiable"

    def __init__(self, content_range: str) -> None:
        super().__init__()
        self.content_range = content_range

    def headers(self) -> dict[str, str]:
        """`Content-Range: bytes */LEN` (RFC 9110 15.5.17)."""
        return {"Content-Range": self.content_range}


@dataclass(frozen=True)
class _Answer:
    status: int
    message: str
    message_id: str
    retry_after: bool = False


# Faults that cross the storage and burn-list boundaries as built-ins (storage_backends/base.py). Order matters:
# subclasses before their bases (BlobSizeMismatch and the others are OSErrors). A broken manifest is a server error,
# never a wrong file.
_BUILTIN_ANSWERS: tuple[tuple[type[BaseException], _Answer], ...] = (
    (FileNotFoundError, _Answer(404, "The requested resource was not found.", "pkgdl.notFound")),
    (BlobSizeMismatch, _Answer(502, "The stored package does not match the catalog.", "pkgdl.storageInconsistent")),
    (RangeNotSupported, _Answer(502, "The storage cannot serve this range.", "pkgdl.storageRangeUnsupported")),
    (ManifestError, _Answer(502, "The catalog of this scan is unreadable.", "pkgdl.catalogInvalid")),
    (PermissionError, _Answer(502, "The storage refused access.", "pkgdl.storageRefused")),
    (TimeoutError, _Answer(504, "The storage did not answer in time.", "pkgdl.storageTimeout")),
    (ConnectionError, _Answer(503, "A backing service is unavailable; try again later.", "pkgdl.unavailable", True)),
    (OSError, _Answer(503, "A backing service is unavailable; try again later.", "pkgdl.unavailable", True)),
)


def answer_for(exc: BaseException) -> _Answer:
    """The status and generic message for any exception."""
    if isinstance(exc, ServiceError):
        return _Answer(exc.status, exc.message, exc.message_id, exc.status in (429, 503))
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        return _Answer(code, exc.name + ".", f"pkgdl.http{code}")
    for exc_type, answer in _BUILTIN_ANSWERS:
        if isinstance(exc, exc_type):
            return answer
    return _Answer(500, "Internal server error.", "pkgdl.internal")


def response_for(exc: BaseException) -> Response:
    """Render an exception as a uforgeError response with the headers its status calls for (or, for a person
    holding a download link in a browser, as a small page saying what happened, with the same headers)."""
    answer = answer_for(exc)
    if answer.status >= 500:
        # Logged with the traceback for operators; the client gets only the generic message.
        log.error("request failed with %s: %r", answer.status, exc, exc_info=answer.status == 500)
    own = exc if isinstance(exc, ServiceError) else None
    if _browser_on_the_token_path():
        response = Response(render_error_page(answer.status), answer.status,
                            content_type="text/html; charset=utf-8", headers=LANDING_HEADERS)
    else:
        response = error_response(answer.status, answer.message, answer.message_id,
                                  own.request_uri if own else None)
    if answer.retry_after:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    if answer.status == 401:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if answer.status == 405:
        response.headers["Allow"] = "GET, HEAD"
    if own:
        response.headers.update(own.headers())
    return response


def _browser_on_the_token_path() -> bool:
    """A request carrying a download token whose Accept prefers HTML (a person's browser; API clients, curl, wget
    and the UForge SDK keep the uforgeError), not admitted by credentials."""
    return has_request_context() and on_token_path() and prefers_html(request.headers.get("Accept"))


def register_error_handlers(app: Flask) -> None:
    """Route every exception, Flask's own HTTP errors included, through the one table."""
    app.register_error_handler(Exception, response_for)
