"""`make bench-scan`: a whole scan migrated as users do it, against nginx serving the same blobs (issue 12).

A seeded synthetic scan (log-normal sizes, median ~256 KiB, a heavy tail) is imported with `pkgdl catalog add`, then
migrated by N parallel keep-alive clients: with Basic credentials, and with the listing's single-use links (one
listing, then every binaryUri without credentials), and with those links while a seeded tenth of the transfers is
broken part-way (the client closes the connection) and resumed with Range under the same link. Every topology has
its reference in the same run, serving the same blobs to the same clients; rounds are interleaved (order flipped
every round); every downloaded file is checked against its sha256. Topologies: gunicorn alone (2 workers x 8
threads, local storage, SQLite burn-list) against nginx serving the blob files over HTTP; the production stack
(deploy/nginx.conf.template with TLS in front of two gunicorn instances with X-Accel offload and the Redis
burn-list) against nginx serving them over TLS with the same certificate and ciphers; and that stack with the blobs
in SeaweedFS S3 (nginx proxies presigned GETs) against the clients GETting presigned URLs from SeaweedFS directly.
Then the first request on a fresh gunicorn worker against a warm one, per topology.

    .venv/bin/python -m bench.scan [--quick] [--packages N] [--clients N] [--only TEXT] [--no-first]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import report, servers
from bench.scenarios import Row
from bench.servers import SID, SIID, UID, MiB
from deploy.tls import KEY_NAME

LOCAL_RESULTS = Path(__file__).parent / "results" / "local"
TARGET = 0.8  # the target: the whole scan in >= 0.8 of the reference's speed
FIRST_REQUEST_TARGET = 3.0  # the first request on a fresh worker within 3x a warm one
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
    resumed: int = 0  # broken transfers completed with a Range request under the same URL
    refused: int = 0  # resumes refused (403: the link was spent) and fetched again with a fresh link


@dataclass(frozen=True)
class Item:
    """One file to migrate: its URL, its sha256, and where (bytes) the client breaks the transfer, if it does."""

    url: str
    sha256: str
    break_at: int | None = None


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


def migrate(items: list[Item], clients: int, headers: dict[str, str], serving: list[int],
            ca_file: str | None = None, relink: Callable[[str], str] | None = None) -> Transfer:
    """Download every item with `clients` threads, each its own keep-alive session (trusting `ca_file`).

    An item with `break_at` is read that far, its connection closed, then resumed with `Range: bytes=<break_at>-`
    under the same URL (as curl -C - does); a resume refused with 403 (a link counts as spent once the server wrote
    every byte, and on loopback the socket buffers take whole small packages before the client breaks) is fetched
    again from `relink(url)`, a fresh link, as a migration client would.
    """
    queue = list(reversed(items))
    lock = threading.Lock()
    result = Transfer(0.0, 0, 0)
    verify = ca_file or True

    def fetch(session: requests.Session, url: str, extra: dict[str, str], limit: int | None,
              digest: Any) -> tuple[requests.Response, int, float | None]:
        """GET url, feeding the body into digest (at most `limit` bytes, then the connection is dropped)."""
        started, size, first = time.perf_counter(), 0, None
        with session.get(url, headers={**headers, **extra}, stream=True, timeout=120, verify=verify) as response:
            if response.status_code in (200, 206):
                for chunk in response.iter_content(1 << 20 if limit is None else 64 << 10):
                    first = first or time.perf_counter() - started
                    if limit is not None:
                        chunk = chunk[:limit - size]
                    digest.update(chunk)
                    size += len(chunk)
                    if limit is not None and size >= limit:
                        break  # leaving the block closes the response mid-body: the connection is dropped
        return response, size, first or time.perf_counter() - started

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                digest = hashlib.sha256()
                response, size, first = fetch(session, item.url, {}, item.break_at, digest)
                made, ok, resumed, refused = 1, response.status_code == 200, 0, 0
                if ok and item.break_at is not None:
                    response, more, _ = fetch(session, item.url, {"Range": f"bytes={size}-"}, None, digest)
                    made, resumed = made + 1, 1
                    if response.status_code == 403 and relink is not None:
                        digest, refused, made = hashlib.sha256(), 1, made + 1
                        response, more, _ = fetch(session, relink(item.url), {}, None, digest)
                        size, ok = 0, response.status_code == 200
                    else:
                        ok = response.status_code == 206 and response.headers.get("Content-Range", "").startswith(
                            f"bytes {size}-")
                    size += more
                with lock:
                    result.requests += made
                    result.bytes += size
                    result.resumed += resumed
                    result.refused += refused
                    result.first_bytes.append(first)
                    result.wrong += not ok or digest.hexdigest() != item.sha256

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


REDIS_DB = {"local": 0, "s3": 1}  # one Redis, a database per topology


def _stack(service: servers.Pkgdl, home: Path, name: str, redis: servers.Server, root: Path,
           s3_endpoint: str | None = None) -> tuple[list[servers.Pkgdl], servers.Server]:
    """Two gunicorn instances over the service's storage and users, X-Accel offload, a Redis burn-list, behind
    the template nginx with TLS (its S3 location proxying to `s3_endpoint` when given)."""
    settings = stack_settings(redis, name)
    stack = [servers.start_pkgdl_variant(service, f"{name}-{number}", home, settings) for number in (1, 2)]
    front = servers.start_template_nginx(f"nginx-{name}", home, [instance.server.port for instance in stack], root,
                                         s3_endpoint)
    return stack, front


def stack_settings(redis: servers.Server, name: str) -> dict[str, str]:
    """What the production stack's instances run with (deploy/stack.py, docker-compose.yml)."""
    return {"PKGDL_OFFLOAD": "x-accel", "PKGDL_TRUSTED_PROXIES": "1",
            "PKGDL_BURNLIST_URL": f"redis://127.0.0.1:{redis.port}/{REDIS_DB['s3' if 's3' in name else 'local']}"}


