"""`make bench-scan`: a whole scan migrated as users do it, against nginx serving the same blobs (issue 12, first step).

A seeded synthetic scan (log-normal sizes, median ~256 KiB, a heavy tail) is imported with `pkgdl catalog add`, then
migrated by N parallel keep-alive clients: with Basic credentials, and with the listing's single-use links (one
listing, then every binaryUri without credentials). The reference in the same run is nginx serving the same blob
files statically to the same clients. Rounds are interleaved (order flipped every round); every downloaded file is
checked against its sha256. Two topologies: gunicorn alone (2 workers x 8 threads, local storage, SQLite burn-list)
against nginx serving the blobs over HTTP; and the production stack (deploy/nginx.conf.template with TLS in front of
two gunicorn instances with X-Accel offload and the Redis burn-list) against nginx serving them over TLS with the
same certificate and ciphers.

    .venv/bin/python -m bench.scan [--quick] [--packages N] [--clients N]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import math
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench import report, servers
from bench.scenarios import Row
from bench.servers import SID, SIID, UID, MiB
from deploy.tls import KEY_NAME

LOCAL_RESULTS = Path(__file__).parent / "results" / "local"
TARGET = 0.8  # the target: the whole scan in >= 0.8 of the reference's speed
MEDIAN_SIZE = 256 * 1024
SIGMA = 1.3  # log-normal spread: a few packages tens of MiB, as in real scans


@dataclass
class Transfer:
    """One migration's outcome."""

    seconds: float
    requests: int
    bytes: int
    first_bytes: list[float] = field(default_factory=list)  # time to first byte per request, seconds
    cpu_seconds: float = 0.0  # of the serving processes
    wrong: int = 0  # files whose sha256 differs


def synthetic_scan(directory: Path, count: int, cap: int, seed: int = 12) -> dict[str, Path]:
    """`count` package files, log-normal sizes capped at `cap`, seeded; name -> path."""
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    files = {}
    for index in range(count):
        size = min(cap, max(1024, int(rng.lognormvariate(math.log(MEDIAN_SIZE), SIGMA))))
        name = f"scanpkg{index:04d}-1.0-1.x86_64.rpm"
        files[name] = servers.write_random_file(directory / name, size, f"{seed}-{index}")
    return files


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / 100  # clock ticks (USER_HZ is 100 on Linux)


def migrate(urls: list[tuple[str, str]], clients: int, headers: dict[str, str], serving: list[int],
            ca_file: str | None = None) -> Transfer:
    """Download every (url, sha256) with `clients` threads, each its own keep-alive session (trusting `ca_file`)."""
    queue = list(reversed(urls))
    lock = threading.Lock()
    result = Transfer(0.0, 0, 0)

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    if not queue:
                        return
                    url, sha256 = queue.pop()
                started = time.perf_counter()
                with session.get(url, headers=headers, stream=True, timeout=120, verify=ca_file or True) as response:
                    digest, first, size = hashlib.sha256(), None, 0
                    for chunk in response.iter_content(1 << 20):
                        first = first or time.perf_counter() - started
                        digest.update(chunk)
                        size += len(chunk)
                with lock:
                    result.requests += 1
                    result.bytes += size
                    result.first_bytes.append(first or time.perf_counter() - started)
                    result.wrong += response.status_code != 200 or digest.hexdigest() != sha256

    cpu_before, started = cpu_seconds(serving), time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = cpu_seconds(serving) - cpu_before
    return result


def listing_links(service: servers.Pkgdl, front: servers.Server | None = None) -> list[str]:
    """The scan's binaryUris (each with a fresh single-use token), from one XML listing with Basic credentials,
    asked of `front` (the production nginx) or of the service itself."""
    server = front or service.server
    url = f"{server.base_url}/users/{UID}/scannedinstances/{SIID}/scans/{SID}/packages"
    answer = requests.get(url, headers={"Authorization": service.authorization}, timeout=120,
                          verify=server.ca_file or True)
    answer.raise_for_status()
    return [f"{server.base_url}/{element.text}" for element in ET.fromstring(answer.content).iter("binaryUri")]


