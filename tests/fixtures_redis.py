"""A real redis-server on a free loopback port, with AOF on and eviction off as in production (deploy/processes.py
starts it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from deploy.processes import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running redis-server for the whole session; tests that stop it must start it again."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
