"""Who may download: Basic credentials that authorize win; otherwise a valid download token bound to the package."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import g, request
from flask_httpauth import HTTPBasicAuth

from app.errors import (
    AccessDenied,
    AuthenticationRequired,
    InvalidRequest,
    MethodNotAllowed,
    SignInUnavailable,
    TooManyAttempts,
)
from app.headers import BASIC_CACHE_HEADERS, TOKEN_CACHE_HEADERS
from app.ldap_directory import DirectoryUnavailable
from app.links import TOKEN_PARAMETER
from app.services import services
from app.tokens import PackageRef, TokenClaims, TokenRejected
from app.users import User

log = logging.getLogger("pkgdl.access")


class _StrictBasicAuth(HTTPBasicAuth):
    """Flask-HTTPAuth's Basic parser accepts any scheme; werkzeug's parser checks it and the base64 strictly."""

    def get_auth(self):  # noqa: ANN201 - the library's signature
        auth = request.authorization
        return auth if auth is not None and auth.type == "basic" and auth.username is not None else None


basic_auth = _StrictBasicAuth(realm="pkgdl")


@basic_auth.verify_password
def _verify_password(login: str, password: str) -> User | None:
    if not login:
        return None
    # Credentials verified moments ago skip the throttle's store: only guesses are counted and blocked, and a
    # guess can only have been remembered if it was accepted while not blocked.
    remembered = services().authenticator.remembered(login, password)
    if remembered is not None:
        return remembered
    throttle = services().throttle
    address = request.remote_addr or "unknown"
    retry_after = throttle.retry_after(login, address)
    if retry_after is not None:
        raise TooManyAttempts(retry_after)
    try:
        user = services().authenticator.authenticate(login, password)
    except DirectoryUnavailable:
        raise SignInUnavailable() from None  # not a failure: nothing is counted against the login
    if user is None:
        throttle.failed(login, address)
    return user


@dataclass(frozen=True)
class Access:
    """How a request was admitted: by a user's credentials or by a token's claims."""

    user: User | None = None
    claims: TokenClaims | None = None

    @property
    def by_token(self) -> bool:
        """True on the token path."""
        return self.claims is not None

    @property
    def cache_headers(self) -> dict[str, str]:
        """How every answer to this request may be cached (errors included: app/__init__.py)."""
        return TOKEN_CACHE_HEADERS if self.by_token else BASIC_CACHE_HEADERS


def token_in_request() -> str | None:
    """The downloadToken query parameter; empty counts as absent, several are a 400 (and burn nothing)."""
    if not request.query_string:  # the Basic hot path: skip parsing an absent query
        return None
    values = request.args.getlist(TOKEN_PARAMETER)
    if len(values) > 1:
        raise InvalidRequest("Only one downloadToken parameter is allowed.")
    return values[0] if values and values[0] else None


def authenticated_user() -> User | None:
    """The user whose Basic credentials are valid, else None."""
    auth = basic_auth.get_auth()
    if auth is None:
        return None
    return basic_auth.authenticate(auth, None) or None


def require_reader(uid: str) -> User:
    """The Basic path alone (the listing): 401 without valid credentials, 403 without the right to read ``uid``."""
    user = authenticated_user()
    if user is None:
        raise AuthenticationRequired()
    if not user.may_read(uid):
        raise AccessDenied()
    return user


def authorize_download(ref: PackageRef) -> Access:
    """Admit a request for one package binary, or raise 400/401/403/405."""
    token = token_in_request()
    if request.method == "POST" and token is None:
        raise MethodNotAllowed()
    try:
        user = authenticated_user()
    except (TooManyAttempts, SignInUnavailable):
        if token is None:
            raise
        # Throttled credentials are not even checked (no guess gets an answer), and the token decides: the UForge
        # SDK built without credentials sends "None:None" with every link, which must not lock a migration out.
        # Likewise a directory that cannot answer never stops a link.
        user = None
    if user is not None and user.may_read(ref.uid):
        g.access = Access(user=user)
        return g.access
    if token is None:
        raise AccessDenied() if user is not None else AuthenticationRequired()
    try:
        g.access = Access(claims=services().tokens.verify(token, ref))
        return g.access
    except TokenRejected as rejected:
        log.info("download token rejected: %s", rejected.reason)
        services().metrics.token_rejected(rejected.reason)
        raise AccessDenied() from None