@dataclass
class Topology:
    """pkgdl as clients reach it (`front`, or the gunicorn itself) and the reference serving the same blobs."""

    name: str
    service: servers.Pkgdl  # its seeded catalog and credentials
    front: servers.Server
    serving: list[int]  # the pids whose CPU counts
    reference: list[str]  # the reference URL of every package, in catalog order
    reference_serving: list[int]
    reference_name: str
    reference_ca: str | None = None

    def links(self) -> dict[int, str]:
        """pid -> a fresh single-use link, from one listing (Basic) asked of the front."""
        return {int(link.split("/packages/")[1].split("/")[0]): link for link in listing_links(self.service,
                                                                                               self.front)}


def _kinds(top: Topology, names: list[str], sha: dict[str, str], breaks: dict[str, int], clients: int,
           resumed: bool) -> dict[str, tuple[Callable[[], Transfer], Callable[[], Transfer], str]]:
    """The migrations of one topology: Basic, listing + tokens, and (with `resumed`) listing + tokens with 10% of
    the transfers broken and resumed; each with its reference."""
    pids = [top.service.pids[name] for name in names]
    auth = {"Authorization": top.service.authorization}
    ca = top.front.ca_file
    basic = [Item(top.front.base_url + top.service.path(name), sha[name]) for name in names]

    def reference(broken: bool) -> Callable[[], Transfer]:
        items = [Item(url, sha[name], breaks.get(name) if broken else None)
                 for url, name in zip(top.reference, names, strict=True)]
        return lambda: migrate(items, clients, {}, top.reference_serving, top.reference_ca)

    def tokens(broken: bool) -> Callable[[], Transfer]:
        def run() -> Transfer:
            links = top.links()
            items = [Item(links[pid], sha[name], breaks.get(name) if broken else None)
                     for pid, name in zip(pids, names, strict=True)]
            return migrate(items, clients, {}, top.serving, ca, relink=_relinker(top))
        return run

    kinds = {
        f"{top.name}, Basic": (lambda: migrate(basic, clients, auth, top.serving, ca), reference(False),
                               top.reference_name),
        f"{top.name}, listing + tokens": (tokens(False), reference(False), top.reference_name),
    }
    if resumed:
        kinds[f"{top.name}, listing + tokens, 10% resumed"] = (tokens(True), reference(True), top.reference_name)
    return kinds


def _relinker(top: Topology) -> Callable[[str], str]:
    def relink(url: str) -> str:
        return top.links()[int(url.split("/packages/")[1].split("/")[0])]
    return relink


def break_plan(files: dict[str, Path], fraction: float = 0.1, seed: int = 34) -> dict[str, int]:
    """Which transfers the clients break (a seeded `fraction` of the packages) and after how many bytes (20-80%)."""
    rng = random.Random(seed)
    names = sorted(files)
    return {name: max(1, int(files[name].stat().st_size * rng.uniform(0.2, 0.8)))
            for name in rng.sample(names, max(1, round(len(names) * fraction)))}


