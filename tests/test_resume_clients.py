"""Resumable single-use links with real clients against real gunicorn (SQLite; Redis across two instances):
a transfer killed part-way resumes with `curl -C -`, `wget -c`; aria2c fetches in parallel segments; afterwards the
link is dead everywhere. (Through nginx, both modes and S3: test_deploy_nginx.py.) Transfers cut part-way fetch
LARGE, larger than what the loopback path's socket buffers can hold (tests/fixtures_service.py)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fixtures_service import (
    LARGE,
    LARGE_SIZE,
    large_source,
    sid_of,
    two_hosts_sharing,
    with_large_package,
)
from tests.test_e2e_gunicorn import OPENSSL, curl, status_of

pytestmark = pytest.mark.integration
CUT_AT = 3 * 1024 * 1024  # the client is stopped once it holds this much


def mint(service, name: str = OPENSSL) -> str:
    """A fresh link to `name` on `service` (the CLI prints PKGDL_PUBLIC_URL; the test talks to gunicorn)."""
    pid = with_large_package(service) if name == LARGE else service.pids[name]
    link = service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", str(sid_of(name)),
                       "--pid", str(pid)).stdout.strip()
    return service.base_url + link.removeprefix("https://downloads.example.test")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def killed_part_way(command: list[str], out: Path, at: int = CUT_AT) -> int:
    """Run a rate-limited download and kill it (SIGKILL, by its PID) once `out` holds `at` bytes; its size then."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and out.stat().st_size >= at):
            assert process.poll() is None, "the client ended before it was cut"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait(timeout=10)
    size = out.stat().st_size
    assert 0 < size < LARGE_SIZE
    return size


def state_of(service, link: str) -> str:
    return next(line.split()[1] for line in service.cli("token", "status", link).stdout.splitlines()
                if line.startswith("state"))


def test_curl_killed_part_way_resumes_with_continue_then_the_link_is_dead(service, tmp_path):
    link, out = mint(service, LARGE), tmp_path / "large.rpm"
    killed_part_way(["curl", "-sS", "--limit-rate", "2M", "-o", str(out), link], out)
    assert state_of(service, link) == "claimed"
    resumed = curl("-f", "-C", "-", "-o", str(out), link)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_file(out) == sha256_file(large_source(service))
    assert status_of(link) == 403  # a second whole copy
    assert status_of("-C", "-", "-o", str(out), link) == 403  # a resume of a complete file
    assert status_of("-r", "0-99", link) == 403
    assert state_of(service, link) == "spent"


