"""One table turning backend exceptions (aiohttp, botocore, s3fs, the OS) into built-ins, once, at the edge.

In the style of ``s3fs/errors.py``: callers above the storage boundary see only ``FileNotFoundError``,
``PermissionError``, ``TimeoutError``, ``ConnectionError`` and ``BlobSizeMismatch``, each with a generic
message, since backend messages name the bucket, key, endpoint or local path and could reach an error body.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

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


@cache
def _type_table() -> tuple[tuple[type[BaseException], type[OSError] | object], ...]:
    """Exception class -> built-in (or a function of the exception); the first ``isinstance`` match wins."""
    table: list[tuple[type[BaseException], type[OSError] | object]] = [(TimeoutError, TimeoutError)]
    try:  # s3fs brings botocore; the import is guarded so the table also works without it
        from botocore import exceptions as boto

        table += [
            (boto.ConnectTimeoutError, TimeoutError),
            (boto.ReadTimeoutError, TimeoutError),
            (boto.ClientError, _status_of_botocore),
            (boto.BotoCoreError, ConnectionError),
        ]
    except ImportError:  # pragma: no cover - s3fs pulls botocore in
        pass
    try:
        from s3fs.utils import FileExpired

        # The object was replaced while we read it: a retry will read the new one.
        table.append((FileExpired, ConnectionError))
    except ImportError:  # pragma: no cover
        pass
    try:
        import urllib3.exceptions as urllib3_errors

        table += [
            # After the retry urllib3 raises MaxRetryError: what counts is the fault that ended the last attempt.
            (urllib3_errors.MaxRetryError, lambda exc: builtin_for(exc.reason) or ConnectionError),
            # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError in urllib3 2: an outage, not a timeout.
            (urllib3_errors.NewConnectionError, ConnectionError),
            (urllib3_errors.TimeoutError, TimeoutError),  # connect and read timeouts
            (urllib3_errors.HTTPError, ConnectionError),  # reset, TLS, body cut short, retries exhausted
        ]
    except ImportError:  # pragma: no cover - botocore pulls urllib3 in
        pass
    try:  # the azure extra
        from azure.core import exceptions as azure

        table += [
            (azure.ResourceNotFoundError, FileNotFoundError),
            (azure.ClientAuthenticationError, PermissionError),
            (azure.ServiceRequestTimeoutError, TimeoutError),
            (azure.ServiceResponseTimeoutError, TimeoutError),
            (azure.HttpResponseError, lambda exc: error_for_status(exc.status_code or 500) or ConnectionError),
            (azure.AzureError, ConnectionError),  # ServiceRequestError (refused, DNS), ServiceResponseError (reset)
        ]
    except ImportError:
        pass
    try:  # the gcs extra
        from gcsfs.retry import HttpError as GcsHttpError

        table.append((GcsHttpError, lambda exc: error_for_status(getattr(exc, "code", 500) or 500) or ConnectionError))
    except ImportError:
        pass
    try:
        import aiohttp

        table += [
            (aiohttp.ClientResponseError, _status_of_aiohttp),
            (aiohttp.ClientError, ConnectionError),  # refused, reset, DNS, payload cut short
        ]
    except ImportError:  # pragma: no cover
        pass
    table += [
        (FileNotFoundError, FileNotFoundError),
        (IsADirectoryError, FileNotFoundError),
        (NotADirectoryError, FileNotFoundError),
        (PermissionError, PermissionError),
        (ConnectionError, ConnectionError),
        (OSError, _by_errno),
    ]
    return tuple(table)


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
