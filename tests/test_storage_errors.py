"""The storage error table: backend exceptions in, generic built-ins out."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from botocore import exceptions as boto
from s3fs.utils import FileExpired

from storage_backends.base import BlobSizeMismatch
from storage_backends.errors import (
    MESSAGES,
    builtin_for,
    error_for_status,
    raise_for_status,
    translate,
    translated_errors,
)

SECRET_BITS = ("my-bucket", "secret/key.rpm", "10.0.0.7:9000", "/srv/pkgs")
LEAKY = "my-bucket/secret/key.rpm at http://10.0.0.7:9000 (/srv/pkgs)"
CONNECTION_KEY = SimpleNamespace(ssl=None, host="10.0.0.7", port=9000)


def _response_error(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(None, (), status=status, message=LEAKY)  # type: ignore[arg-type]


def _client_error(code: str, status: int) -> boto.ClientError:
    response = {"Error": {"Code": code, "Message": LEAKY}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return boto.ClientError(response, "GetObject")  # type: ignore[arg-type]


CASES = [
    # built-ins raised by fsspec / s3fs already translated
    (FileNotFoundError(LEAKY), FileNotFoundError),
    (IsADirectoryError(LEAKY), FileNotFoundError),
    (NotADirectoryError(LEAKY), FileNotFoundError),
    (PermissionError(LEAKY), PermissionError),
    (TimeoutError(LEAKY), TimeoutError),
    (ConnectionRefusedError(errno.ECONNREFUSED, LEAKY), ConnectionError),
    (ConnectionResetError(LEAKY), ConnectionError),
    # s3fs: SlowDown/503 -> EBUSY, 500 -> EREMOTEIO, unknown codes -> EIO
    (OSError(errno.EBUSY, LEAKY), ConnectionError),
    (OSError(errno.EREMOTEIO, LEAKY), ConnectionError),
    (OSError(errno.EIO, LEAKY), ConnectionError),
    (OSError(errno.ETIMEDOUT, LEAKY), TimeoutError),
    (OSError(errno.ENOENT, LEAKY), FileNotFoundError),
    (OSError(errno.EACCES, LEAKY), PermissionError),
    (OSError(LEAKY), ConnectionError),
    (FileExpired(filename=LEAKY, e_tag="abc"), ConnectionError),
    # aiohttp (fsspec's HTTP backend)
    (_response_error(404), FileNotFoundError),
    (_response_error(410), FileNotFoundError),
    (_response_error(401), PermissionError),
    (_response_error(403), PermissionError),
    (_response_error(408), TimeoutError),
    (_response_error(504), TimeoutError),
    (_response_error(500), ConnectionError),
    (_response_error(502), ConnectionError),
    (_response_error(503), ConnectionError),
    (_response_error(429), ConnectionError),
    (aiohttp.ClientConnectorError(CONNECTION_KEY, ConnectionRefusedError()), ConnectionError),
    (aiohttp.ServerDisconnectedError(), ConnectionError),
    (aiohttp.ClientPayloadError(LEAKY), ConnectionError),
    (aiohttp.ServerTimeoutError(LEAKY), TimeoutError),
    (aiohttp.ConnectionTimeoutError(LEAKY), TimeoutError),
    # botocore (s3fs leaves non-ClientError exceptions as they are)
    (boto.EndpointConnectionError(endpoint_url=LEAKY), ConnectionError),
    (boto.ConnectTimeoutError(endpoint_url=LEAKY), TimeoutError),
    (boto.ReadTimeoutError(endpoint_url=LEAKY), TimeoutError),
    (boto.NoCredentialsError(), ConnectionError),
    (_client_error("NoSuchKey", 404), FileNotFoundError),
    (_client_error("AccessDenied", 403), PermissionError),
    (_client_error("SlowDown", 503), ConnectionError),
    (_client_error("InternalError", 500), ConnectionError),
]


@pytest.mark.parametrize(("backend_error", "expected"), CASES, ids=lambda v: type(v).__name__)
def test_table_maps_to_builtin_with_generic_message(backend_error: BaseException, expected: type) -> None:
    translated = translate(backend_error)
    assert type(translated) is expected
    assert str(translated) == MESSAGES[expected]
    assert not any(bit in str(translated) for bit in SECRET_BITS)


@pytest.mark.parametrize(("backend_error", "expected"), CASES[:12], ids=lambda v: type(v).__name__)
def test_context_manager_raises_builtin_and_keeps_cause(backend_error: BaseException, expected: type) -> None:
    with pytest.raises(expected) as caught, translated_errors():
        raise backend_error
    assert type(caught.value) is expected
    assert caught.value.__cause__ is backend_error


def test_blob_size_mismatch_passes_unchanged() -> None:
    mismatch = BlobSizeMismatch("storage object size differs from the catalog")
    with pytest.raises(BlobSizeMismatch) as caught, translated_errors():
        raise mismatch
    assert caught.value is mismatch
    assert builtin_for(mismatch) is BlobSizeMismatch


@pytest.mark.parametrize("bug", [ValueError("bad path"), TypeError("oops"), KeyError("x"), RuntimeError("x")])
def test_programming_errors_are_not_disguised_as_outages(bug: Exception) -> None:
    assert translate(bug) is None
    with pytest.raises(type(bug)) as caught, translated_errors():
        raise bug
    assert caught.value is bug


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, None), (204, None), (301, None), (304, None), (400, ConnectionError), (401, PermissionError),
     (403, PermissionError), (404, FileNotFoundError), (408, TimeoutError), (410, FileNotFoundError),
     (416, ConnectionError), (500, ConnectionError), (503, ConnectionError), (504, TimeoutError)],
)  # fmt: skip
def test_status_table(status: int, expected: type | None) -> None:
    assert error_for_status(status) is expected
    if expected is None:
        raise_for_status(status)
    else:
        with pytest.raises(expected, match=MESSAGES[expected]):
            raise_for_status(status)


def test_messages_are_generic() -> None:
    assert set(MESSAGES) == {FileNotFoundError, PermissionError, TimeoutError, ConnectionError}
    assert all(message.startswith("storage ") for message in MESSAGES.values())


def test_a_local_fault_imports_no_cloud_client(tmp_path) -> None:
    """Translating a local root's error looks only at the client libraries already loaded: a worker on local
    storage never imports botocore, s3fs, aiohttp, azure or gcsfs for it (they took ~0.5 s of every worker's start).
    In a fresh interpreter, as a worker is."""
    probe = ("import sys\n"
             "from storage_backends.errors import translate\n"
             "from storage_backends import open_storage\n"
             f"storage = open_storage({(tmp_path / 'root').as_uri()!r})\n"
             "try:\n"
             "    storage.read_bytes('missing')\n"
             "except FileNotFoundError as error:\n"
             "    assert str(error) == 'storage object not found', error\n"
             "assert isinstance(translate(ConnectionResetError(104, 'x')), ConnectionError)\n"
             "print(sorted(m for m in ('botocore', 's3fs', 'aiohttp', 'aiobotocore', 'azure.core', 'gcsfs')"
             " if m in sys.modules))\n")
    (tmp_path / "root").mkdir()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_client_library_loaded_later_is_known(monkeypatch) -> None:
    """The table is looked up per call: a module imported after the first translation (a backend opened later)
    counts, and one gone (or still being imported: its classes not yet defined) is skipped, not an error."""
    monkeypatch.delitem(sys.modules, "botocore.exceptions")
    assert builtin_for(boto.EndpointConnectionError(endpoint_url=LEAKY)) is None  # not a known fault any more
    monkeypatch.setitem(sys.modules, "botocore.exceptions", SimpleNamespace())  # half imported: no classes yet
    assert builtin_for(boto.EndpointConnectionError(endpoint_url=LEAKY)) is None
    monkeypatch.setitem(sys.modules, "botocore.exceptions", boto)
    assert builtin_for(boto.EndpointConnectionError(endpoint_url=LEAKY)) is ConnectionError
