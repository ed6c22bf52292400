"""Users from an LDAP directory or Active Directory (PKGDL_AUTH_BACKEND=ldap): a bind as the user checks the password,
the groups under PKGDL_LDAP_GROUP_BASE that list the user give the entitlements (a group's cn is an entitlement name).

Library: ldap3. It is pure Python (python-ldap needs the OpenLDAP client headers at build time, a compiler in the
image and on every CI machine), maintained, and its synchronous connections are plain objects: one per check, so
threads share nothing. Checks run only on a cache miss (app/users.py's Authenticator remembers verified
credentials), so a connection per check costs nothing measurable.

A directory that cannot answer (refused, reset, silent past the timeout, busy, or refusing our service account)
raises DirectoryUnavailable: the caller answers 503, never 401, since a 401 makes clients drop good credentials.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from app.config import LdapSettings
from app.ids import is_uid
from app.users import User

log = logging.getLogger("pkgdl.ldap")

LOGIN_PLACEHOLDER = "{login}"
# Bind results that mean "these credentials are not accepted" (RFC 4511 4.1.9): a 401. Every other non-success
# result (busy, unavailable, timeLimitExceeded, other, ...) is the directory failing: a 503.
REFUSED_CREDENTIALS = frozenset({
    48,  # inappropriateAuthentication
    49,  # invalidCredentials (AD adds the reason: unknown user, locked, expired)
    50,  # insufficientAccessRights
    53,  # unwillingToPerform (e.g. a disabled account)
})
NO_SUCH_OBJECT = 32
SIZE_LIMIT_EXCEEDED = 4
# After the directory failed, sign-ins not remembered get their 503 at once for this long: threads do not pile up
# waiting PKGDL_LDAP_TIMEOUT each (a UForge SDK sends "None:None" with every link), and the directory is asked again
# soon after it is back.
FAIL_FAST_SECONDS = 2.0
# Network steps of the longest sign-in (search then bind with StartTLS: connect, StartTLS, bind and search as the
# service account, connect, StartTLS and bind as the user, the groups' search), with one to spare; each may take
# PKGDL_LDAP_TIMEOUT.
SIGN_IN_STEPS = 9


class DirectoryUnavailable(ConnectionError):
    """The directory did not answer, or answered that it cannot serve (the message names no secret)."""


def escape_dn_value(value: str) -> str:
    """An attribute value escaped for a DN string (RFC 4514 section 2.4). ldap3's escape_rdn leaves NUL as a raw
    byte after a backslash; this writes it as \\00, as the RFC asks, and escapes "#" wherever it is (the RFC asks
    it only in front; escaping it anywhere is allowed, and ldap3's own parser wants it)."""
    chars = ["\\" + char if char in '"#+,;<>\\=' else "\\00" if char == "\0" else char for char in value]
    for edge in {0, len(chars) - 1} if value else ():
        if value[edge] == " ":  # a space in front or at the end
            chars[edge] = "\\ "
    return "".join(chars)


def escape_filter_value(value: str) -> str:
    """An assertion value escaped for a search filter (RFC 4515 section 3: *, (, ), \\ and NUL)."""
    return escape_filter_chars(value)


def acceptable_login(login: str) -> bool:
    """Logins outside the uid pattern (app/ids.py) never reach the directory: no `*`, `(`, `,`, `=`, NUL, space or
    non-ASCII character can change a filter or a DN, even before escaping (which is applied as well)."""
    return is_uid(login)


class LdapDirectory:
    """Checks credentials against the directory and reads a login's entitlements."""

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self._tls = None
        if settings.starttls or settings.url.lower().startswith("ldaps:"):
            self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file or None,
                                  version=ssl.PROTOCOL_TLS_CLIENT)
        self._base = parse_dn(settings.group_base)
        self._silent_until = 0.0  # after an outage, sign-ins fail fast until then (per process)

    # ---- the credential store's interface (app/users.py) ----
    @property
    def longest_check_seconds(self) -> float:
        """How long one sign-in may take: concurrent sign-ins with the same credentials wait that long for it."""
        return SIGN_IN_STEPS * self.settings.timeout

    def verify(self, login: str, password: str) -> User | None:
        """The user with their entitlements if the directory accepts this password, else None; raises
        DirectoryUnavailable when it cannot tell. Known and unknown logins cost the same steps: (a search and)
        one bind, the entry and groups read only after the bind succeeded."""
        # An empty password would be an "unauthenticated bind" (RFC 4513 5.1.2), which many servers accept as
        # anonymous: it must never count as a sign-in.
        if not acceptable_login(login) or not password or "\0" in password:
            return None
        # Sent as bytes: ldap3 would SASLprep a str and raise on a tab or a control character (a 503 for a
        # password the directory may well hold); the directory compares the bytes it was given when it was set.
        secret = password.encode("utf-8", "surrogateescape")
        if time.monotonic() < self._silent_until:  # it failed moments ago: do not hold a thread for the timeout
            raise DirectoryUnavailable("failed moments ago")
        with self._failures("sign-in"):
            if self.settings.direct_bind:
                dn = self._template_dn(login)
                with self._bound(dn, secret) as session:
                    return None if session is None else self._user(login, dn, session)
            with self._service_session() as service:
                dn = self._find(service, login)
                # An unknown login binds too (as a DN that does not exist), so it costs what a wrong password does.
                with self._bound(dn or f"cn=pkgdl-unknown-login,{self.settings.user_base}", secret) as session:
                    if session is None or dn is None:
                        return None
                return self._user(login, dn, service)

    def current(self, user: User) -> User:
        """A remembered user stays as verified until the cache entry expires (the cache's TTL bounds how long a
        group change or a disabled account takes to apply)."""
        return user

    # ---- operators' tools ----
    def lookup(self, login: str) -> User | None:
        """What the directory gives this login, without their password: as the service account if one is set,
        else anonymously (the directory's access rules decide what that may read)."""
        if not acceptable_login(login):
            return None
        with self._failures("lookup"), self._service_session() as session:
            dn = self._template_dn(login) if self.settings.direct_bind else self._find(session, login)
            return None if dn is None else self._user(login, dn, session)

    def ping(self, timeout: int | None = None) -> None:
        """Reach the directory (and bind as the service account, if one is set); DirectoryUnavailable otherwise."""
        with self._failures("ping"), self._service_session(timeout) as session:
            session.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["1.1"])

    def available(self) -> bool:
        """For /readyz: False while sign-ins fail fast after an outage, else a ping of at most a second or two
        (a probe must answer within its own timeout even when the directory is silent)."""
        if time.monotonic() < self._silent_until:
            return False
        try:
            self.ping(timeout=1)
        except DirectoryUnavailable:
            return False
        return True

    def describe(self) -> str:
        """Where the directory is and how users are found, without secrets (pkgdl check)."""
        how = f"bind as {self.settings.user_dn}" if self.settings.direct_bind else (
            f"search {self.settings.user_base} for {self.settings.user_filter} as {self.settings.bind_dn}")
        tls = ", StartTLS" if self.settings.starttls else ""
        return f"{self.settings.url}{tls}; {how}; groups under {self.settings.group_base}"

    # ---- the steps ----
    def _template_dn(self, login: str) -> str:
        return self.settings.user_dn.replace(LOGIN_PLACEHOLDER, escape_dn_value(login))

    def _find(self, session: ldap3.Connection, login: str) -> str | None:
        """The DN of the one entry the user filter matches, else None (none, or several: ambiguous, refused,
        also when the directory's size limit cut the answer to one)."""
        query = self.settings.user_filter.replace(LOGIN_PLACEHOLDER, escape_filter_value(login))
        session.search(self.settings.user_base, query, attributes=["1.1"], size_limit=2)
        self._check_search(session, "user search")
        entries = [entry for entry in session.response or () if entry.get("type") == "searchResEntry"]
        if len(entries) != 1 or session.result.get("result") == SIZE_LIMIT_EXCEEDED:
            if entries:
                log.warning("the user filter matches several entries for one login: refused")
            return None
        return entries[0]["dn"]

    def _user(self, login: str, dn: str, session: ldap3.Connection) -> User | None:
        """The user, if their entry holds exactly this login (spelled so: a directory matches names without
        regard to case, and a second value would let one password speak for two uids), with the cns of their
        groups directly under the group base as entitlements (lower case: LDAP compares cn case-insensitively)."""
        attribute = self.settings.login_attribute
        session.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attribute, "memberOf"])
        self._check_search(session, "user entry")
        entry = next((e for e in session.response or () if e.get("type") == "searchResEntry"), None)
        if entry is None:
            return None
        values = {name.lower(): value for name, value in entry.get("attributes", {}).items()}
        logins = values.get(attribute.lower(), [])
        if (logins if isinstance(logins, list) else [logins]) != [login]:
            log.info("sign-in refused: the directory entry does not hold exactly this login in %s", attribute)
            return None
        member_of = values.get("memberof", [])
        names = {self._group_name(str(group)) for group in (member_of if isinstance(member_of, list) else [member_of])}
        dn_value = escape_filter_value(dn)
        # One level only: the group's name is its own RDN, so a group in a sub-OU, or a cn value added to another
        # group, grants nothing.
        session.search(self.settings.group_base, f"(|(member={dn_value})(uniqueMember={dn_value}))",
                       search_scope=ldap3.LEVEL, attributes=["1.1"])
        self._check_search(session, "group search")
        names |= {self._group_name(e["dn"]) for e in session.response or () if e.get("type") == "searchResEntry"}
        names.discard(None)
        return User(login=login, password_hash="", entitlements=frozenset(names),
                    admin=self.settings.admin_group.lower() in names)

    def _group_name(self, group_dn: str) -> str | None:
        """The cn of a group directly under the group base (its RDN a single cn, not cn=x+ou=y), else None."""
        try:
            group = parse_dn(group_dn)
        except LDAPException:
            return None
        if len(group) != len(self._base) + 1 or group[0][2] != "," or group[0][0].lower() != "cn":
            return None
        same = lambda a, b: (a[0].lower(), a[1].lower(), a[2]) == (b[0].lower(), b[1].lower(), b[2])  # noqa: E731
        if not all(same(mine, base) for mine, base in zip(group[1:], self._base, strict=True)):
            return None
        return group[0][1].lower()

    @staticmethod
    def _check_search(session: ldap3.Connection, what: str) -> None:
        """A search the directory could not do (anything but success, no such object, or a size limit reached)
        means it cannot answer now."""
        code = session.result.get("result", 0) if session.result else 0
        if code not in (0, NO_SUCH_OBJECT, SIZE_LIMIT_EXCEEDED):
            raise DirectoryUnavailable(f"{what}: {session.result.get('description', code)}")

    def _connection(self, user: str | None = None, password: bytes | str | None = None,
                    timeout: int | None = None) -> ldap3.Connection:
        timeout = timeout or self.settings.timeout
        # A Server per connection: an ldap3 Server remembers a failed address and skips it for 5 s (a circuit
        # breaker shared by every thread), so a directory back up would still get 503s; the object is cheap.
        server = ldap3.Server(self.settings.url, connect_timeout=timeout, tls=self._tls, get_info=ldap3.NONE)
        connection = ldap3.Connection(server, user=user, password=password, read_only=True,
                                      receive_timeout=timeout, auto_referrals=False, raise_exceptions=False)
        connection.open(read_server_info=False)
        try:
            if self.settings.starttls and not connection.start_tls(read_server_info=False):
                raise DirectoryUnavailable("StartTLS refused")
        except BaseException:
            connection.unbind()
            raise
        return connection

    @contextlib.contextmanager
    def _bound(self, dn: str, password: bytes) -> Iterator[ldap3.Connection | None]:
        """A connection bound as ``dn``, or None when the directory refuses these credentials."""
        connection = self._connection(dn, password)
        try:
            if connection.bind(read_server_info=False):
                yield connection
                return
            code = connection.result.get("result")
            if code not in REFUSED_CREDENTIALS:
                raise DirectoryUnavailable(f"bind: {connection.result.get('description', code)}")
            yield None
        finally:
            connection.unbind()

    @contextlib.contextmanager
    def _service_session(self, timeout: int | None = None) -> Iterator[ldap3.Connection]:
        """Bound as the service account, or anonymous without one. A service account the directory refuses is
        the directory's fault from the user's side (503), and the log says so."""
        connection = self._connection(self.settings.bind_dn or None, self.settings.bind_password or None, timeout)
        try:
            if self.settings.bind_dn and not connection.bind(read_server_info=False):
                raise DirectoryUnavailable(
                    f"the service account PKGDL_LDAP_BIND_DN was refused: {connection.result.get('description')}")
            yield connection
        finally:
            connection.unbind()

    @contextlib.contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        """Turn ldap3's communication errors (refused, reset, timed out, TLS) into DirectoryUnavailable, and
        make sign-ins fail fast for FAIL_FAST_SECONDS after one."""
        try:
            yield
        except DirectoryUnavailable as unavailable:
            self._silent_until = time.monotonic() + FAIL_FAST_SECONDS
            log.warning("directory unavailable (%s): %s", what, unavailable)
            raise
        except (LDAPException, OSError) as fault:
            self._silent_until = time.monotonic() + FAIL_FAST_SECONDS
            # The exception's class names the fault; its text may quote the server's reply, never our secrets,
            # but the class is all an operator needs with the URL.
            log.warning("directory unavailable (%s): %s at %s", what, type(fault).__name__, self.settings.url)
            raise DirectoryUnavailable(type(fault).__name__) from None