def test_wget_killed_part_way_resumes_with_continue(service, tmp_path):
    if shutil.which("wget") is None:
        pytest.skip("wget not installed (apt-get install wget)")
    link, out = mint(service, LARGE), tmp_path / "large.rpm"
    killed_part_way(["wget", "-q", "--limit-rate=2m", "-O", str(out), link], out)
    resumed = subprocess.run(["wget", "-q", "-c", "-O", str(out), link], capture_output=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_file(out) == sha256_file(large_source(service))
    assert status_of(link) == 403


def test_aria2c_in_four_parallel_segments(service, tmp_path):
    """aria2c starts with a plain GET and adds ranged segments while it runs: one whole, correct file."""
    if shutil.which("aria2c") is None:
        pytest.skip("aria2c not installed (apt-get install aria2)")
    link = mint(service)
    done = subprocess.run(["aria2c", "-q", "-x4", "-s4", "-k1M", "--allow-overwrite=true", "-d", str(tmp_path),
                           "-o", "openssl.rpm", link], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sha256_file(tmp_path / "openssl.rpm") == sha256_file(service.files[OPENSSL])
    requested = [line for line in (service.home / next(p.name for p in service.home.glob("access-*.log")))
                 .read_text().splitlines() if "206" in line]
    assert requested, "aria2c used no ranged segment: the test proves nothing about parallel resumes"
    assert state_of(service, link) == "spent"
    assert status_of("-r", "0-0", link) == 403


def test_a_browser_resume_with_if_range_and_a_stale_one(service, tmp_path):
    link, out = mint(service, LARGE), tmp_path / "large.rpm"
    have = killed_part_way(["curl", "-sS", "--limit-rate", "2M", "-o", str(out), link], out)
    etag = requests.head(link, timeout=10).headers["ETag"]
    stale = requests.get(link, headers={"Range": f"bytes={have}-", "If-Range": '"0000"'}, timeout=30)
    assert stale.status_code == 403  # would be a whole second copy: refused, never mixed bytes
    resumed = requests.get(link, headers={"Range": f"bytes={have}-", "If-Range": etag}, timeout=60)
    assert resumed.status_code == 206
    assert hashlib.sha256(out.read_bytes() + resumed.content).hexdigest() == sha256_file(large_source(service))


def test_twenty_plain_gets_on_a_fresh_link_give_one_body(service):
    link = mint(service)
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = sorted(pool.map(lambda _: status_of("--max-time", "60", link), range(20)))
    assert statuses == [200] + [403] * 19


def test_parallel_resumes_never_send_more_than_the_budget(service, tmp_path):
    """Eight whole-range resumes at once on a claimed link: what all of them received stays within 2 x size."""
    link, out = mint(service, LARGE), tmp_path / "large.rpm"
    size = large_source(service).stat().st_size
    have = killed_part_way(["curl", "-sS", "--limit-rate", "2M", "-o", str(out), link], out)

    def resume(index: int) -> int:
        """Bytes of a 206 body received (a transfer cut at the budget counts what arrived; a 403 counts 0)."""
        target = tmp_path / f"resume-{index}"
        result = curl("-f", "--max-time", "60", "-H", "Range: bytes=0-", "-o", str(target), link)
        return target.stat().st_size if result.returncode in (0, 18) and target.exists() else 0

    with ThreadPoolExecutor(max_workers=8) as pool:
        received = list(pool.map(resume, range(8)))
    assert 0 < sum(received)
    assert have + sum(received) <= 2 * size
    status = service.cli("token", "status", link).stdout
    sent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("sent")))
    assert have + sum(received) <= sent <= 2 * size  # what the server wrote, the killed transfer's buffers included


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory, redis_server):
    """Two gunicorn instances sharing storage, keys and a Redis burn-list, with a short resume window."""
    yield from two_hosts_sharing(tmp_path_factory.mktemp("resume-hosts"), redis_server.url,
                                 {"PKGDL_RESUME_WINDOW": "3"})


def test_a_transfer_broken_on_one_host_resumes_on_the_other(two_hosts, tmp_path):
    first, second = two_hosts
    link = mint(first, LARGE)
    other = second.base_url + link.removeprefix(first.base_url)
    out = tmp_path / "large.rpm"
    killed_part_way(["curl", "-sS", "--limit-rate", "2M", "-o", str(out), link], out)
    assert status_of(other) == 403  # no second whole copy on the other host either
    assert curl("-f", "-C", "-", "-o", str(out), other).returncode == 0
    assert sha256_file(out) == sha256_file(large_source(first))
    assert status_of("-r", "0-0", link) == 403 and status_of("-r", "0-0", other) == 403


def test_the_resume_window_closes_across_hosts(two_hosts, tmp_path):
    first, second = two_hosts
    link = mint(first, LARGE)
    out = tmp_path / "large.rpm"
    killed_part_way(["curl", "-sS", "--limit-rate", "2M", "-o", str(out), link], out, at=1 << 20)
    time.sleep(4)  # PKGDL_RESUME_WINDOW=3
    other = second.base_url + link.removeprefix(first.base_url)
    assert status_of("-C", "-", "-o", str(out), other) == 403
    assert state_of(first, link) == "spent"


def test_revoking_a_link_refuses_it_on_every_host(two_hosts):
    first, second = two_hosts
    link = mint(first)
    first.cli("token", "revoke", link)
    assert status_of(second.base_url + link.removeprefix(first.base_url)) == 403
    assert state_of(second, link) == "revoked"
