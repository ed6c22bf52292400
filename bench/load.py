"""Load generators (separate processes: curl for one stream, wrk for request rates) and a worker RSS sampler."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).with_name("paths.lua")
MiB = 1024 * 1024


class LoadError(RuntimeError):
    """A load run did not measure what it should (wrong status, short body, errors): no number from it."""


def curl_speed(url: str, size: int, headers: dict[str, str] | None = None, max_time: float = 120.0) -> float:
    """Download `url` once to /dev/null; return curl's speed_download (bytes/s) after checking status and size."""
    command = ["curl", "-s", "-o", "/dev/null", "--max-time", str(max_time),
               "-w", "%{http_code} %{size_download} %{speed_download}"]
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
