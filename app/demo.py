"""`pkgdl demo`: a signing key, a demo user and a few demo packages, so a newcomer can download at once."""

from __future__ import annotations

import os
import random
import secrets
import tempfile
from pathlib import Path

from app.config import Settings
from app.importer import add_packages
from app.links import download_url
from app.tokens import PackageRef, TokenService
from app.users import User, hash_password, load_users, save_users
from storage_backends import create_root, open_storage

DEMO_LOGIN = "demo"
DEMO_UID, DEMO_SIID = "demo", 1
# (scan id, file name, size): scan 2 has a newer openssl-libs, so `compareWith` has something to show.
DEMO_FILES = (
    (1, "hello-2.12.1-4.el9.x86_64.rpm", 96 * 1024),
    (1, "openssl-libs-3.0.7-27.el9.x86_64.rpm", 2 * 1024 * 1024),
    (1, "curl_7.88.1-10+deb12u5_amd64.deb", 300 * 1024),
    (2, "hello-2.12.1-4.el9.x86_64.rpm", 96 * 1024),
    (2, "openssl-libs-3.0.7-28.el9.x86_64.rpm", 2 * 1024 * 1024),
)


def seed_demo(settings: Settings, var_dir: str | os.PathLike = "var") -> str:
    """Create what is missing (never overwrites a key or a user) and return instructions to print."""
    var = Path(var_dir)
    var.mkdir(parents=True, exist_ok=True)
    keys = settings.secret_keys or _ensure_secret_key(var / "secret_keys")
    # With a directory, its users sign in: no demo user (a users file nobody reads would only mislead).
    password = _ensure_demo_user(Path(settings.users_file), var / "demo-password") if settings.ldap is None else None
    create_root(settings.storage_url, settings.storage_options)
    storage = open_storage(settings.storage_url, settings.storage_options)
    first_pid = None
    with tempfile.TemporaryDirectory() as scratch:
        for sid in sorted({sid for sid, _, _ in DEMO_FILES}):
            files = [_demo_file(Path(scratch), name, size) for s, name, size in DEMO_FILES if s == sid]
            added = add_packages(storage, DEMO_UID, DEMO_SIID, sid, files)
            first_pid = first_pid or added[0].db_id
    ref = PackageRef(DEMO_UID, DEMO_SIID, 1, first_pid)
    link = download_url(settings.public_url, ref, TokenService(keys, settings.token_max_age).mint(ref))
    base = f"{settings.public_url}/users/{DEMO_UID}/scannedinstances/{DEMO_SIID}/scans/1/packages"
    if password is None:
        return "\n".join([
            f"demo data ready (storage {settings.storage_url}) under uid {DEMO_UID}; users come from the directory",
            f"  ({settings.ldap.url}): a login needs the group migration_access, and admin to read {DEMO_UID}'s scans",
            f"  one-time:  curl -fOJ '{link}'",
        ])
    return "\n".join([
        f"demo data ready (storage {settings.storage_url}, users {settings.users_file})",
        f"  login {DEMO_LOGIN}, password {password} (kept in {var / 'demo-password'})",
        f"  list:      curl -u {DEMO_LOGIN}:{password} -H 'Accept: application/json' {base}",
        f"  download:  curl -fOJ -u {DEMO_LOGIN}:{password} {base}/{first_pid}/bin",
        f"  one-time:  curl -fOJ '{link}'",
    ])


def _ensure_secret_key(path: Path) -> tuple[str, ...]:
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def _ensure_demo_user(users_file: Path, password_file: Path) -> str:
    users = load_users(users_file) if users_file.exists() else {}
    if DEMO_LOGIN in users and password_file.exists():
        return password_file.read_text().strip()
    password = secrets.token_urlsafe(12)
    users[DEMO_LOGIN] = User(DEMO_LOGIN, hash_password(password), frozenset({"migration_access"}))
    save_users(users_file, users.values())
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def _demo_file(directory: Path, name: str, size: int) -> str:
    """Deterministic bytes per name, so seeding twice adds nothing new."""
    path = directory / name
    path.write_bytes(random.Random(name).randbytes(size))
    return str(path)
