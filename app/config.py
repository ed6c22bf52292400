"""Settings: read from the environment once, in create_app, into a frozen object; bad values fail at start."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

OFFLOAD_MODES = ("none", "x-accel")
AUTH_BACKENDS = ("file", "ldap")
DEFAULT_BIND = "127.0.0.1:8080"  # gunicorn.conf.py's default for PKGDL_BIND
T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and what is expected."""


@dataclass(frozen=True)
class LdapSettings:
    """The PKGDL_LDAP_* variables (README, "Authentication"), checked by from_env."""

    url: str
    group_base: str
    user_dn: str = ""  # a DN template with {login}: direct bind
    bind_dn: str = ""  # else search then bind, as this service account
    bind_password: str = field(default="", repr=False)  # never in a repr, a log or an error
    user_base: str = ""
    user_filter: str = ""
    starttls: bool = False
    ca_file: str = ""
    admin_group: str = "pkgdl_admins"
    login_attribute: str = "uid"  # the attribute the login is compared with: from the DN template or the filter
    timeout: int = 5  # seconds per step (connect, StartTLS, bind, search); ldap3 takes whole seconds

    @property
    def direct_bind(self) -> bool:
        """True when the user's DN is made from the template (no search)."""
        return bool(self.user_dn)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment (README, "Configuration")."""

    storage_url: str
    storage_options: dict = field(default_factory=dict, hash=False)
    secret_keys: tuple[str, ...] = ()
    token_max_age: int = 86400
    burnlist_url: str = ""
    users_file: str = ""
    public_url: str = "http://127.0.0.1:8080"
    offload: str = "none"
    catalog_ttl: float = 30.0
    resume_window: int = 3600  # seconds after its claim a link may be resumed with Range; 0: strict single use
    login_attempts_per_minute: int = 10
    trusted_proxies: int = 0
    # The peers allowed to speak for clients in X-Forwarded-* (nginx's address; "*" for any), as gunicorn reads it.
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    auth_backend: str = "file"  # where users come from: the users file, or a directory (ldap)
    ldap: LdapSettings | None = None

    def __post_init__(self) -> None:
        if self.auth_backend not in AUTH_BACKENDS:
            raise ConfigError(f"PKGDL_AUTH_BACKEND must be one of {', '.join(AUTH_BACKENDS)}")
        if (self.auth_backend == "ldap") != (self.ldap is not None):
            raise ConfigError("PKGDL_AUTH_BACKEND=ldap goes with the PKGDL_LDAP_* settings")
        if self.offload not in OFFLOAD_MODES:
            raise ConfigError(f"PKGDL_OFFLOAD must be one of {', '.join(OFFLOAD_MODES)}")
        if self.token_max_age <= 0:
            raise ConfigError("PKGDL_TOKEN_MAX_AGE must be a positive number of seconds")
        if self.trusted_proxies < 0 or self.login_attempts_per_minute < 1:
            raise ConfigError("PKGDL_TRUSTED_PROXIES must be >= 0 and PKGDL_LOGIN_ATTEMPTS_PER_MINUTE >= 1")
        if self.resume_window < 0:
            raise ConfigError("PKGDL_RESUME_WINDOW must be zero (strict single use) or a positive number of seconds")
        if self.catalog_ttl < 0:
            raise ConfigError("PKGDL_CATALOG_TTL must be zero or a positive number of seconds")
        public = urlsplit(self.public_url)
        if public.scheme not in ("http", "https") or not public.netloc or public.query or public.fragment:
            raise ConfigError("PKGDL_PUBLIC_URL must be an absolute http(s) URL without query, e.g. https://dl.example.com")

    def require_signing_keys(self) -> None:
        """Refuse to serve or mint without a key (the CLI's users and catalog commands need none)."""
        if not self.secret_keys:
            raise ConfigError(
                "no signing key: set PKGDL_SECRET_KEYS (comma-separated, oldest first, newest last) "
                "or run `pkgdl demo` to create var/secret_keys"
            )


def check_for_serving(settings: Settings) -> None:
    """What the service needs before it takes a request, checked once (gunicorn's master, before it forks), each
    problem a ConfigError naming its variable: a signing key, a storage URL and a burn-list URL it can use, a local
    storage root that exists. No network I/O: a remote store that is down is /readyz's business."""
    from app.burnlist import open_burnlist
    from storage_backends import open_storage

    settings.require_signing_keys()
    try:
        open_storage(settings.storage_url, settings.storage_options)
    except ValueError as exc:
        raise ConfigError(f"PKGDL_STORAGE_URL: {exc}") from None
    root = urlsplit(settings.storage_url)
    if root.scheme == "file" and not Path(unquote(root.path)).is_dir():
        raise ConfigError(f"PKGDL_STORAGE_URL: the directory {unquote(root.path)} does not exist "
                          "(`pkgdl demo` or `pkgdl catalog add` creates it)")
    try:
        open_burnlist(settings.burnlist_url)
    except ValueError as exc:
        raise ConfigError(f"PKGDL_BURNLIST_URL: {exc}") from None


def from_env(environ: dict[str, str] | None = None, cwd: str | None = None) -> Settings:
    """Build Settings from environment variables, with defaults under <cwd>/var."""
    env = os.environ if environ is None else environ
    var = Path(cwd or os.getcwd()) / "var"
    auth_backend = (env.get("PKGDL_AUTH_BACKEND") or "file").strip().lower()
    return Settings(
        storage_url=env.get("PKGDL_STORAGE_URL") or (var / "packages").as_uri(),
        storage_options=_json_object(env.get("PKGDL_STORAGE_OPTIONS", ""), "PKGDL_STORAGE_OPTIONS"),
        secret_keys=_secret_keys(env.get("PKGDL_SECRET_KEYS", ""), var / "secret_keys"),
        token_max_age=_converted(env, "PKGDL_TOKEN_MAX_AGE", 86400, int, "a whole number"),
        burnlist_url=env.get("PKGDL_BURNLIST_URL") or f"sqlite:///{var / 'burnlist.sqlite3'}",
        users_file=env.get("PKGDL_USERS_FILE") or str(var / "users.toml"),
        public_url=(env.get("PKGDL_PUBLIC_URL") or public_url_of_bind(env.get("PKGDL_BIND") or "")).rstrip("/"),
        offload=(env.get("PKGDL_OFFLOAD") or "none").strip().lower(),
        catalog_ttl=_converted(env, "PKGDL_CATALOG_TTL", 30.0, float, "a number"),
        resume_window=_converted(env, "PKGDL_RESUME_WINDOW", 3600, int, "a whole number of seconds"),
        login_attempts_per_minute=_converted(env, "PKGDL_LOGIN_ATTEMPTS_PER_MINUTE", 10, int, "a whole number"),
        trusted_proxies=_converted(env, "PKGDL_TRUSTED_PROXIES", 0, int, "a whole number"),
        forwarded_allow_ips=tuple(address.strip() for address in
                                  (env.get("PKGDL_FORWARDED_ALLOW_IPS") or "127.0.0.1").split(",") if address.strip()),
        auth_backend=auth_backend,
        ldap=ldap_from_env(env) if auth_backend == "ldap" else None,
    )


def ldap_from_env(env: Mapping[str, str]) -> LdapSettings:
    """The directory's settings: a URL, a group base, and either a DN template (direct bind) or a service account
    with a user base and filter (search then bind); each problem names its variable."""
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    def value(name: str) -> str:
        return (env.get(f"PKGDL_LDAP_{name}") or "").strip()

    def dn(name: str, text: str) -> str:
        try:
            parse_dn(text.replace("{login}", "x"))
        except LDAPInvalidDnError:
            raise ConfigError(f"PKGDL_LDAP_{name} is not a DN: {text!r}") from None
        return text

    url = value("URL")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("ldap", "ldaps") or not urlsplit(url).hostname:
        raise ConfigError("PKGDL_AUTH_BACKEND=ldap: PKGDL_LDAP_URL must be ldap://host[:port] or ldaps://host[:port]")
    starttls = _flag(env, "PKGDL_LDAP_STARTTLS")
    if starttls and scheme == "ldaps":
        raise ConfigError("PKGDL_LDAP_STARTTLS=1 is for ldap:// URLs; ldaps:// is TLS from the start")
    ca_file = value("CA_FILE")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"PKGDL_LDAP_CA_FILE: no such file {ca_file}")
    if not value("GROUP_BASE"):
        raise ConfigError("PKGDL_LDAP_GROUP_BASE is required: the groups under it give the entitlements")
    user_dn = value("USER_DN")
    search = {name: value(name) for name in ("BIND_DN", "BIND_PASSWORD", "USER_BASE", "USER_FILTER")}
    search["BIND_PASSWORD"] = env.get("PKGDL_LDAP_BIND_PASSWORD") or ""  # a password's spaces are its own
    if user_dn and "{login}" not in user_dn:
        raise ConfigError("PKGDL_LDAP_USER_DN must contain {login}, e.g. uid={login},ou=people,dc=example,dc=org")
    if not user_dn:
        missing = [f"PKGDL_LDAP_{name}" for name, text in search.items() if not text]
        if missing:
            raise ConfigError("set PKGDL_LDAP_USER_DN (direct bind), or for search then bind " + ", ".join(missing))
        if "{login}" not in search["USER_FILTER"] or not search["USER_FILTER"].startswith("("):
            raise ConfigError("PKGDL_LDAP_USER_FILTER must be a filter with {login}, e.g. (uid={login})")
    if search["BIND_DN"] and not search["BIND_PASSWORD"]:
        raise ConfigError("PKGDL_LDAP_BIND_DN needs PKGDL_LDAP_BIND_PASSWORD")
    login_attribute = _login_attribute(user_dn, search["USER_FILTER"])
    return LdapSettings(
        url=url,
        group_base=dn("GROUP_BASE", value("GROUP_BASE")),
        user_dn=dn("USER_DN", user_dn) if user_dn else "",
        bind_dn=dn("BIND_DN", search["BIND_DN"]) if search["BIND_DN"] else "",
        bind_password=search["BIND_PASSWORD"],
        user_base=dn("USER_BASE", search["USER_BASE"]) if search["USER_BASE"] else "",
        user_filter=search["USER_FILTER"],
        starttls=starttls,
        ca_file=ca_file,
        admin_group=value("ADMIN_GROUP") or "pkgdl_admins",
        login_attribute=login_attribute,
        timeout=_converted(env, "PKGDL_LDAP_TIMEOUT", 5, _positive, "a positive whole number of seconds"),
    )


