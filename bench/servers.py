"""Start and stop the processes a benchmark needs, all on free loopback ports under one temporary directory.

Every server is a `Server` (a Popen plus the log it writes); `stop_all` stops exactly the processes started here, by
their pid: SIGTERM first, SIGKILL after a grace period.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.importer import blob_path
from deploy import processes
from deploy.processes import free_port, static_nginx_conf, stop_process

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
MiB = 1024 * 1024

UID, SIID, SID = "bench", 1, 1


def find_binary(name: str, *fallbacks: str) -> str:
    """deploy.processes.find_binary (venv, PATH, fixed paths), with a clear error when missing."""
    found = processes.find_binary(name, *fallbacks)
    if found is None:
        raise FileNotFoundError(f"{name} not found (venv, PATH, {', '.join(fallbacks) or 'no fallback'})")
    return found


@dataclass
class Server:
    """One started process and where it logs."""

    name: str
    process: subprocess.Popen
    log: Path
    port: int
    ca_file: str | None = None  # set for a TLS server (the template nginx): clients verify with it

    @property
    def base_url(self) -> str:
        """http(s)://127.0.0.1:PORT."""
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """Direct children of this process (gunicorn's workers), from /proc."""
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                        children.append(int(entry.name))
        return sorted(children)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the log, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start(name: str, command: list[str], home: Path, port: int, env: dict[str, str] | None = None,
          cwd: Path | None = None, ready_url: str | None = None) -> Server:
    """Start `command` logging to home/<name>.log and wait until `port` accepts (and `ready_url` answers)."""
    log = home / f"{name}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd or home)
    server = Server(name, process, log, port)
    _STARTED.append(server)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready within {START_TIMEOUT} s:\n{server.log_tail()}")
        try:
            if ready_url:
                urllib.request.urlopen(ready_url, timeout=1).close()
            else:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)


_STARTED: list[Server] = []


def stop(server: Server, grace: float = 10.0) -> None:
    """SIGTERM this one process (gunicorn's master takes its workers along), SIGKILL after `grace` seconds."""
    stop_process(server.process, timeout=grace)  # SIGCONT first: a stopped process would not act on SIGTERM
    if server in _STARTED:
        _STARTED.remove(server)


def stop_all() -> None:
    """Stop every server started by this module, newest first."""
    for server in reversed(list(_STARTED)):
        stop(server)


# ---- nginx ---------------------------------------------------------------------------------------------------------
def start_nginx(home: Path, root: Path) -> Server:
    """nginx (one process, our uid) serving `root` statically with sendfile: the reference for local files."""
    home = home / "nginx"
    home.mkdir()
    port = free_port()
    conf = home / "nginx.conf"
    conf.write_text(static_nginx_conf(home, port, root))
    binary = find_binary("nginx", "/usr/sbin/nginx")
    return start("nginx", [binary, "-p", str(home), "-e", str(home / "error.log"), "-c", str(conf)],
                 home, port)


def start_template_nginx(name: str, home: Path, upstream_port: int | list[int], storage_root: Path,
                         s3_endpoint: str | None = None) -> Server:
    """nginx from the production deploy/nginx.conf.template (rendered by deploy/render_nginx.py) in front of the
    gunicorn(s) on `upstream_port`, with the X-Accel alias on `storage_root` (and the S3 location proxying
    presigned URLs to `s3_endpoint`, when given); its logs and temp files under home/<name>.

    The access log is on (the template's `pkgdl` format, `$uri` being the internal location after an
    X-Accel-Redirect): scenario 1b reads it to check which way each download went.
    """
    home = home / name
    home.mkdir(parents=True)
    # deploy/processes.py renders and runs it (as `make stack` and the tests do); bench tracks the process itself.
    ports = upstream_port if isinstance(upstream_port, list) else [upstream_port]
    nginx = processes.Nginx(find_binary("nginx", "/usr/sbin/nginx"), home, free_port(),
                            tuple(f"127.0.0.1:{port}" for port in ports), storage_root,
                            s3_endpoint or processes.NO_S3_ENDPOINT)
    nginx.write_conf()
    server = start(name, nginx.command(), home, nginx.port)
    server.ca_file = nginx.ca_file  # it terminates TLS, with a certificate made under home/tls
    return server


