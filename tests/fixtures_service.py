"""A real pkgdl under real gunicorn (2 gthread workers) on a free loopback port, seeded through the real CLI
(deploy/processes.py starts gunicorn)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.processes import Service, free_port

E2E_USERS = {"alice": "alice e2e pw", "bob": "bob-pw", "carol": "carol-pw"}
E2E_FILES = {  # name -> size; the big one spans several 1 MiB chunks and is not a multiple of the chunk size
    "openssl-libs-3.0.7-27.el9.x86_64.rpm": 24 * 1024 * 1024 + 123,
    "curl_7.88.1-10+deb12u5_amd64.deb": 70_000,
    'we"ird\\name;.rpm': 10,
}
E2E_SCAN = 34  # alice's instance 12: the scan E2E_FILES are catalogued in
# Tests that cut a transfer part-way need the server to have written only part of the package when the client dies.
# Linux autotunes loopback socket buffers up to tcp_rmem's maximum (32 MiB on the CI machines): curl killed at 3 MiB
# of the 24 MiB package through nginx once found every byte already written by gunicorn into the buffers of the two
# hops (the link then rightly spent). Measured here: 12-17 MiB in flight streamed through nginx, 4-8 MiB offloaded.
LARGE = "kernel-core-6.1.0-1.el9.x86_64.rpm"
LARGE_SIZE = 64 * 1024 * 1024 + 5
LARGE_SCAN = 35  # its own scan: scan 34's listing stays as the other tests expect


_LARGE_PIDS: dict[Path, int] = {}  # home -> LARGE's pid there (not in Service.pids/files: those are scan 34's)


def with_large_package(service: Service) -> int:
    """LARGE catalogued in LARGE_SCAN through the CLI (once per home; instances sharing it share the pid); its pid.
    Its bytes are in large_source(service)."""
    if service.home not in _LARGE_PIDS:
        path = large_source(service)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(random.Random(LARGE).randbytes(LARGE_SIZE))
        _LARGE_PIDS[service.home] = _catalog_add(service, LARGE_SCAN, [path])[LARGE]
    return _LARGE_PIDS[service.home]


def large_source(service: Service) -> Path:
    """The file LARGE was catalogued from."""
    return service.home / "sources" / LARGE


def _catalog_add(service: Service, sid: int, paths: list[Path]) -> dict[str, int]:
    """`pkgdl catalog add` of `paths` into alice's scan `sid` of instance 12: fullName -> pid."""
    added = service.cli("catalog", "add", "--uid", "alice", "--siid", "12", "--sid", str(sid), *map(str, paths))
    return {full_name: int(pid) for pid, full_name in (line.split("\t") for line in added.stdout.splitlines())}


def sid_of(name: str) -> int:
    """The scan a test package is catalogued in."""
    return LARGE_SCAN if name == LARGE else E2E_SCAN


def make_service(home: Path, extra_env: dict[str, str] | None = None, seed: bool = True) -> Service:
    """Seed users and packages through the CLI (unless another instance on the same home did) and start gunicorn
    on its own port; the caller stops it."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PKGDL_")},
        "PKGDL_BIND": f"127.0.0.1:{port}",
        "PKGDL_WORKERS": "2",
        "PKGDL_THREADS": "8",
        "PKGDL_STORAGE_URL": (home / "packages").as_uri(),
        "PKGDL_BURNLIST_URL": f"sqlite:///{home / 'burnlist.sqlite3'}",
        "PKGDL_USERS_FILE": str(home / "users.toml"),
        "PKGDL_SECRET_KEYS": "e2e-old-key,e2e-new-key",
        "PKGDL_PUBLIC_URL": "https://downloads.example.test",
        # Every test client is 127.0.0.1: a per-address limit of 10 would let one test's wrong passwords block others.
        "PKGDL_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "PKGDL_ACCESS_LOG": str(home / f"access-{port}.log"),
        "PKGDL_ERROR_LOG": str(home / f"error-{port}.log"),
        **(extra_env or {}),
    }
    logs = Path(env["PKGDL_ACCESS_LOG"]), Path(env["PKGDL_ERROR_LOG"])
    service = Service(f"http://127.0.0.1:{port}", env, home, *logs)
    if seed:
        _seed(service)
    service.start()
    return service


def _seed(service: Service) -> None:
    """Users and packages through the real CLI; records source files and pids on the service."""
    home = service.home
    for login, password in E2E_USERS.items():
        rights = ["--entitlement", "migration_access"] if login != "carol" else ["--entitlement", "other"]
        service.cli("users", "add", login, *rights, "--password-stdin", stdin=password + "\n")
    sources = home / "sources"
    sources.mkdir(exist_ok=True)
    for name, size in E2E_FILES.items():
        path = sources / name.replace("\\", "_")
        path.write_bytes(random.Random(name).randbytes(size))
        service.files[name] = path
    service.pids.update(_catalog_add(service, E2E_SCAN, list(service.files.values())))


def two_hosts_sharing(home: Path, redis_url: str, extra_env: dict[str, str] | None = None) -> Iterator[tuple]:
    """Two gunicorn instances ("hosts", 2 workers each) sharing storage, keys and a Redis burn-list; a fixture body
    (yields both, stops both)."""
    env = {"PKGDL_BURNLIST_URL": redis_url, **(extra_env or {})}
    first = make_service(home, env)
    try:
        second = make_service(home, env, seed=False)
    except BaseException:
        first.stop()
        raise
    second.pids, second.files = first.pids, first.files
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    """One real service for the end-to-end tests that do not change its configuration."""
    running = make_service(tmp_path_factory.mktemp("e2e"))
    yield running
    running.stop()