def _login_attribute(user_dn: str, user_filter: str) -> str:
    """The attribute whose value must be the login, spelled so: the DN template's first RDN (uid={login},...), or
    the first (ATTRIBUTE={login}) of the filter."""
    if user_dn:
        match = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*\{login\}\s*,.*", user_dn)
        if not match:
            raise ConfigError("PKGDL_LDAP_USER_DN must start with ATTRIBUTE={login}, e.g. uid={login},ou=people,...")
        return match.group(1)
    match = re.search(r"\(\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*\{login\}\s*\)", user_filter)
    if not match:
        raise ConfigError("PKGDL_LDAP_USER_FILTER must compare an attribute with the login, e.g. (uid={login})")
    return match.group(1)


def _positive(raw: str) -> int:
    number = int(raw)
    if number <= 0:
        raise ValueError(raw)
    return number


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off (or unset)."""
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def public_url_of_bind(bind: str) -> str:
    """Where a client on this machine reaches gunicorn's (first) bind address: the default PKGDL_PUBLIC_URL, so
    that `make run` on another port prints links that work. A wildcard host is reached on loopback."""
    address = bind.split(",")[0].strip().removeprefix("tcp://") or DEFAULT_BIND
    if address.startswith(("unix:", "fd://")):
        return f"http://{DEFAULT_BIND}"
    parts = urlsplit(f"//{address}")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(parts.hostname or "", parts.hostname)  # noqa: S104
    port = parts.port or 8000  # gunicorn's default when the bind names none
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _secret_keys(raw: str, key_file: Path) -> tuple[str, ...]:
    if raw.strip():
        return tuple(key.strip() for key in raw.split(",") if key.strip())
    if key_file.is_file():
        return tuple(line.strip() for line in key_file.read_text().splitlines() if line.strip())
    return ()


def _json_object(raw: str, name: str) -> dict:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a JSON object: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, not {type(value).__name__}")
    return value


def _converted(env: Mapping[str, str], name: str, default: T, convert: Callable[[str], T], kind: str) -> T:
    """``convert`` of the variable's value, the default when it is unset or blank, a ConfigError naming it if bad."""
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        return convert(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
