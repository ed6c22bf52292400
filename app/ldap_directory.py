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

    # ---- the credential store's interface (app/users.py) ----
    def verify(self, login: str, password: str) -> User | None:
        """The user with their entitlements if the directory accepts this password, else None; raises
        DirectoryUnavailable when it cannot tell."""
        # An empty password would be an "unauthenticated bind" (RFC 4513 5.1.2), which many servers accept as
        # anonymous: it must never count as a sign-in.
        if not acceptable_login(login) or not password or "\0" in password:
            return None
        with self._failures("sign-in"):
            if self.settings.direct_bind:
                dn = self._template_dn(login)
                with self._bound(dn, password) as user_session:
                    if user_session is None:
                        return None
                    return self._user(login, dn, user_session)
            with self._service_session() as service:
                dn = self._find(service, login)
                if dn is None:
                    self._decoy_bind(password)  # an unknown login costs a bind too
                    return None
                user = self._user(login, dn, service)
            with self._bound(dn, password) as user_session:
                return user if user_session is not None else None

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
            if self.settings.direct_bind:
                dn = self._template_dn(login)
                if not self._exists(session, dn):
                    return None
            else:
                dn = self._find(session, login)
                if dn is None:
                    return None
            return self._user(login, dn, session)

    def ping(self) -> None:
        """Reach the directory (and bind as the service account, if one is set); DirectoryUnavailable otherwise."""
        with self._failures("ping"), self._service_session() as session:
            session.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["1.1"])

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
        """The DN of the one entry the user filter matches, else None (none, or several: ambiguous, refused)."""
        query = self.settings.user_filter.replace(LOGIN_PLACEHOLDER, escape_filter_value(login))
        session.search(self.settings.user_base, query, attributes=["1.1"], size_limit=2)
        self._check_search(session, "user search")
        entries = [entry for entry in session.response or () if entry.get("type") == "searchResEntry"]
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("the user filter matches several entries for one login: refused")
            return None
        return entries[0]["dn"]

    def _exists(self, session: ldap3.Connection, dn: str) -> bool:
        session.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["1.1"])
        if session.result["result"] == NO_SUCH_OBJECT:
            return False
        self._check_search(session, "user entry")
        return bool(session.response)

    def _user(self, login: str, dn: str, session: ldap3.Connection) -> User:
        """The user with the cns of their groups under the group base as entitlements (lower case: LDAP compares
        cn case-insensitively), from groups listing them and from their own memberOf (Active Directory)."""
        dn_value = escape_filter_value(dn)
        session.search(self.settings.group_base, f"(|(member={dn_value})(uniqueMember={dn_value}))",
                       attributes=["cn"])
        self._check_search(session, "group search")
        names = {str(cn).lower() for entry in session.response or () if entry.get("type") == "searchResEntry"
                 for cn in entry.get("attributes", {}).get("cn", ())}
        session.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["memberOf"])
        self._check_search(session, "memberOf")
        for entry in session.response or ():
            for group_dn in entry.get("attributes", {}).get("memberOf", ()) if entry.get("type") == "searchResEntry" \
                    else ():
                name = self._group_name(str(group_dn))
                if name:
                    names.add(name)
        return User(login=login, password_hash="", entitlements=frozenset(names),
                    admin=self.settings.admin_group.lower() in names)

    def _group_name(self, group_dn: str) -> str | None:
        """The cn of a memberOf value that names a group directly under the group base, else None."""
        try:
            group, base = parse_dn(group_dn), parse_dn(self.settings.group_base)
        except LDAPException:
            return None
        normalise = [(kind.lower(), value.lower()) for kind, value, _ in group]
        if len(group) != len(base) + 1 or normalise[1:] != [(k.lower(), v.lower()) for k, v, _ in base]:
            return None
        kind, value = normalise[0]
        return value if kind == "cn" else None

    @staticmethod
    def _check_search(session: ldap3.Connection, what: str) -> None:
        """A search the directory could not do (anything but success, no such object, or a size limit reached)
        means it cannot answer now."""
        code = session.result.get("result", 0) if session.result else 0
        if code not in (0, NO_SUCH_OBJECT, 4):  # 4: sizeLimitExceeded, the filter matched several: refused above
            raise DirectoryUnavailable(f"{what}: {session.result.get('description', code)}")

    def _connection(self, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        # A Server per connection: an ldap3 Server remembers a failed address and skips it for 5 s (a circuit
        # breaker shared by every thread), so a directory back up would still get 503s; the object is cheap.
        server = ldap3.Server(self.settings.url, connect_timeout=self.settings.timeout, tls=self._tls,
                              get_info=ldap3.NONE)
        connection = ldap3.Connection(server, user=user, password=password, read_only=True,
                                      receive_timeout=self.settings.timeout, auto_referrals=False,
                                      raise_exceptions=False)
        connection.open(read_server_info=False)
        if self.settings.starttls and not connection.start_tls(read_server_info=False):
            raise DirectoryUnavailable("StartTLS refused")
        return connection

    @contextlib.contextmanager
    def _bound(self, dn: str, password: str) -> Iterator[ldap3.Connection | None]:
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
    def _service_session(self) -> Iterator[ldap3.Connection]:
        """Bound as the service account, or anonymous without one. A service account the directory refuses is
        the directory's fault from the user's side (503), and the log says so."""
        connection = self._connection(self.settings.bind_dn or None, self.settings.bind_password or None)
        try:
            if self.settings.bind_dn and not connection.bind(read_server_info=False):
                raise DirectoryUnavailable(
                    f"the service account PKGDL_LDAP_BIND_DN was refused: {connection.result.get('description')}")
            yield connection
        finally:
            connection.unbind()

    def _decoy_bind(self, password: str) -> None:
        """Bind as a DN that does not exist, so an unknown login costs about what a wrong password does."""
        with self._bound(f"cn=pkgdl-unknown-login,{self.settings.user_base}", password):
            pass

    @contextlib.contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        """Turn ldap3's communication errors (refused, reset, timed out, TLS) into DirectoryUnavailable."""
        try:
            yield
        except DirectoryUnavailable as unavailable:
            log.warning("directory unavailable (%s): %s", what, unavailable)
            raise
        except (LDAPException, OSError) as fault:
            # The exception's class names the fault; its text may quote the server's reply, never our secrets,
            # but the class is all an operator needs with the URL.
            log.warning("directory unavailable (%s): %s at %s", what, type(fault).__name__, self.settings.url)
            raise DirectoryUnavailable(type(fault).__name__) from None
