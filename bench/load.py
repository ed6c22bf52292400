"""Load generators (separate processes: curl for one stream, wrk for request rates) and a worker RSS sampler."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

WRK_SCRIPT = Path(__file__).with_name("paths.lua")
MiB = 1024 * 1024


class LoadError(RuntimeError):
    """A load run did not measure what it should (wrong status, short body, errors): no number from it."""


def curl_speed(url: str, size: int, headers: dict[str, str] | None = None, max_time: float = 120.0,
               cacert: str | None = None) -> float:
    """Download `url` once to /dev/null; return curl's speed_download (bytes/s) after checking status and size
    (an https URL is verified with `cacert`, the template nginx's self-signed certificate)."""
    command = ["curl", "-s", "-o", "/dev/null", "--max-time", str(max_time),
               "-w", "%{http_code} %{size_download} %{speed_download}", *(["--cacert", cacert] if cacert else [])]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=max_time + 10)
    status, downloaded, speed = done.stdout.split()
    if done.returncode or status != "200" or int(downloaded) != size:
        raise LoadError(f"curl {url.split('?')[0]}: exit {done.returncode}, status {status}, {downloaded}/{size} bytes")
    return float(speed)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, from the line paths.lua prints."""

    requests: int
    seconds: float
    status_errors: int  # responses >= 400
    socket_errors: int
    wrapped: int

    @property
    def ok_per_second(self) -> float:
        """Responses below 400 per second."""
        return (self.requests - self.status_errors) / self.seconds


def wrk(base_url: str, paths: list[str], headers: dict[str, str] | None = None, duration: float = 5.0,
        threads: int = 2, connections: int = 32, split: bool = False) -> WrkResult:
    """`wrk -t2 -c32 -dN` cycling through `paths` (with `split`, each thread takes its own share of the list)."""
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as listing:
        listing.write("\n".join(paths) + "\n")
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s",
               "-s", str(WRK_SCRIPT)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    env = {**os.environ, "BENCH_PATHS": listing.name, "BENCH_THREADS": str(threads),
           "BENCH_SPLIT": "1" if split else "0"}
    try:
        done = subprocess.run([*command, base_url], capture_output=True, text=True, env=env, timeout=duration + 60)
    finally:
        os.unlink(listing.name)
    found = re.search(r"^BENCH (.*)$", done.stdout, re.MULTILINE)
    if done.returncode or not found:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    values = {key: int(value) for key, value in (pair.split("=") for pair in found.group(1).split())}
    return WrkResult(requests=values["requests"], seconds=values["duration_us"] / 1e6, status_errors=values["status"],
                     socket_errors=values["connect"] + values["read"] + values["write"] + values["timeout"],
                     wrapped=values["wrapped"])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory field in KiB (0 if the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples VmRSS of some processes every `interval` s while active; `growth_mib` is max(peak - before).

    The kernel's high-water mark (VmHWM) is reset before and read after as well, when /proc allows it, so a peak
    shorter than the sampling interval is not missed.
    """

    def __init__(self, pids: list[int], interval: float = 0.005) -> None:
        self.pids = pids
        self.interval = interval
        self.before = {pid: rss_kib(pid) for pid in pids}
        self.peak = dict(self.before)
        self._hwm_reset: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_kib(pid))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        for pid in self.pids:
            # 5: reset VmHWM to the current RSS (our own processes, Linux >= 4.0); else VmHWM is a lifetime peak.
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")
                self._hwm_reset.add(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.pids:
            hwm = rss_kib(pid, "VmHWM") if pid in self._hwm_reset else 0
            self.peak[pid] = max(self.peak[pid], rss_kib(pid), hwm)

    @property
    def growth_mib(self) -> float:
        """The largest growth of one process over its value before, in MiB."""
        return max((self.peak[pid] - self.before[pid]) / 1024 for pid in self.pids)


# ---- slow readers (scenario 7) -------------------------------------------------------------------------------------
@dataclass
class SlowStream:
    """One slow reader: what it got before it closed (or failed)."""

    connected: bool = False
    status: int | None = None
    headers_after: float | None = None  # seconds from the start until the response headers
    body_bytes: int = 0
    error: str | None = None  # a connect error, a non-200 status, or an end/reset before the client closed

    @property
    def failed(self) -> bool:
        """Connect error, non-200 status, or the server ended/reset the stream before the client closed it."""
        return self.error is not None


@dataclass
class SlowResult:
    """All slow readers of one run and how many received bytes in each sampling interval."""

    streams: list[SlowStream]
    active_samples: list[int]  # streams that received body bytes during each `sample_interval`
    seconds: float

    @property
    def failures(self) -> list[SlowStream]:
        return [stream for stream in self.streams if stream.failed]

    @property
    def never_answered(self) -> int:
        """Connected, no failure, but no response headers before the client closed (queued somewhere)."""
        return sum(1 for stream in self.streams if not stream.failed and stream.status is None)

    @property
    def answered(self) -> int:
        """Streams that received a 200 and its headers while the client was reading."""
        return sum(1 for stream in self.streams if stream.status == 200)


async def _slow_reader(stream: SlowStream, host: str, port: int, request: bytes, rate: float, started: float,
                       deadline: float, tls: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024, ssl=tls)
    except OSError as exc:
        stream.error = f"connect: {type(exc).__name__}: {exc}"
        return
    stream.connected = True
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if loop.time() >= deadline:
            return  # the answer came only as the client was closing: still counted as never answered
        stream.headers_after = loop.time() - started
        status_line = head.split(b"\r\n", 1)[0].split()
        stream.status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else -1
        if stream.status != 200:
            stream.error = f"status {stream.status}"
            return
        body_started = loop.time()
        while loop.time() < deadline:
            data = await reader.read(16 * 1024)
            if not data:
                stream.error = f"server ended the stream after {stream.body_bytes} body bytes"
                return
            stream.body_bytes += len(data)
            # At most `rate` bytes/s: wait until this many bytes are due (or the deadline).
            due = body_started + stream.body_bytes / rate
            await asyncio.sleep(max(0.0, min(due, deadline) - loop.time()))
    except asyncio.CancelledError:
        raise
    except asyncio.IncompleteReadError as exc:
        stream.error = f"server closed before the response headers ({len(exc.partial)} bytes)"
    except (OSError, ValueError) as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def _slow_readers(host: str, port: int, request: bytes, count: int, rate: float, seconds: float,
                        sample_interval: float, tls: ssl.SSLContext | None = None) -> SlowResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds
    streams = [SlowStream() for _ in range(count)]
    samples: list[int] = []

    async def sample() -> None:
        last = [0] * count
        while loop.time() + sample_interval <= deadline:
            await asyncio.sleep(sample_interval)
            now = [stream.body_bytes for stream in streams]
            samples.append(sum(1 for before, after in zip(last, now, strict=True) if after > before))
            last = now

    async def bounded(stream: SlowStream) -> None:
        # The client closes at the deadline whatever it was waiting for (connect, headers, body).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(_slow_reader(stream, host, port, request, rate, started, deadline, tls),
                                   max(0.0, deadline - loop.time()) + 0.5)

    await asyncio.gather(sample(), *(bounded(stream) for stream in streams))
    return SlowResult(streams, samples, loop.time() - started)


def slow_readers(base_url: str, path: str, headers: dict[str, str], count: int, rate: float, seconds: float,
                 sample_interval: float = 0.5, cacert: str | None = None) -> SlowResult:
    """`count` concurrent GETs of `path`, each reading its body at most `rate` bytes/s, all closed after `seconds`.

    One asyncio loop (call it from a thread to do something else meanwhile). A stream fails on a connect error, a
    non-200 status, or an end/reset by the server before the client closes; a stream still waiting for its response
    headers when the client closes is counted apart (`never_answered`).
    """
    split = urlsplit(base_url)
    lines = [f"GET {path} HTTP/1.1", f"Host: {split.netloc}", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    tls = ssl.create_default_context(cafile=cacert) if split.scheme == "https" else None
    return asyncio.run(_slow_readers(split.hostname or "127.0.0.1", split.port or 80, request, count, rate, seconds,
                                     sample_interval, tls))


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections whose local port is `port` (server side: e.g. nginx's connections to gunicorn)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    count += 1
    return count
