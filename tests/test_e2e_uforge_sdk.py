"""The UForge SDK's whole flow against real gunicorn: its request helper re-enacted, its bindings parsing.

`Api._REST` of uforge_python_sdk 3.8.13 (Python 2, so re-enacted here line for line): `requests` with
`HTTPBasicAuth(username, password)` on every call, `Content-Type: application/xml` and `Accept: application/xml` on
every request (a GET too), keyword arguments as query parameters; a status outside 200-299 raises
`Exception(parseString(body))`; a 2xx body becomes objects only when `resp.headers['content-type'] ==
"application/xml"` (the whole string), else the caller gets the bytes.
"""

from __future__ import annotations

import hashlib
import warnings
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fixtures_service import E2E_USERS, make_service

pytestmark = pytest.mark.integration
SCAN = "/users/alice/scannedinstances/12/scans/34"


class UForgeError(Exception):
    """What the SDK raises: an Exception holding the parsed uforgeError."""


def sdk_rest(bindings, base_url: str, url: str, method: str = "GET", username: object = None,
             password: object = None, **kwargs: object):
    """The SDK's `_REST`, minus API keys and streaming (unused by these calls)."""
    headers = {"Content-Type": "application/xml", "Accept": "application/xml"}
    with warnings.catch_warnings():  # requests warns (and sends "None:None") for an Api built without credentials
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = requests.auth.HTTPBasicAuth(username, password)
        response = getattr(requests, method.lower())(base_url + url, params=kwargs, auth=auth, headers=headers,
                                                     data=None, timeout=30)
    if response.status_code < 200 or response.status_code >= 300:
        raise UForgeError(bindings.CreateFromDocument(response.content))
    if response.status_code != 204 and response.headers.get("content-type") == "application/xml":
        return bindings.CreateFromDocument(response.content)
    return response.content


def bin_call(binary_uri: str) -> tuple[str, dict[str, str]]:
    """What a client does with a listed binaryUri and the SDK's `Bin.Getall(Downloadtoken=...)`: the path, and the
    token as the keyword argument."""
    parts = urlsplit(binary_uri)
    return "/" + parts.path, {"downloadToken": parse_qs(parts.query)["downloadToken"][0]}


@pytest.fixture
def alice():
    return {"username": "alice", "password": E2E_USERS["alice"]}


def test_listing_then_download_once_with_the_listed_link(service, uforge_sdk, alice):
    listing = sdk_rest(uforge_sdk, service.base_url, f"{SCAN}/packages", **alice)
    assert listing.total == len(service.pids)
    package = next(p for p in listing.scannedPackages.scannedPackage if p.name == "openssl-libs")
    path, token = bin_call(package.binaryUri)
    body = sdk_rest(uforge_sdk, service.base_url, path, **token)  # an Api built without credentials
    assert hashlib.sha256(body).hexdigest() == package.sha256sum == package.digest
    with pytest.raises(UForgeError) as refused:
        sdk_rest(uforge_sdk, service.base_url, path, **token)
    error = refused.value.args[0]
    assert (error.statusCode, error.requestMethod, error.requestUri) == (403, "GET", path)
    # The SDK always sends its user's credentials: with them, the same spent link still downloads (Basic wins).
    again = sdk_rest(uforge_sdk, service.base_url, path, **alice, **token)
    assert hashlib.sha256(again).hexdigest() == package.sha256sum


def test_a_listed_link_downloads_with_no_authorization_header_at_all(service, uforge_sdk, alice):
    listing = sdk_rest(uforge_sdk, service.base_url, f"{SCAN}/packages", **alice)
    package = listing.scannedPackages.scannedPackage[0]
    path, token = bin_call(package.binaryUri)
    response = requests.get(service.base_url + path, params=token, headers={"Accept": "application/xml"}, timeout=30)
    assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == package.sha256sum


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory):
    """A service with a low failed-login limit (the shared one allows 1000 a minute)."""
    running = make_service(tmp_path_factory.mktemp("sdk-throttle"), {"PKGDL_LOGIN_ATTEMPTS_PER_MINUTE": "3"})
    yield running
    running.stop()


def test_the_sdk_without_credentials_is_never_throttled_on_links(strict_service, uforge_sdk):
    """Emailed links fetched with an Api built without credentials: it sends `Basic None:None` with every one, a
    failing login each time, but the token decides, so a batch of links is not locked out after a few."""
    service = strict_service
    for _ in range(3):
        for source in service.files.values():
            pid = service.pids[source.name]
            link = service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", "34", "--pid", str(pid))
            path, token = bin_call(urlsplit(link.stdout.strip())._replace(scheme="", netloc="").geturl()[1:])
            assert hashlib.sha256(sdk_rest(uforge_sdk, service.base_url, path, **token)).hexdigest() \
                == hashlib.sha256(source.read_bytes()).hexdigest()


def test_sdk_errors_parse(service, uforge_sdk, alice):
    cases = [
        ({}, f"{SCAN}/packages", 401),
        ({"username": "alice", "password": "wrong"}, f"{SCAN}/packages", 401),
        ({"username": "bob", "password": E2E_USERS["bob"]}, f"{SCAN}/packages", 403),
        (alice, "/users/alice/scannedinstances/12/scans/99/packages", 404),
        (alice, f"{SCAN}/packages/999999/bin", 404),
    ]
    for credentials, url, status in cases:
        with pytest.raises(UForgeError) as raised:
            sdk_rest(uforge_sdk, service.base_url, url, **credentials)
        assert raised.value.args[0].statusCode == status, url
    with pytest.raises(UForgeError) as forged:
        sdk_rest(uforge_sdk, service.base_url, f"{SCAN}/packages/1/bin", downloadToken="forged")
    assert forged.value.args[0].statusCode == 403