def start_static_tls_nginx(home: Path, root: Path, tls: tuple[Path, Path]) -> Server:
    """The static reference with TLS, the same certificate and ciphers as the template: 1b compares like with like."""
    home = home / "nginx-static-tls"
    home.mkdir()
    port = free_port()
    conf = home / "nginx.conf"
    conf.write_text(static_nginx_conf(home, port, root, tls=tls))
    binary = find_binary("nginx", "/usr/sbin/nginx")
    server = start("nginx-static-tls", [binary, "-p", str(home), "-e", str(home / "error.log"), "-c", str(conf)],
                   home, port)
    server.ca_file = str(tls[0])
    return server


# ---- redis ---------------------------------------------------------------------------------------------------------
def start_redis(home: Path) -> Server:
    """redis-server as the README asks for production (AOF on, no eviction), started by deploy/processes.py."""
    directory = home / "redis"
    directory.mkdir()
    redis_server = processes.RedisServer(find_binary("redis-server"), directory)
    redis_server.start()
    return _track("redis", redis_server.process, directory / "redis.log", redis_server.port)


# ---- SeaweedFS -----------------------------------------------------------------------------------------------------
@dataclass
class SeaweedFS:
    """A single-process SeaweedFS (master, volume, filer, S3 gateway) with S3 auth on and one bucket."""

    server: Server
    key: str
    secret: str
    bucket: str

    @property
    def options(self) -> dict[str, str]:
        """PKGDL_STORAGE_OPTIONS (s3fs arguments)."""
        return {"endpoint_url": self.server.base_url, "key": self.key, "secret": self.secret}

    def filesystem(self):  # noqa: ANN201 - an s3fs.S3FileSystem
        """A fresh s3fs client for this server."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options)


def start_seaweedfs(home: Path) -> SeaweedFS:
    """SeaweedFS from deploy/processes.py (bucket created, random credentials), sized for GiB objects."""
    weed = processes.start_seaweedfs(home / "seaweedfs", find_binary("weed"), volume_size_mb=256, max_volumes=32)
    server = _track("seaweedfs", weed.process, weed.log, weed.ports["s3"])
    return SeaweedFS(server, weed.key, weed.secret, weed.bucket)


def _track(name: str, process: subprocess.Popen | None, log: Path, port: int) -> Server:
    """A server started by deploy/processes.py, tracked like ours (stop_all stops it)."""
    assert process is not None
    server = Server(name, process, log, port)
    _STARTED.append(server)
    return server


# ---- gunicorn: pkgdl and the bare Flask app ------------------------------------------------------------------------
@dataclass
class Pkgdl:
    """A running gunicorn + pkgdl and what was seeded into it."""

    server: Server
    env: dict[str, str]
    password: str
    pids: dict[str, int] = field(default_factory=dict)  # fullName -> pid
    blobs: dict[str, str] = field(default_factory=dict)  # fullName -> blob path under the storage root

    def path(self, name: str) -> str:
        """The /bin path of a seeded file."""
        return f"/users/{UID}/scannedinstances/{SIID}/scans/{SID}/packages/{self.pids[name]}/bin"

    @property
    def authorization(self) -> str:
        """The Basic credentials header value."""
        return "Basic " + base64.b64encode(f"{UID}:{self.password}".encode()).decode()


def gunicorn_env(home: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    """The environment both gunicorns share: the repository's gunicorn.conf.py reads PKGDL_BIND and friends."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PKGDL_")}
    metrics = home / "prometheus"  # multiprocess metrics files, inside our temporary directory
    metrics.mkdir(exist_ok=True)
    return {**clean, "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "PKGDL_BIND": f"127.0.0.1:{port}", "PKGDL_WORKERS": "2", "PKGDL_THREADS": "8",
            "PKGDL_ACCESS_LOG": str(home / "access.log"), "PKGDL_ERROR_LOG": str(home / "error.log"), **extra}


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run the real `pkgdl` CLI with the service's environment and return its output."""
    done = subprocess.run([str(BIN / "pkgdl"), *args], env=env, cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"pkgdl {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def start_pkgdl(name: str, home: Path, files: list[Path], secret_keys: str, storage_url: str,
                storage_options: dict | None = None, burnlist_url: str | None = None, serve: bool = True) -> Pkgdl:
    """Seed a user and `files` through the CLI, then start `gunicorn -c gunicorn.conf.py` (unless not `serve`: then
    the returned Pkgdl has no server, only what was seeded, for start_pkgdl_variant)."""
    home = home / name
    home.mkdir()
    port = free_port()
    env = gunicorn_env(home, port, {
        "PKGDL_STORAGE_URL": storage_url,
        "PKGDL_STORAGE_OPTIONS": json.dumps(storage_options or {}),
        "PKGDL_BURNLIST_URL": burnlist_url or f"sqlite:///{home / 'burnlist.sqlite3'}",
        "PKGDL_USERS_FILE": str(home / "users.toml"),
        "PKGDL_SECRET_KEYS": secret_keys,
        "PKGDL_PUBLIC_URL": f"http://127.0.0.1:{port}",
    })
    password = base64.b32encode(random.randbytes(15)).decode()
    cli(env, "users", "add", UID, "--password-stdin", stdin=password + "\n")
    added = cli(env, "catalog", "add", "--uid", UID, "--siid", str(SIID), "--sid", str(SID), *map(str, files))
    pids = {full_name: int(pid) for pid, full_name in (line.split("\t") for line in added.splitlines())}
    listed = cli(env, "catalog", "list", "--uid", UID, "--siid", str(SIID), "--sid", str(SID))
    blobs = {}
    for line in listed.splitlines():
        _pid, full_name, _size, sha256 = line.split("\t")
        blobs[full_name] = blob_path(sha256)
    if not serve:
        return Pkgdl(None, env, password, pids, blobs)  # type: ignore[arg-type]
    command = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py")]
    server = start(name, command, home, port, env=env, cwd=ROOT, ready_url=f"http://127.0.0.1:{port}/healthz")
    return Pkgdl(server, env, password, pids, blobs)


