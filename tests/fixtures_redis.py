"""A real redis-server on a free loopback port, with AOF on and eviction off as in production."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT = 10.0


def _client(port: int, timeout: float) -> redis.Redis:
    """An admin client that fails at once: redis-py otherwise retries with backoff for seconds."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process that tests may stop and start again on the same port and data directory."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self._process is not None:
            return
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        arguments += ["--dir", str(self.directory), "--maxmemory-policy", "noeviction"]
        with open(self.directory / "redis.log", "ab") as log:
            self._process = subprocess.Popen([self.binary, *arguments], stdout=log, stderr=subprocess.STDOUT)
        client = _client(self.port, 0.5)
        deadline = time.monotonic() + START_TIMEOUT
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
                    raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT} s")
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

    def log_tail(self) -> str:
        """Return the end of the server log, for failure messages."""
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


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
