"""Start and stop the deployment's processes on loopback (nginx, SeaweedFS S3, Redis, gunicorn): used by
`deploy/stack.py` and by the test fixtures, so both run the same topology the same way.

SeaweedFS, Redis and gunicorn are the test suite's own process wrappers (tests/fixtures_*.py), reused here; this
module adds nginx from deploy/nginx.conf.template.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.render_nginx import render
from tests.fixtures_redis import RedisServer
from tests.fixtures_service import Service, make_service
from tests.fixtures_storage import SeaweedFS, find_binary, free_port, wait_for_port

__all__ = ["Nginx", "RedisServer", "SeaweedFS", "Service", "find_binary", "free_port", "make_service",
           "start_seaweedfs"]

SEAWEEDFS_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
# Where nothing listens: the S3 location must name an endpoint even when storage is local.
NO_S3_ENDPOINT = "http://127.0.0.1:9"


@dataclass
class Nginx:
    """nginx running deploy/nginx.conf.template, rendered for loopback upstreams, under ``home`` (no root needed)."""

    binary: str
    home: Path
    port: int
    upstreams: tuple[str, ...]
    storage_root: Path
    s3_endpoint: str = NO_S3_ENDPOINT
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.home / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.home / "access.log"

    @property
    def error_log(self) -> Path:
        return self.home / "error.log"

    def values(self) -> dict[str, str]:
        """The template's variables for this instance."""
        return {
            "PKGDL_NGINX_LISTEN": f"127.0.0.1:{self.port}",
            "PKGDL_UPSTREAM_SERVERS": " ".join(f"server {address};" for address in self.upstreams),
            "PKGDL_STORAGE_ROOT": str(self.storage_root),
            "PKGDL_S3_ENDPOINT": self.s3_endpoint,
            "PKGDL_NGINX_ACCESS_LOG": str(self.access_log),
            "PKGDL_NGINX_ERROR_LOG": str(self.error_log),
            "PKGDL_NGINX_PID": str(self.home / "nginx.pid"),
            "PKGDL_NGINX_TEMP": str(self.home / "temp"),
        }

    def command(self, *extra: str) -> list[str]:
        """nginx in the foreground with our prefix, config and error log."""
        return [self.binary, "-p", str(self.home), "-e", str(self.error_log), "-c", str(self.conf),
                "-g", _global_directives(), *extra]

    def write_conf(self) -> Path:
        (self.home / "temp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render(self.values()))
        return self.conf

    def test_conf(self) -> subprocess.CompletedProcess:
        """`nginx -t` on the rendered config."""
        self.write_conf()
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> None:
        self.write_conf()
        # Own process group: if the master ever ignores SIGTERM, its workers are killed with it.
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(self.port, self.process, self.error_log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), then SIGKILL to the group if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _global_directives() -> str:
    """`daemon off` (the template has none: the official image passes it the same way). As root, keep the workers
    running as us: the default `nobody` could not read test or stack directories."""
    directives = "daemon off;"
    if os.geteuid() == 0:
        directives += f" user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    return directives


def start_nginx(home: Path, upstreams: Iterable[str], storage_root: Path, s3_endpoint: str = NO_S3_ENDPOINT,
                port: int | None = None) -> Nginx:
    """Render and start nginx in front of ``upstreams`` (host:port); the caller stops it."""
    binary = find_binary("nginx", "/usr/sbin/nginx")
    if binary is None:
        raise FileNotFoundError("nginx binary not found (apt-get install nginx-light)")
    home.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(binary, home, port or free_port(), tuple(upstreams), storage_root, s3_endpoint)
    nginx.start()
    return nginx


def start_seaweedfs(home: Path, binary: str) -> SeaweedFS:
    """SeaweedFS with S3 auth on and its bucket created, on free loopback ports; the caller stops it."""
    home.mkdir(parents=True, exist_ok=True)
    server = SeaweedFS(binary=binary, home=home)
    server.ports = {name: free_port() for name in SEAWEEDFS_PORTS}
    identity = {"name": "pkgdl", "credentials": [{"accessKey": server.key, "secretKey": server.secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    (home / "s3.json").write_text(json.dumps({"identities": [identity]}))
    try:
        server.start()
        server.create_bucket()
    except BaseException:
        server.stop()
        raise
    return server