# ---- the first request on a fresh worker ---------------------------------------------------------------------------
def first_requests(base: servers.Pkgdl, home: Path, label: str, settings: dict[str, str], name: str,
                   fresh: int, warm: int) -> dict[str, tuple[list[float], list[float], str, float | None]]:
    """Time to response headers of the first download on a fresh gunicorn worker against the same request on the
    warm worker, per kind: a token, and Basic with credentials the worker has not verified yet (both pay one KDF
    run: the credential cache is per worker, by design). One worker (every request reaches it); a fresh worker is
    the one gunicorn starts after we stop the previous (SIGTERM), ready once /healthz answers (what a load
    balancer waits for). The token's first request is also set against the warm worker's first request for a scan
    it has not read yet (a copy of the scan's manifest under another sid): what a fresh worker pays beyond reading
    the scan's manifest, which every worker pays once per scan and PKGDL_CATALOG_TTL.
    Returns kind -> (first times, reference times, the reference's name, target), seconds."""
    from app.tokens import PackageRef, TokenService
    from app.users import MIGRATION_ACCESS, User, hash_password, load_users, save_users

    users_file = Path(base.env["PKGDL_USERS_FILE"])
    logins = [f"first-{label}-{number}" for number in range(fresh * (warm + 1))]
    password = secrets.token_urlsafe(12)
    hashed = hash_password(password)
    known = load_users(users_file)
    known.update({login: User(login, hashed, frozenset({MIGRATION_ACCESS}), admin=True) for login in logins})
    save_users(users_file, known.values())
    unread = _scan_copies(base, fresh)
    variant = servers.start_pkgdl_variant(base, f"first-{label}", home, {**settings, "PKGDL_WORKERS": "1"})
    minter = TokenService(base.env["PKGDL_SECRET_KEYS"].split(","), 3600)
    logins_left = iter(logins)

    pid = base.pids[name]

    def timed(kind: str, sid: int = SID) -> float:
        url = f"{variant.server.base_url}/users/{UID}/scannedinstances/{SIID}/scans/{sid}/packages/{pid}/bin"
        if kind == "token":
            params = {"downloadToken": minter.mint(PackageRef(UID, SIID, sid, pid))}
            headers = {"Accept": "*/*"}
        else:
            params, headers = {}, {"Authorization": "Basic " + base64.b64encode(
                f"{next(logins_left)}:{password}".encode()).decode()}
        started = time.perf_counter()
        # Headers only: with X-Accel offload gunicorn answers them alone (nginx would send the body).
        with requests.get(url, params=params, headers=headers, stream=True, timeout=60, verify=True) as answer:
            elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(f"first-request probe: {answer.status_code} {answer.text[:200]}")
        return elapsed

    token, basic = ([], [], "warm worker", FIRST_REQUEST_TARGET), ([], [], "warm worker", FIRST_REQUEST_TARGET)
    token_unread = (token[0], [], "warm worker, a scan it has not read", None)
    try:
        for cycle in range(fresh):
            for kind, (firsts, warms, _, _) in (("token", token), ("Basic", basic)):
                _fresh_worker(variant.server)
                firsts.append(timed(kind))
                warms.append(statistics.median(timed(kind) for _ in range(warm)))
                if kind == "token":
                    token_unread[1].append(timed(kind, unread[cycle]))
    finally:
        servers.stop(variant.server)
    return {"token": token, "token, against a scan not yet read": token_unread, "Basic, new credentials": basic}


def _scan_copies(base: servers.Pkgdl, count: int) -> list[int]:
    """`count` copies of the seeded scan's manifest under sids of their own (the blobs are shared): scans a warm
    worker has not read yet."""
    from dataclasses import replace

    from app.manifest import dump_manifest, manifest_path, parse_manifest
    from storage_backends import open_storage

    storage = open_storage(base.env["PKGDL_STORAGE_URL"], json.loads(base.env.get("PKGDL_STORAGE_OPTIONS") or "{}"))
    manifest = parse_manifest(storage.read_bytes(manifest_path(UID, SIID, SID)))
    sids = [SID + 1 + number for number in range(count)]
    for sid in sids:  # written as the importer writes them: the same bytes to parse, but for the sid
        storage.write_bytes(manifest_path(UID, SIID, sid), dump_manifest(replace(manifest, sid=sid)))
    return sids


