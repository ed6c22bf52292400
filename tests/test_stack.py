"""`make stack` and the process starters it shares with the tests and bench/: nothing claims to run that does not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from deploy.processes import ROOT, PortTaken, Service, free_port, require_free, start_nginx

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_require_free_tells_a_listener_from_a_free_port(taken_port):
    with pytest.raises(PortTaken, match=f"port {taken_port} on 127.0.0.1 is taken"):
        require_free(taken_port, "x")
    require_free(free_port(), "x")


def test_nginx_and_gunicorn_refuse_a_taken_port(taken_port, tmp_path):
    with pytest.raises(PortTaken, match="nginx"):
        start_nginx(tmp_path / "nginx", ["127.0.0.1:9"], tmp_path, port=taken_port)
    service = Service(f"http://127.0.0.1:{taken_port}", dict(os.environ), tmp_path, tmp_path / "a", tmp_path / "e")
    with pytest.raises(PortTaken, match="gunicorn"):
        service.start()
    assert service.process is None


def stack(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deploy.stack"], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_stack_on_a_taken_port_fails_with_one_line(taken_port):
    process = stack({"PKGDL_STACK_PORT": str(taken_port), "PKGDL_STACK_HTTP_PORT": str(free_port())})
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().splitlines() == [f"make stack: nginx HTTPS (PKGDL_STACK_PORT): port {taken_port} on 127.0.0.1 "
                                         "is taken by another program; stop it or choose another port"]
    assert out == ""


def own_users_and_packages(lines: list[str], tmp_path: Path, port: int) -> None:
    """With the environment file the stack names, the CLI adds a user and a package to the running stack, and
    both the user's credentials and a minted link download it through nginx."""
    env_file = next(word for line in lines for word in line.split() if word.endswith("pkgdl.env;")).rstrip(";")
    ca_file = next(word for line in lines for word in line.split() if word.endswith(".crt`")).rstrip("`")
    assert oct(Path(env_file).stat().st_mode & 0o777) == "0o600"
    package = tmp_path / "zsh-5.8-9.el9.x86_64.rpm"
    package.write_bytes(os.urandom(300_000))
    script = (f"set -a; . {env_file}; set +a; echo 'own pw' | pkgdl users add erin --password-stdin >/dev/null; "
              f"pkgdl catalog add --uid erin --siid 5 --sid 6 {package} | cut -f1 > {tmp_path}/pid; "
              f"pkgdl token mint --uid erin --siid 5 --sid 6 --pid $(cat {tmp_path}/pid)")
    bare = {name: value for name, value in os.environ.items() if not name.startswith("PKGDL_")}
    bare["PATH"] = f"{Path(sys.executable).parent}:{bare['PATH']}"
    link = subprocess.run(["bash", "-c", script], env=bare, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip()
    assert link.startswith(f"https://127.0.0.1:{port}/users/erin/scannedinstances/5/scans/6/packages/")
    pid = (tmp_path / "pid").read_text().strip()
    with_credentials = requests.get(f"https://127.0.0.1:{port}/users/erin/scannedinstances/5/scans/6/packages/{pid}/bin",
                                    auth=("erin", "own pw"), verify=ca_file, timeout=30)
    assert with_credentials.status_code == 200 and with_credentials.content == package.read_bytes()
    assert requests.get(link, verify=ca_file, timeout=30).content == package.read_bytes()


def test_the_stack_keeps_its_logs_under_pkgdl_stack_home(tmp_path):
    """The whole stack starts (SeaweedFS, Redis, two gunicorn, nginx), says where its logs are, takes one's own
    users and packages through its environment file, stops on SIGTERM and leaves its logs there."""
    port, http_port = free_port(), free_port()
    process = stack({"PKGDL_STACK_PORT": str(port), "PKGDL_STACK_HTTP_PORT": str(http_port),
                     "PKGDL_STACK_HOME": str(tmp_path)})
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any("kept after stop" in line for line in lines), "".join(lines) + process.stderr.read()
        own_users_and_packages(lines, tmp_path, port)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    homes = [path for path in tmp_path.iterdir() if path.name.startswith("pkgdl-stack-")]
    assert len(homes) == 1 and str(homes[0]) in "".join(lines)
    logs = {path.name for path in homes[0].rglob("*.log")}
    assert {"app1.access.log", "app1.error.log", "app2.access.log", "redis.log", "weed.log"} <= logs
    assert {"app1.audit.log", "app2.audit.log"} <= logs  # the app's standard error: audit lines, warnings
    assert any(Path(homes[0], "nginx").rglob("*.log"))
    with socket.socket() as probe:  # nginx stopped with the stack
        assert probe.connect_ex(("127.0.0.1", port)) != 0