def _production_stack(service: servers.Pkgdl, home: Path) -> tuple[list[servers.Pkgdl], servers.Server,
                                                                     servers.Server]:
    """Two gunicorn instances over the service's storage and users, X-Accel offload, a Redis burn-list, behind
    the template nginx with TLS; and the TLS static reference with the same certificate."""
    redis = servers.start_redis(home)
    settings = {"PKGDL_OFFLOAD": "x-accel", "PKGDL_BURNLIST_URL": f"redis://127.0.0.1:{redis.port}/0",
                "PKGDL_TRUSTED_PROXIES": "1"}
    stack = [servers.start_pkgdl_variant(service, f"stack-{number}", home, settings) for number in (1, 2)]
    root = Path(service.env["PKGDL_STORAGE_URL"].removeprefix("file://"))
    front = servers.start_template_nginx("nginx-template", home, [instance.server.port for instance in stack], root)
    tls = (Path(front.ca_file), Path(front.ca_file).with_name(KEY_NAME))
    return stack, front, servers.start_static_tls_nginx(home, root, tls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scan", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 packages up to 16 MiB, 2 rounds (~1 minute)")
    parser.add_argument("--packages", type=int, help="packages in the scan (default 1000, quick 200)")
    parser.add_argument("--clients", type=int, default=8, help="parallel keep-alive clients (default 8)")
    parser.add_argument("--out", type=Path, default=LOCAL_RESULTS, help="report directory (git-ignored default)")
    args = parser.parse_args(argv)
    count = args.packages or (200 if args.quick else 1000)
    cap, rounds = (16 if args.quick else 200) * MiB, 2 if args.quick else 3
    home = Path(tempfile.mkdtemp(prefix="pkgdl-bench-scan-"))
    rows: dict[str, Row] = {}
    started_all = time.monotonic()
    try:
        files = synthetic_scan(home / "files", count, cap)
        total = sum(path.stat().st_size for path in files.values())
        print(f"[bench-scan] {count} packages, {total / MiB:.0f} MiB; importing ...", flush=True)
        keys = secrets.token_urlsafe(32)
        service = servers.start_pkgdl("scan", home, list(files.values()), keys,
                                      (home / "packages").as_uri())
        nginx = servers.start_nginx(home, home / "packages")  # the same blob files pkgdl serves
        sha = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        basic = [(service.server.base_url + service.path(name), sha[name]) for name in files]
        static = [(f"{nginx.base_url}/{service.blobs[name]}", sha[name]) for name in files]
        auth = {"Authorization": service.authorization}
        sha_list = [sha for _, sha in basic]
        stack, front, tls_static = _production_stack(service, home)
        stack_basic = [(front.base_url + service.path(name), sha[name]) for name in files]
        tls_reference = [(f"{tls_static.base_url}/{service.blobs[name]}", sha[name]) for name in files]
        serving = service.server.worker_pids()
        stack_serving = [pid for instance in stack for pid in instance.server.worker_pids()] + [front.process.pid]
        kinds: dict[str, tuple[Callable[[], Transfer], Callable[[], Transfer]]] = {
            "gunicorn alone, Basic": (lambda: migrate(basic, args.clients, auth, serving),
                                      lambda: migrate(static, args.clients, {}, [nginx.process.pid])),
            "gunicorn alone, listing + tokens": (
                lambda: migrate(list(zip(listing_links(service), sha_list, strict=True)), args.clients, {}, serving),
                lambda: migrate(static, args.clients, {}, [nginx.process.pid])),
            "production stack, Basic": (
                lambda: migrate(stack_basic, args.clients, auth, stack_serving, front.ca_file),
                lambda: migrate(tls_reference, args.clients, {}, [tls_static.process.pid], tls_static.ca_file)),
            "production stack, listing + tokens": (
                lambda: migrate(list(zip(listing_links(service, front), sha_list, strict=True)), args.clients, {},
                                stack_serving, front.ca_file),
                lambda: migrate(tls_reference, args.clients, {}, [tls_static.process.pid], tls_static.ca_file)),
        }
        for round_number in range(rounds):
            for kind, (run, reference) in kinds.items():
                pair = [("pkgdl", run), ("nginx", reference)]
                if round_number % 2:
                    pair.reverse()
                outcome = {who: measure() for who, measure in pair}
                _record(rows, kind, outcome["pkgdl"], outcome["nginx"], total)
                print(f"[bench-scan] round {round_number + 1} {kind}: {outcome['pkgdl'].seconds:.2f} s vs nginx "
                      f"{outcome['nginx'].seconds:.2f} s", flush=True)
    finally:
        servers.stop_all()
        shutil.rmtree(home, ignore_errors=True)
    context = [f"Command: `python -m bench.scan{' --quick' if args.quick else ''}`; {count} packages "
               f"({total / MiB:.0f} MiB, log-normal sizes, median {MEDIAN_SIZE // 1024} KiB, capped at "
               f"{cap // MiB} MiB), {args.clients} keep-alive clients, {rounds} interleaved rounds, "
               f"{time.monotonic() - started_all:.0f} s in all. 'gunicorn alone': 2 workers x 8 threads, local "
               "storage, SQLite burn-list, against nginx serving the same blob files over HTTP. 'production stack': "
               "deploy/nginx.conf.template (TLS) before two such instances with X-Accel offload and the Redis "
               "burn-list, against nginx serving the blobs over TLS with the same certificate. CPU counts the "
               "serving processes (gunicorn workers, and the front nginx for the stack). Every file checked "
               "against its sha256 ('wrong files' must be 0)."]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = datetime.date.today().isoformat() + "-scan" + ("-quick" if args.quick else "")
    text = report.markdown(list(rows.values()), f"pkgdl whole-scan migration {stem}", context, [])
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"[bench-scan] wrote {args.out / stem}.md")
    return 0 if all(not row.pkgdl or max(row.pkgdl) == 0 for key, row in rows.items() if "wrong" in key) else 1


