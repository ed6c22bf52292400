"""The `pkgdl` command: users, catalog, tokens, burn-list, checks and the demo, over the same environment."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click

from app.config import ConfigError, Settings, from_env


def _settings() -> Settings:
    try:
        return from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _storage(settings: Settings, for_writing: bool = False):  # noqa: ANN202 - a storage_backends.Storage
    from storage_backends import create_root, open_storage

    try:
        if for_writing:
            create_root(settings.storage_url, settings.storage_options)
        return open_storage(settings.storage_url, settings.storage_options)
    except ValueError as exc:
        raise click.ClickException(f"PKGDL_STORAGE_URL: {exc}") from None


class _Commands(click.Group):
    """Our commands only (no Flask development server: its `run` logs query strings, hence tokens). An operational
    failure (storage, burn-list, files, a bad value) ends in one line on standard error and exit 1, never a
    traceback."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except (OSError, ValueError) as exc:  # the built-ins that cross the storage and burn-list boundaries
            raise click.ClickException(_one_line(exc)) from None


_KINDS = ((FileNotFoundError, "not found"), (LookupError, "not found"),
          (PermissionError, "refused (credentials or permissions)"),
          (TimeoutError, "timed out"), (ConnectionError, "unreachable"), (OSError, "failed"), (ValueError, "invalid"))


def _one_line(exc: BaseException) -> str:
    """What failed, where (URLs without their credentials), and what to try."""
    kind = next(name for exc_type, name in _KINDS if isinstance(exc, exc_type))
    where = ""
    with contextlib.suppress(ConfigError):
        settings = from_env()
        where = (f" (storage {_without_credentials(settings.storage_url)},"
                 f" burn-list {_without_credentials(settings.burnlist_url)})")
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return f"{kind}: {detail}{where}; `pkgdl check` tells which part is off"


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


@click.group(cls=_Commands)
def cli() -> None:
    """pkgdl: serve, catalogue and share scanned package binaries."""


# ---- users -------------------------------------------------------------------------------------------------------
@cli.group()
def users() -> None:
    """Manage the users file (PKGDL_USERS_FILE), or look users up in the directory (PKGDL_AUTH_BACKEND=ldap)."""


def _refuse_with_directory(action: str) -> None:
    """With the directory, users are managed there: say so instead of writing a file nobody reads."""
    settings = _settings()
    if settings.ldap is not None:
        raise click.ClickException(
            f"users come from the directory (PKGDL_AUTH_BACKEND=ldap): {action} in {settings.ldap.url}; a group "
            f"cn=migration_access under {settings.ldap.group_base} grants downloads, cn={settings.ldap.admin_group} "
            "makes an admin. `pkgdl users list LOGIN` shows what the directory gives a login.")


@users.command("add")
@click.argument("login")
@click.option("--entitlement", "entitlements", multiple=True, default=("migration_access",), show_default=True,
              help="Entitlement to grant (repeatable).")
