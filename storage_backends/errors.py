"""One table turning backend exceptions (aiohttp, botocore, s3fs, the OS) into built-ins, once, at the edge.

In the style of ``s3fs/errors.py``: callers above the storage boundary see only ``FileNotFoundError``,
``PermissionError``, ``TimeoutError``, ``ConnectionError`` and ``BlobSizeMismatch``, each with a generic
message, since backend messages name the bucket, key, endpoint or local path and could reach an error body.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from storage_backends.base import BlobSizeMismatch, RangeNotSupported

# The only messages that cross the boundary; the original stays reachable as __cause__ for debugging.
MESSAGES: dict[type[OSError], str] = {
    FileNotFoundError: "storage object not found",
    PermissionError: "storage refused access",
    TimeoutError: "storage did not answer in time",
    ConnectionError: "storage unavailable",
}

# HTTP status (S3 or a plain HTTP server) -> built-in; any other status >= 400 is ConnectionError.
STATUS_TO_ERROR: dict[int, type[OSError]] = {
    401: PermissionError,
    403: PermissionError,  # S3 also answers 403 for a missing key when ListBucket is not granted
    404: FileNotFoundError,
    407: PermissionError,
    408: TimeoutError,
    410: FileNotFoundError,
    504: TimeoutError,
}

# errno of a plain OSError -> built-in; any other errno is ConnectionError
# (s3fs raises EBUSY for SlowDown/503 and EREMOTEIO for 500).
ERRNO_TO_ERROR: dict[int, type[OSError]] = {
    errno.ENOENT: FileNotFoundError,
    errno.ENOTDIR: FileNotFoundError,
    errno.EISDIR: FileNotFoundError,
    errno.EACCES: PermissionError,
    errno.EPERM: PermissionError,
    errno.ETIMEDOUT: TimeoutError,
}


def error_for_status(status: int) -> type[OSError] | None:
    """The built-in an HTTP status stands for, or None for a success or redirect."""
    if status < 400:
        return None
    return STATUS_TO_ERROR.get(status, ConnectionError)


def raise_for_status(status: int) -> None:
    """Raise the built-in for a failing HTTP status (a backend answer we read ourselves)."""
    error = error_for_status(status)
    if error is not None:
        raise error(MESSAGES[error])


def _status_of_aiohttp(exc: BaseException) -> type[OSError] | None:
    return error_for_status(getattr(exc, "status", 0) or 500) or ConnectionError


def _status_of_botocore(exc: BaseException) -> type[OSError] | None:
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500
    return error_for_status(status) or ConnectionError


def _by_errno(exc: BaseException) -> type[OSError]:
    return ERRNO_TO_ERROR.get(getattr(exc, "errno", None) or 0, ConnectionError)


def _retried(exc: BaseException) -> type[OSError]:
    # After the retry urllib3 raises MaxRetryError: what counts is the fault that ended the last attempt.
    return builtin_for(exc.reason) or ConnectionError  # type: ignore[attr-defined]


def _status_of_azure(exc: BaseException) -> type[OSError]:
    return error_for_status(getattr(exc, "status_code", 500) or 500) or ConnectionError


def _status_of_gcs(exc: BaseException) -> type[OSError]:
    return error_for_status(getattr(exc, "code", 500) or 500) or ConnectionError


# (module, exception class, built-in or a function of the exception), in the order they are tried: the first
# ``isinstance`` match wins, so subclasses come before their bases.
_CLIENT_EXCEPTIONS: tuple[tuple[str, str, type[OSError] | object], ...] = (
    ("botocore.exceptions", "ConnectTimeoutError", TimeoutError),
    ("botocore.exceptions", "ReadTimeoutError", TimeoutError),
    ("botocore.exceptions", "ClientError", _status_of_botocore),
    ("botocore.exceptions", "BotoCoreError", ConnectionError),
    # The object was replaced while we read it: a retry will read the new one.
    ("s3fs.utils", "FileExpired", ConnectionError),
    ("urllib3.exceptions", "MaxRetryError", _retried),
    # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError in urllib3 2: an outage, not a timeout.
    ("urllib3.exceptions", "NewConnectionError", ConnectionError),
    ("urllib3.exceptions", "TimeoutError", TimeoutError),  # connect and read timeouts
    ("urllib3.exceptions", "HTTPError", ConnectionError),  # reset, TLS, body cut short, retries exhausted
    ("azure.core.exceptions", "ResourceNotFoundError", FileNotFoundError),  # the azure extra
    ("azure.core.exceptions", "ClientAuthenticationError", PermissionError),
    ("azure.core.exceptions", "ServiceRequestTimeoutError", TimeoutError),
    ("azure.core.exceptions", "ServiceResponseTimeoutError", TimeoutError),
    ("azure.core.exceptions", "HttpResponseError", _status_of_azure),
    ("azure.core.exceptions", "AzureError", ConnectionError),  # ServiceRequestError (refused, DNS), ...Response (reset)
    ("gcsfs.retry", "HttpError", _status_of_gcs),  # the gcs extra
    ("aiohttp", "ClientResponseError", _status_of_aiohttp),
    ("aiohttp", "ClientError", ConnectionError),  # refused, reset, DNS, payload cut short
)
_BUILT_INS: tuple[tuple[type[BaseException], type[OSError] | object], ...] = (
    (FileNotFoundError, FileNotFoundError),
    (IsADirectoryError, FileNotFoundError),
    (NotADirectoryError, FileNotFoundError),
    (PermissionError, PermissionError),
    (ConnectionError, ConnectionError),
    (OSError, _by_errno),
)


def _type_table() -> tuple[tuple[type[BaseException], type[OSError] | object], ...]:
    """Exception class -> built-in (or a function of the exception); the first ``isinstance`` match wins.

    A client library's exception exists only once its module is imported, so the table takes the classes of the
    modules already loaded (sys.modules) and never imports one: importing them all took ~0.5 s of every worker's
    start on a local root (botocore, s3fs, aiohttp, azure, gcsfs) for exceptions that could not occur. Looked up per
    call (a few microseconds, on error paths only): a backend opened later, or a module still being imported by
    another thread, is seen as it is now."""
    found = []
    for module_name, class_name, target in _CLIENT_EXCEPTIONS:
        module = sys.modules.get(module_name)
        exc_type = getattr(module, class_name, None) if module is not None else None
        if isinstance(exc_type, type) and issubclass(exc_type, BaseException):
            found.append((exc_type, target))
    return ((TimeoutError, TimeoutError), *found, *_BUILT_INS)


def builtin_for(exc: BaseException) -> type[OSError] | None:
    """The built-in a backend exception stands for, or None when it is not a storage fault (a bug)."""
    if isinstance(exc, BlobSizeMismatch):
        return BlobSizeMismatch
    for exc_type, target in _type_table():
        if isinstance(exc, exc_type):
            return target(exc) if not isinstance(target, type) else target  # type: ignore[operator]
    return None


def translate(exc: BaseException) -> OSError | None:
    """A fresh built-in with a generic message for a backend exception, or None to let it through."""
    if isinstance(exc, BlobSizeMismatch | RangeNotSupported):  # ours already, with a generic message
        return exc
    target = builtin_for(exc)
    if target is None:
        return None
    return target(MESSAGES.get(target, "storage error"))


@contextmanager
def translated_errors(unknown_is_outage: bool = False) -> Iterator[None]:
    """Re-raise any storage fault inside the block as a built-in with a generic message (`unknown_is_outage`: an
    exception the table does not know is a ConnectionError too, for backends whose client library is not ours)."""
    try:
        yield
    except Exception as exc:
        translated = translate(exc)
        if translated is None and unknown_is_outage and not isinstance(exc, ValueError | TypeError):
            translated = ConnectionError(MESSAGES[ConnectionError])
        if translated is None or translated is exc:
            raise
        raise translated from exc