def _record(rows: dict[str, Row], kind: str, mine: Transfer, nginx: Transfer, total: int) -> None:
    """Append one round's numbers to the report's rows for `kind`."""
    def row(metric: str, lower_is_better: bool = False, target: float | None = None) -> Row:
        key = f"{kind} {metric}"
        if key not in rows:
            rows[key] = Row(f"scan, {kind}", metric, reference_name="nginx static", target=target,
                            lower_is_better=lower_is_better)
        return rows[key]

    row("MiB/s (whole scan)", target=TARGET).pkgdl.append(total / MiB / mine.seconds)
    rows[f"{kind} MiB/s (whole scan)"].reference.append(total / MiB / nginx.seconds)
    row("requests/s").pkgdl.append(mine.requests / mine.seconds)
    rows[f"{kind} requests/s"].reference.append(nginx.requests / nginx.seconds)
    for name, quantile in (("p50", 0.5), ("p99", 0.99)):
        metric = f"time to first byte {name}, ms"
        row(metric, lower_is_better=True).pkgdl.append(_quantile(mine.first_bytes, quantile) * 1000)
        rows[f"{kind} {metric}"].reference.append(_quantile(nginx.first_bytes, quantile) * 1000)
    row("CPU s per GiB", lower_is_better=True).pkgdl.append(mine.cpu_seconds / (mine.bytes / 1024 / MiB))
    rows[f"{kind} CPU s per GiB"].reference.append(nginx.cpu_seconds / (nginx.bytes / 1024 / MiB))
    wrong = rows.setdefault(f"{kind} wrong files", Row(f"scan, {kind}", "wrong files", target=0,
                                                       lower_is_better=True, worst_case=True))
    wrong.pkgdl.append(mine.wrong)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1] if len(ordered) > 1 \
        else ordered[0]


if __name__ == "__main__":
    sys.exit(main())
