"""Tokens with a Redis burn-list: races across workers and across two gunicorn instances ("hosts"), fail-closed."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fixtures_service import two_hosts_sharing
from tests.test_e2e_gunicorn import OPENSSL, curl, status_of, user

pytestmark = pytest.mark.integration
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}")


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory, redis_server):
    """Two gunicorn instances (2 workers each) sharing storage, keys and the Redis burn-list."""
    yield from two_hosts_sharing(tmp_path_factory.mktemp("redis-hosts"), redis_server.url)


def mint(service) -> str:
    """A minted link's path and query, on the given instance."""
    link = service.cli("token", "mint", "--uid", "alice", "--siid", "12", "--sid", "34",
                       "--pid", str(service.pids[OPENSSL])).stdout.strip()
    return link.removeprefix("https://downloads.example.test")


def race(urls: list[str]) -> list[int]:
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return sorted(pool.map(lambda url: status_of("--max-time", "60", url), urls))


def test_twenty_way_race_on_one_host(two_hosts):
    first, _ = two_hosts
    assert race([first.base_url + mint(first)] * 20) == [200] + [403] * 19


def test_twenty_way_race_split_across_two_hosts(two_hosts):
    first, second = two_hosts
    path = mint(first)
    assert race([first.base_url + path] * 10 + [second.base_url + path] * 10) == [200] + [403] * 19


def test_token_used_on_one_host_is_refused_on_the_other(two_hosts):
    first, second = two_hosts
    path = mint(first)
    assert status_of(first.base_url + path) == 200
    assert status_of(second.base_url + path) == 403


def test_redis_down_fails_closed_for_tokens_only(two_hosts, redis_server):
    first, _ = two_hosts
    path = mint(first)
    redis_server.stop()
    try:
        result = curl("-o", "/dev/null", "-D", "-", first.base_url + path)
        head = result.stdout.decode().lower()
        assert head.startswith("http/1.1 503")
        assert "retry-after:" in head and "cache-control: no-store" in head
        assert status_of(*user(), first.bin_url(first.pids[OPENSSL])) == 200
        assert status_of(first.base_url + "/readyz") == 503
    finally:
        redis_server.start()
    assert status_of(first.base_url + path) == 200  # the token was never burned by the failed attempt
    assert status_of(first.base_url + "/readyz") == 200


def test_listing_tokens_work_across_hosts(two_hosts):
    first, second = two_hosts
    listing = json.loads(curl(*user(), "-H", "Accept: application/json",
                              f"{first.base_url}/users/alice/scannedinstances/12/scans/34/packages").stdout)
    package = listing["scannedPackages"]["scannedPackages"]["scannedPackage"][0]
    assert status_of(f"{second.base_url}/{package['binaryUri']}") == 200
    assert status_of(f"{first.base_url}/{package['binaryUri']}") == 403


def test_no_log_holds_a_token(two_hosts):
    first, _ = two_hosts
    logs = [path.read_text() for path in first.home.glob("*.log")]
    assert logs
    for text in logs:
        assert "downloadToken" not in text
        assert not TOKEN_SHAPE.search(text)