def start_pkgdl_variant(base: Pkgdl, name: str, home: Path, extra: dict[str, str]) -> Pkgdl:
    """Another gunicorn + pkgdl over `base`'s storage, catalog and users (nothing seeded again), with its own port,
    logs, metrics directory and burn-list, and `extra` settings (e.g. PKGDL_OFFLOAD)."""
    home = home / name
    home.mkdir()
    port = free_port()
    shared = {key: base.env[key] for key in ("PKGDL_STORAGE_URL", "PKGDL_STORAGE_OPTIONS", "PKGDL_USERS_FILE",
                                             "PKGDL_SECRET_KEYS")}
    env = gunicorn_env(home, port, {**shared, "PKGDL_BURNLIST_URL": f"sqlite:///{home / 'burnlist.sqlite3'}",
                                    "PKGDL_PUBLIC_URL": f"http://127.0.0.1:{port}", **extra})
    command = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py")]
    server = start(name, command, home, port, env=env, cwd=ROOT, ready_url=f"http://127.0.0.1:{port}/healthz")
    return Pkgdl(server, env, base.password, dict(base.pids), dict(base.blobs))


def start_bare_flask(home: Path) -> Server:
    """bench/bare_app.py under the same gunicorn.conf.py (the positional app overrides its wsgi_app)."""
    home = home / "bare"
    home.mkdir()
    port = free_port()
    command = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "bench.bare_app:app"]
    return start("bare-flask", command, home, port, env=gunicorn_env(home, port, {}), cwd=ROOT,
                 ready_url=f"http://127.0.0.1:{port}/healthz")


def write_random_file(path: Path, size: int, seed: str) -> Path:
    """A file of `size` pseudo-random bytes (incompressible; written in 8 MiB pieces)."""
    rng = random.Random(seed)
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            piece = min(remaining, 8 * MiB)
            out.write(rng.randbytes(piece))
            remaining -= piece
    return path


# ---- the further storage backends' servers (scenario 8) ----------------------------------------------------------
def _file_server(kind: str) -> Callable[[Path], processes.FileServer]:
    def start_one(home: Path) -> processes.FileServer:
        server = processes.start_file_server(kind, home)
        _track(kind, server.process, server.log, server.port)
        return server
    return start_one


def _gcs(home: Path) -> processes.GcsServer:
    server = processes.start_gcs(home)
    _track("gcs", server.process, server.log, server.port)
    return server


def _azure(home: Path) -> processes.AzuriteServer:
    cache = Path(os.environ.get("PKGDL_TEST_CACHE") or Path.home() / ".cache" / "pkgdl-tests")
    binary = processes.azurite_binary(cache)
    if binary is None:
        raise FileNotFoundError("azurite could not be installed (npm)")
    server = processes.start_azurite(home, binary)
    _track("azurite", server.process, server.log, server.port)
    return server


OTHER_BACKENDS: dict[str, Callable[[Path], Any]] = {
    "webdav": _file_server("webdav"), "sftp": _file_server("sftp"), "gcs": _gcs, "azure": _azure,
}