def _fresh_worker(server: servers.Server, timeout: float = 60.0) -> None:
    """Replace the server's only worker with a fresh one and wait until it answers /healthz."""
    old = server.worker_pids()
    for pid in old:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = server.worker_pids()
        if now and not set(now) & set(old):
            try:
                if requests.get(f"{server.base_url}/healthz", timeout=2, verify=True).status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"no fresh worker within {timeout} s:\n{server.log_tail()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scan", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 packages up to 16 MiB, 4 rounds (a few minutes)")
    parser.add_argument("--packages", type=int, help="packages in the scan (default 1000, quick 200)")
    parser.add_argument("--clients", type=int, default=8, help="parallel keep-alive clients (default 8)")
    parser.add_argument("--only", help="run only the migrations (and first-request probes) whose name contains "
                        "this (e.g. 'S3', 'alone', 'first')")
    parser.add_argument("--no-first", action="store_true", help="skip the first-request measurement")
    parser.add_argument("--out", type=Path, default=LOCAL_RESULTS, help="report directory (git-ignored default)")
    args = parser.parse_args(argv)
    count = args.packages or (200 if args.quick else 1000)
    cap, rounds = (16 if args.quick else 200) * MiB, 4 if args.quick else 5
    fresh, warm = (3, 10) if args.quick else (5, 20)
    home = Path(tempfile.mkdtemp(prefix="pkgdl-bench-scan-"))
    rows: dict[str, Row] = {}
    started_all = time.monotonic()
    try:
        files = synthetic_scan(home / "files", count, cap)
        total = sum(path.stat().st_size for path in files.values())
        print(f"[bench-scan] {count} packages, {total / MiB:.0f} MiB; importing ...", flush=True)
        keys = secrets.token_urlsafe(32)
        names = list(files)
        sha = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        breaks = break_plan(files)
        root = home / "packages"
        service = servers.start_pkgdl("scan", home, list(files.values()), keys, root.as_uri())
        nginx = servers.start_nginx(home, root)  # the same blob files pkgdl serves
        redis = servers.start_redis(home)
        stack, front = _stack(service, home, "stack", redis, root)
        tls_static = servers.start_static_tls_nginx(home, root, (Path(front.ca_file),
                                                                 Path(front.ca_file).with_name(KEY_NAME)))
        print("[bench-scan] S3: SeaweedFS, importing ...", flush=True)
        weed = servers.start_seaweedfs(home)
        s3_options = {**weed.options, "config_kwargs": {"signature_version": "s3v4"}}
        s3_service = servers.start_pkgdl("scan-s3", home, list(files.values()), keys, f"s3://{weed.bucket}/scan",
                                         s3_options, serve=False)
        (home / "no-local-root").mkdir()
        s3_stack, s3_front = _stack(s3_service, home, "stack-s3", redis, home / "no-local-root",
                                    weed.server.base_url)
        import s3fs

        s3fs_client = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)  # SigV4, as the app signs
        presigned = [s3fs_client.sign(f"{weed.bucket}/scan/{s3_service.blobs[name]}", expiration=6 * 3600)
                     for name in names]

        def front_pids(instances: list[servers.Pkgdl], front_server: servers.Server) -> list[int]:
            return ([pid for instance in instances for pid in instance.server.worker_pids()]
                    + [front_server.process.pid] + front_server.worker_pids())

        topologies = [
            Topology("gunicorn alone", service, service.server, service.server.worker_pids(),
                     [f"{nginx.base_url}/{service.blobs[name]}" for name in names], [nginx.process.pid],
                     "nginx static"),
            Topology("production stack", service, front, front_pids(stack, front),
                     [f"{tls_static.base_url}/{service.blobs[name]}" for name in names], [tls_static.process.pid],
                     "nginx static, TLS", tls_static.ca_file),
            Topology("production stack on S3", s3_service, s3_front,
                     front_pids(s3_stack, s3_front) + [weed.server.process.pid], presigned,
                     [weed.server.process.pid], "presigned GET from SeaweedFS"),
        ]
        kinds: dict[str, tuple[Callable[[], Transfer], Callable[[], Transfer], str]] = {}
        for top in topologies:
            kinds.update(_kinds(top, names, sha, breaks, args.clients, resumed=True))
        kinds = {kind: value for kind, value in kinds.items() if not args.only or args.only in kind}
        for round_number in range(rounds):
            for kind, (run, reference, reference_name) in kinds.items():
                pair = [("pkgdl", run), ("nginx", reference)]
                if round_number % 2:
                    pair.reverse()
                outcome = {who: measure() for who, measure in pair}
                _record(rows, kind, outcome["pkgdl"], outcome["nginx"], total, reference_name)
                print(f"[bench-scan] round {round_number + 1} {kind}: {outcome['pkgdl'].seconds:.2f} s vs "
                      f"reference {outcome['nginx'].seconds:.2f} s", flush=True)
        if not args.no_first:
            small = min(names, key=lambda name: abs(files[name].stat().st_size - 64 * 1024))
            probes = [("gunicorn alone", service, {}),
                      ("production stack", service, stack_settings(redis, "stack")),
                      ("production stack on S3", s3_service, stack_settings(redis, "stack-s3"))]
            for label, base, settings in probes:
                if args.only and args.only not in f"first request, {label}":
                    continue
                slug = label.replace(" ", "-")
                measured = first_requests(base, home, slug, settings, small, fresh, warm)
                for kind, (firsts, warms, reference_name, target) in measured.items():
                    row = rows.setdefault(f"first {label} {kind}", Row(
                        f"first request on a fresh worker, {label}", f"{kind}, ms to headers",
                        reference_name=reference_name, target=target, lower_is_better=True))
                    row.pkgdl.extend(value * 1000 for value in firsts)
                    row.reference.extend(value * 1000 for value in warms)
                    print(f"[bench-scan] first request, {label}, {kind}: "
                          f"{', '.join(f'{f * 1000:.1f}' for f in firsts)} ms vs warm "
                          f"{', '.join(f'{w * 1000:.1f}' for w in warms)} ms", flush=True)
    finally:
        servers.stop_all()
        shutil.rmtree(home, ignore_errors=True)
    command = ("python -m bench.scan" + (" --quick" if args.quick else "")
               + (f" --packages {args.packages}" if args.packages else "")
               + (f" --only '{args.only}'" if args.only else "") + (" --no-first" if args.no_first else ""))
    context = [f"Command: `{command}`; {count} packages "
               f"({total / MiB:.0f} MiB, log-normal sizes, median {MEDIAN_SIZE // 1024} KiB, capped at "
               f"{cap // MiB} MiB), {args.clients} keep-alive clients, {rounds} interleaved rounds, "
               f"{time.monotonic() - started_all:.0f} s in all. 'gunicorn alone': 2 workers x 8 threads, local "
               "storage, SQLite burn-list, against nginx serving the same blob files over HTTP. 'production stack': "
               "deploy/nginx.conf.template (TLS) before two such instances with X-Accel offload and the Redis "
               "burn-list, against nginx serving the blobs over TLS with the same certificate; 'on S3': the same "
               "with the blobs in SeaweedFS (nginx proxies presigned GETs), against the same clients GETting "
               "presigned URLs straight from SeaweedFS. '10% resumed': a seeded tenth of the transfers is broken "
               "after 20-80% of its bytes (connection closed) and resumed with Range under the same URL; a resume "
               "refused because the link was spent is fetched again with a fresh link from a new listing. CPU "
               "counts the serving processes (gunicorn workers, the front nginx, SeaweedFS). Every file checked "
               "against its sha256 ('wrong files' must be 0). First request: time to response headers of a "
               "download on a fresh worker (1 worker, after /healthz answered) against the same request on the "
               "warm worker."]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = datetime.date.today().isoformat() + "-scan" + ("-quick" if args.quick else "")
    text = report.markdown(list(rows.values()), f"pkgdl whole-scan migration {stem}", context, [])
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"[bench-scan] wrote {args.out / stem}.md")
    return 0 if all(not row.pkgdl or max(row.pkgdl) == 0 for key, row in rows.items() if "wrong" in key) else 1


def _record(rows: dict[str, Row], kind: str, mine: Transfer, nginx: Transfer, total: int,
            reference_name: str) -> None:
    """Append one round's numbers to the report's rows for `kind`."""
    def row(metric: str, lower_is_better: bool = False, target: float | None = None) -> Row:
        key = f"{kind} {metric}"
        if key not in rows:
            rows[key] = Row(f"scan, {kind}", metric, reference_name=reference_name, target=target,
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
    wrong.pkgdl.append(mine.wrong + nginx.wrong)  # the reference's too: a broken bench is no result
    if mine.resumed or nginx.resumed:
        row("resumed").pkgdl.append(mine.resumed)
        rows[f"{kind} resumed"].reference.append(nginx.resumed)
        refused = rows.setdefault(f"{kind} refused", Row(f"scan, {kind}", "resumes refused (link spent), "
                                                         "fetched again", lower_is_better=True))
        refused.pkgdl.append(mine.refused)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1] if len(ordered) > 1 \
        else ordered[0]


if __name__ == "__main__":
    sys.exit(main())