@click.option("--admin", is_flag=True, help="May read every user's scans.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(login: str, entitlements: tuple[str, ...], admin: bool, password_stdin: bool) -> None:
    """Add LOGIN, or replace its password and rights."""
    from app.ids import UID_RULE, is_uid
    from app.users import User, hash_password, load_users, save_users

    _refuse_with_directory("add the user and their groups")
    if not is_uid(login):
        raise click.BadParameter(f"must match {UID_RULE}", param_hint="LOGIN")
    if password_stdin:
        password = sys.stdin.readline()
        password = password[:-1] if password.endswith("\n") else password
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.ClickException("the password is empty")
    path = Path(_settings().users_file)
    known = load_users(path) if path.exists() else {}
    known[login] = User(login, hash_password(password), frozenset(entitlements), admin)
    save_users(path, known.values())
    click.echo(f"user {login} saved in {path}")


@users.command("remove")
@click.argument("login")
def users_remove(login: str) -> None:
    """Remove LOGIN."""
    from app.users import load_users, save_users

    _refuse_with_directory("remove the user or their groups")
    path = Path(_settings().users_file)
    known = load_users(path) if path.exists() else {}
    if known.pop(login, None) is None:
        raise click.ClickException(f"no user {login}")
    save_users(path, known.values())
    click.echo(f"user {login} removed")


@users.command("list")
@click.argument("logins", nargs=-1)
def users_list(logins: tuple[str, ...]) -> None:
    """List users with their entitlements (only LOGINS, if named). With the directory, LOGINS are looked up
    without their password (as PKGDL_LDAP_BIND_DN, else anonymously): what a sign-in would give them."""
    from app.users import User, load_users

    settings = _settings()
    found: list[User | None]
    if settings.ldap is not None:
        from app.ldap_directory import DirectoryUnavailable, LdapDirectory

        if not logins:
            raise click.UsageError("with PKGDL_AUTH_BACKEND=ldap, name the logins to look up")
        try:
            directory = LdapDirectory(settings.ldap)
            found = [directory.lookup(login) for login in logins]
        except DirectoryUnavailable as exc:
            raise click.ClickException(f"directory {settings.ldap.url}: {exc}") from None
    else:
        path = Path(settings.users_file)
        known = load_users(path) if path.exists() else {}
        found = [known.get(login) for login in logins] if logins else list(known.values())
    missing = [login for login, user in zip(logins, found, strict=False) if user is None]
    for user in found:
        if user is not None:
            flags = " admin" if user.admin else ""
            click.echo(f"{user.login}\t{','.join(sorted(user.entitlements))}{flags}")
    if missing:
        raise click.ClickException("no such user: " + ", ".join(missing))


# ---- catalog -----------------------------------------------------------------------------------------------------
def _scan_options(command):  # noqa: ANN001, ANN202
    command = click.option("--sid", type=click.IntRange(0, 10**18 - 1), required=True, help="Scan id.")(command)
    command = click.option("--siid", type=click.IntRange(0, 10**18 - 1), required=True,
                           help="Scanned instance id.")(command)
    return click.option("--uid", required=True, help="Owner's login.")(command)


@cli.group()
def catalog() -> None:
    """Store package binaries and scan manifests (PKGDL_STORAGE_URL)."""


@catalog.command("add")
@_scan_options
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def catalog_add(uid: str, siid: int, sid: int, files: tuple[str, ...]) -> None:
    """Store FILES in a scan; prints `pid<TAB>fullName` per file."""
    from app.importer import add_packages

    settings = _settings()
    try:
        added = add_packages(_storage(settings, for_writing=True), uid, siid, sid, list(files))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for package in added:
        click.echo(f"{package.db_id}\t{package.full_name}")
        missing = [field for field in ("name", "version", "release", "arch") if not getattr(package, field)]
        if missing:  # compareWith compares (name, epoch, version, release, arch): say what it will not see
            click.echo(f"warning: {package.full_name}: could not work out {', '.join(missing)} from its header or "
                       "its name (name-version-release.arch.rpm, name_version-revision_arch.deb); stored without "
                       "them, so compareWith cannot tell its versions apart", err=True)


@catalog.command("list")
@_scan_options
def catalog_list(uid: str, siid: int, sid: int) -> None:
    """List a scan's packages: pid, fullName, size, sha256; unusable entries are named on standard error."""
    from app.headers import without_controls
    from app.importer import read_scan

    manifest = read_scan(_storage(_settings()), uid, siid, sid)
    if manifest is None:
        raise click.ClickException(f"no scan {uid}/{siid}/{sid}: it has no manifest (`pkgdl catalog add` makes one)")
    for package in manifest.packages:  # a tolerated name loses its controls (TAB, LF...) here
        click.echo(f"{package.db_id}\t{without_controls(package.full_name)}\t{package.size}\t{package.sha256}")
    for entry in manifest.unusable:
        click.echo(f"unusable entry {entry.describe()}", err=True)


# ---- tokens and burn-list ----------------------------------------------------------------------------------------
@cli.group()
def token() -> None:
    """Single-use download links."""


@token.command("mint")
@_scan_options
@click.option("--pid", type=click.IntRange(0, 10**18 - 1), required=True, help="Package id (dbId).")
@click.option("--max-age", type=click.IntRange(min=1), default=None,
              help="Lifetime in seconds, at most PKGDL_TOKEN_MAX_AGE.")
def token_mint(uid: str, siid: int, sid: int, pid: int, max_age: int | None) -> None:
    """Print a full download URL (PKGDL_PUBLIC_URL + path + token; it delivers the package once, resumable),
    ready for an email."""
    from app.links import download_url
    from app.tokens import PackageRef, TokenService

    settings = _settings()
    try:
        settings.require_signing_keys()
        _require_package(_storage(settings), uid, siid, sid, pid)
        ref = PackageRef(uid, siid, sid, pid)
        minted = TokenService(settings.secret_keys, settings.token_max_age).mint(ref, max_age=max_age)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(download_url(settings.public_url, ref, minted))


def _require_package(storage, uid: str, siid: int, sid: int, pid: int) -> None:  # noqa: ANN001 - a Storage
    """Refuse to mint a link that could only 404: the package must be a usable entry of the scan's catalog."""
    from app.importer import read_scan

    manifest = read_scan(storage, uid, siid, sid)
    if manifest is None:
        raise click.ClickException(f"no scan {uid}/{siid}/{sid}: it has no manifest (`pkgdl catalog add` makes one)")
    if not any(package.db_id == pid for package in manifest.packages):
        unusable = any(entry.db_id == pid for entry in manifest.unusable)
        raise click.ClickException(f"no package {pid} in scan {uid}/{siid}/{sid}" + (
            " that can be served (its manifest entry is unusable: `pkgdl check --uid ... --siid ... --sid ...`)"
            if unusable else " (`pkgdl catalog list` shows its packages)"))


def _link_of(url_or_token: str):  # noqa: ANN202 - (TokenClaims, issued, LinkLedger, Settings)
    """The claims of the link given as a URL (with ?downloadToken=...) or a bare token, and the ledger it lives in."""
    from urllib.parse import parse_qs

    from app.burnlist import open_burnlist
    from app.link_ledger import LinkLedger
    from app.links import TOKEN_PARAMETER
    from app.tokens import TokenRejected, TokenService

    settings = _settings()
    settings.require_signing_keys()
    token = url_or_token.strip()
    if "?" in token or "/" in token:
        values = parse_qs(urlsplit(token).query).get(TOKEN_PARAMETER, [])
        if len(values) != 1:
            raise click.ClickException(f"no single {TOKEN_PARAMETER} in that URL")
        token = values[0]
    try:
        claims, issued = TokenService(settings.secret_keys, settings.token_max_age).inspect(token)
    except TokenRejected as rejected:
        raise click.ClickException(f"not a genuine link of this service ({rejected.reason}): signed with another "
                                   "key, altered, or cut short") from None
    return claims, issued, LinkLedger(open_burnlist(settings.burnlist_url), settings.resume_window), settings


@token.command("status")
@click.argument("url_or_token")
def token_status(url_or_token: str) -> None:
    """What became of a link: package, issued, expires, state (unused, claimed, spent, revoked, expired), when
    claimed, bytes sent, what it covered, why spent."""
    import time

    from app.links import package_uri

    claims, issued, ledger, settings = _link_of(url_or_token)
    state = ledger.state(claims)
    reason = ledger.why_spent(state)
    expired = time.time() > claims.expires_at + 1
    status = ("revoked" if reason == "revoked" else "spent" if reason else "expired" if expired
              else "unused" if state is None else "claimed")
    rows = [("package", package_uri(claims.ref)), ("link", claims.token_id), ("issued", _when(issued)),
            ("expires", _when(claims.expires_at)), ("state", status)]
    if reason and reason != "revoked":
        rows.append(("spent because", {"completed": "every byte was delivered", "budget": "twice the package's "
                     "size was sent", "window": f"its resume window ({settings.resume_window} s) passed",
                     "used": "used once (strict single use, or used before resumable links)"}[reason]))
    if state is not None and state.claimed_at is not None:
        covered = ", ".join(f"{start}-{end - 1}" for start, end in state.covered) or "nothing yet"
        rows += [("claimed", _when(state.claimed_at)),
                 ("sent", f"{state.sent} bytes (budget {2 * state.size}) in {state.requests} request(s)"
                          + (f", {len(state.pending)} running" if state.pending else "")),
                 ("covered", f"{covered} of {state.size} bytes")]
    if state is not None and state.revoked_at is not None:
        rows.append(("revoked", _when(state.revoked_at)))
    for name, value in rows:
        click.echo(f"{name:<14}{value}")


@token.command("revoke")
@click.argument("url_or_token")
def token_revoke(url_or_token: str) -> None:
    """Refuse every later request of a link, before or after its claim (a transfer already running may finish)."""
    claims, _, ledger, _ = _link_of(url_or_token)
    ledger.revoke(claims)
    click.echo(f"revoked link {claims.token_id}")


def _when(unix: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cli.group()
def burnlist() -> None:
    """The burn-list of used tokens (PKGDL_BURNLIST_URL)."""


@burnlist.command("purge")
def burnlist_purge() -> None:
    """Remove expired entries (and failed-login counts that left their window)."""
    import sqlite3

    from app.burnlist import BurnListUnavailable, open_burnlist
    from app.throttle import purge_failures

    burnlist_url = _settings().burnlist_url
    try:
        removed = open_burnlist(burnlist_url).purge()
        failures = purge_failures(burnlist_url)
    except (ValueError, BurnListUnavailable, sqlite3.Error) as exc:
        raise click.ClickException(f"burn-list: {exc}") from None
    click.echo(f"{removed} expired entries removed, {failures} old failed-login counts")


# ---- operations --------------------------------------------------------------------------------------------------
@cli.command("check")
@click.option("--uid", help="Also check this scan's manifest (with --siid and --sid).")
@click.option("--siid", type=click.IntRange(0, 10**18 - 1), help="Scanned instance id.")
@click.option("--sid", type=click.IntRange(0, 10**18 - 1), help="Scan id.")
@click.option("--login", help="Also say what the users file or directory gives this login (no password needed).")
def check(uid: str | None, siid: int | None, sid: int | None, login: str | None) -> None:
    """Validate the configuration and reach the storage and the burn-list (and a scan's manifest, if named)."""
    from app.burnlist import open_burnlist

    settings = _settings()
    storage_url, burnlist_url = _without_credentials(settings.storage_url), _without_credentials(settings.burnlist_url)
    steps = [
        ("signing keys", "", settings.require_signing_keys),
        *_user_checks(settings, login),
        ("storage", storage_url, lambda: _check_storage(settings)),
        ("burn-list", burnlist_url, lambda: open_burnlist(settings.burnlist_url).ping()),
    ]
    if uid is not None or siid is not None or sid is not None:
        if uid is None or siid is None or sid is None:
            raise click.UsageError("--uid, --siid and --sid go together")
        steps.append((f"scan {uid}/{siid}/{sid}", storage_url,
                      lambda: _check_scan(_storage(settings), uid, siid, sid)))
    failed = False
    for name, where, step in steps:
        try:
            found = step()
            detail = f": {found}" if isinstance(found, str) else ""  # what a step found, e.g. a login's rights
            click.echo(f"ok    {name}" + (f" ({where})" if where else "") + detail)
        except Exception as exc:  # noqa: BLE001 - report every failure, then exit non-zero
            failed = True
            click.echo(f"FAIL  {name}" + (f" ({where})" if where else "") + f": {_diagnosis(name, exc)}")
    if failed:
        raise SystemExit(1)


def _user_checks(settings: Settings, login: str | None) -> list[tuple]:
    """Where users come from, reached (and what it gives LOGIN, echoed with the step's name)."""
    from app.users import load_users

    if settings.ldap is None:
        users = lambda: load_users(Path(settings.users_file))  # noqa: E731
        steps = [("users file", settings.users_file, users)]
        lookup = lambda: users().get(login or "")  # noqa: E731
    else:
        from app.ldap_directory import LdapDirectory

        directory = LdapDirectory(settings.ldap)
        steps = [("directory", directory.describe(), directory.ping)]
        lookup = lambda: directory.lookup(login or "")  # noqa: E731
    if login is not None:
        def show() -> str:
            user = lookup()
            if user is None:
                raise LookupError(f"no user {login}")
            rights = ", ".join(sorted(user.entitlements)) or "no entitlement"
            return (rights + (", admin" if user.admin else "")
                    + ("" if user.may_read(login) else " (cannot download: needs migration_access)"))
        steps.append((f"user {login}", "", show))
    return steps


# What to try, by check and by kind of failure (the first match wins; "" matches every kind).
_HINTS = (
    ("users file", "not found", "`pkgdl users add LOGIN` creates it (or `pkgdl demo` for a try-out)"),
    ("users file", "", "fix the file or set PKGDL_USERS_FILE (README, Users)"),
    ("directory", "", "is the directory up at PKGDL_LDAP_URL, and PKGDL_LDAP_BIND_DN's password right? "
                      "(README, Authentication)"),
    ("user", "unreachable", "the directory did not answer (above)"),
    ("user", "", "check the login's spelling (`pkgdl users list`), or with a directory PKGDL_LDAP_USER_DN or "
                 "PKGDL_LDAP_USER_FILTER"),
    ("storage", "not found", "`pkgdl demo` or `pkgdl catalog add` creates it, or set PKGDL_STORAGE_URL"),
    ("storage", "invalid", "see README, Storage backends"),
    ("storage", "refused", "check the key and secret in PKGDL_STORAGE_OPTIONS, and the bucket's permissions"),
    ("storage", "", "is the storage server up and PKGDL_STORAGE_OPTIONS' endpoint_url right?"),
    ("burn-list", "", "is Redis up at PKGDL_BURNLIST_URL (or the SQLite file's directory writable)?"),
    ("scan", "", "`pkgdl catalog add` writes a scan's manifest; `pkgdl catalog list` names unusable entries"),
)


def _diagnosis(check_name: str, exc: BaseException) -> str:
    """The failure's kind and detail on one line, and what to try."""
    kind = next((name for exc_type, name in _KINDS if isinstance(exc, exc_type)), "failed")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
    detail = detail or type(exc).__name__
    hint = next((text for check, kinds, text in _HINTS if check_name.startswith(check) and kinds in kind), "")
    return f"{kind}: {detail}" + (f"; {hint}" if hint else "")


def _check_storage(settings: Settings) -> None:
    """Reach the storage root; a local root that does not exist is named as such (not as an outage)."""
    from storage_backends import open_storage

    root = urlsplit(settings.storage_url)
    if root.scheme == "file" and not Path(unquote(root.path)).is_dir():
        raise FileNotFoundError(f"the directory {unquote(root.path)} does not exist")
    open_storage(settings.storage_url, settings.storage_options).ping()  # ValueError: the URL, or a missing extra


def _check_scan(storage, uid: str, siid: int, sid: int) -> None:  # noqa: ANN001 - a storage_backends.Storage
    """Raise naming every unusable entry of the scan's manifest (or the manifest's own fault)."""
    from app.importer import read_scan
    from app.manifest import ManifestError

    try:
        manifest = read_scan(storage, uid, siid, sid)
    except ManifestError as exc:
        raise ValueError(f"the manifest is unusable ({exc.reason})") from None
    if manifest is None:
        raise FileNotFoundError("no manifest for this scan")
    if manifest.unusable:
        raise ValueError("unusable entries: " + "; ".join(entry.describe() for entry in manifest.unusable))


@cli.command("demo")
def demo() -> None:
    """Seed var/ with a signing key, a demo user and demo packages; print how to download them."""
    from app.demo import seed_demo

    click.echo(seed_demo(_settings()))


def main() -> None:
    """Console entry point."""
    cli(prog_name="pkgdl")


if __name__ == "__main__":
    main()
