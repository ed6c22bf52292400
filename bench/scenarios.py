"""The benchmark scenarios. Each measures pkgdl and its reference in the same run, interleaved (the order flips
every run), and returns `Row`s of raw per-run numbers; bench.report turns them into medians and ratios.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import secrets
import ssl
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from app.burnlist import open_burnlist
from app.link_ledger import Link, LinkLedger
from app.tokens import PackageRef, TokenService
from bench import servers
from bench.load import LoadError, RssSampler, curl_speed, established_to, rss_kib, slow_readers, wrk
from bench.servers import SID, SIID, UID, MiB, Pkgdl, SeaweedFS, Server
from deploy.tls import KEY_NAME
from storage_backends.fsspec_storage import FsspecStorage

# Targets: a ratio pkgdl/reference to reach (higher is better), or a bound for absolute rows (lower is better).
# The targets of the performance issue (ratios to the reference measured in the same run). They are goals, not what
# the first measured baseline reached; the report says "below" until the service meets them.
TARGETS = {
    "large": 0.95,  # large local file, streamed, vs nginx static (baseline: a 1 MiB-chunk generator 0.87-1.03)
    "offload": 0.98,  # large local file through the production nginx with X-Accel offload vs nginx static
    "large_nginx": 0.95,  # large local file streamed by pkgdl (offload none) through the production nginx
    "1mib": 0.8,  # 1 MiB files at concurrency 32 vs nginx static (baseline: gthread + Flask 0.52-0.62)
    "304": 0.9,  # Basic 304 with a warm credential cache vs a bare Flask 304 under the same gunicorn config
    "token": 0.8,  # token downloads (verify + burn) vs Basic downloads of the same small file
    "s3": 0.9,  # S3 object through pkgdl vs a direct GET of it (baseline: s3fs ~0.45)
    "backend": 0.8,  # a further backend's object through pkgdl vs reading it with its own fsspec filesystem
    "rss_mib": 16.0,  # worker RSS growth while streaming, MiB
}
LARGE_NAME = "bench-large{mib}-1.0-1.x86_64.rpm"
ONE_MIB_NAME = "bench-onemib-1.0-1.x86_64.rpm"
SMALL_NAME = "bench-small-1.0-1.x86_64.rpm"
SMALL_SIZE = 16 * 1024
MICRO_THREADS = 16


@dataclass(frozen=True)
class Plan:
    """How long and how often: --quick or full."""

    quick: bool
    runs: int
    large_sizes: tuple[int, ...]
    wrk_seconds: float
    micro_seconds: float  # per run and per subject, for the in-process timing loops
    micro_calls: int  # per thread, an upper bound next to the time budget
    tokens_per_second: int  # minted per wrk second for the token runs (a cap on the rate they can show)
    slow_seconds: float = 20.0  # scenario 7: how long the slow readers read before they close

    @classmethod
    def make(cls, quick: bool) -> Plan:
        """The quick or the full plan."""
        if quick:
            return cls(True, 3, (64 * MiB,), 2.0, 0.5, 300, 5000, 10.0)
        return cls(False, 5, (256 * MiB, 1024 * MiB), 5.0, 1.5, 1000, 5000, 20.0)


@dataclass
class World:
    """Everything started for the run."""

    home: Path
    secret_keys: str
    nginx: Server
    local: Pkgdl
    bare: Server
    redis: Server | None = None
    redis_service: Pkgdl | None = None  # pkgdl over local files with the Redis burn-list (token downloads only)
    s3: Pkgdl | None = None
    weed: SeaweedFS | None = None
    s3_prefix: str = ""


@dataclass
class Row:
    """One line of the report: per-run values of pkgdl and (when there is one) of its reference."""

    scenario: str
    metric: str
    pkgdl: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    reference_name: str = ""
    target: float | None = None
    lower_is_better: bool = False
    worst_case: bool = False  # judge the largest run, not the median (a memory bound holds for every stream)
    note: str = ""

    @property
    def ratios(self) -> list[float]:
        """pkgdl / reference per run (the pairs were measured back to back)."""
        if not self.reference:
            return []
        return [p / r for p, r in zip(self.pkgdl, self.reference, strict=True) if r]


def interleaved(runs: int, pkgdl: Callable[[], float], reference: Callable[[], float], row: Row) -> Row:
    """Measure both `runs` times, flipping the order every run, and append to `row`."""
    for run in range(runs):
        if run % 2 == 0:
            mine, theirs = pkgdl(), reference()
        else:
            theirs, mine = reference(), pkgdl()
        row.pkgdl.append(mine)
        row.reference.append(theirs)
    return row


def _rate(base_url: str, paths: list[str], headers: dict[str, str], seconds: float, single_use: bool = False) -> float:
    """wrk -t2 -c32 for `seconds`; responses >= 400 (or a single-use list sent twice) void the run."""
    result = wrk(base_url, paths, headers, duration=seconds, split=single_use)
    if result.status_errors:
        where = base_url + paths[0].split("?")[0]
        raise LoadError(f"{result.status_errors} of {result.requests} responses were errors ({where})")
    if single_use and result.wrapped:
        raise LoadError("wrk ran out of minted tokens; raise Plan.tokens_per_second")
    return result.ok_per_second


def tls_context(cacert: str | None) -> ssl.SSLContext | None:
    """What urllib needs to trust the template nginx's self-signed certificate (None: the default, or plain HTTP)."""
    return ssl.create_default_context(cafile=cacert) if cacert else None


def expect_status(url: str, headers: dict[str, str], status: int, cacert: str | None = None) -> None:
    """One request with urllib: the scenario measures what it claims (e.g. a 304, not a 200)."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=tls_context(cacert)) as response:
            got = response.status
    except urllib.error.HTTPError as error:
        got = error.code
    if got != status:
        raise LoadError(f"{url.split('?')[0]} answered {got}, expected {status}")


def warm_up(world: World, plan: Plan) -> None:
    """Credential and manifest caches and the S3 client in both workers (small downloads), before any number.

    No large stream goes through pkgdl here, so the first measured stream shows what a fresh worker grows by.
    """
    for service in (world.local, world.redis_service, world.s3):
        if service is not None:
            wrk(service.server.base_url, [service.path(SMALL_NAME)], {"Authorization": service.authorization},
                duration=1)
    wrk(world.bare.base_url, ["/healthz"], duration=1)
    for size in plan.large_sizes:  # into the page cache (pkgdl and nginx read the same file)
        curl_speed(f"{world.nginx.base_url}/{world.local.blobs[LARGE_NAME.format(mib=size // MiB)]}", size)


# ---- 1, 5 and 6: one large file, one stream ------------------------------------------------------------------------
def stream_pair(service: Pkgdl, name: str, size: int, reference_url: str, runs: int, speed: Row, rss: Row) -> list[Row]:
    """curl the package through pkgdl (Basic) and `reference_url`, interleaved; sample worker RSS during pkgdl's."""
    url = service.server.base_url + service.path(name)
    auth = {"Authorization": service.authorization}

    def pkgdl() -> float:
        with RssSampler(service.server.worker_pids()) as sampler:
            speed = curl_speed(url, size, auth)
        rss.pkgdl.append(sampler.growth_mib)
        return speed / MiB

    curl_speed(reference_url, size)  # the reference answers the right bytes before any number is taken
    return [interleaved(runs, pkgdl, lambda: curl_speed(reference_url, size) / MiB, speed), rss]


def _stream_rows(label: str, reference: str, target: float, subject: str) -> tuple[Row, Row]:
    """The speed row of a single-stream scenario and its row of worker RSS growth (scenario 6)."""
    return (Row(label, "MiB/s", reference_name=reference, target=target),
            Row(f"6. worker RSS growth, {subject}", "MiB", target=TARGETS["rss_mib"], lower_is_better=True,
                worst_case=True))


def large_local(world: World, plan: Plan) -> list[Row]:
    """pkgdl over file:// vs nginx sendfile on one large file; worker RSS growth during the pkgdl streams."""
    rows = []
    for size in plan.large_sizes:
        name = LARGE_NAME.format(mib=size // MiB)
        speed, rss = _stream_rows(f"1. local single stream {size // MiB} MiB", "nginx static", TARGETS["large"],
                                  f"local {size // MiB} MiB")
        nginx_url = f"{world.nginx.base_url}/{world.local.blobs[name]}"
        rows += stream_pair(world.local, name, size, nginx_url, plan.runs, speed, rss)
    return rows


# ---- 1b: one large local file through the production nginx (deploy/nginx.conf.template) --------------------------
# One line of the template's `pkgdl` log format: "$request_method $uri $server_protocol" $status $body_bytes_sent ...
_NGINX_LINE = re.compile(r'"(?P<method>\S+) (?P<uri>\S+) [^"]*" (?P<status>\d{3}) (?P<bytes>\d+) ')
LOG_WAIT = 5.0  # seconds for both servers to write their access log line after curl has its last byte


class LogTail:
    """The lines a server appended to its access log since the last `take`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def take(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode(errors="replace").splitlines()


@dataclass
class ThroughNginx:
    """A gunicorn + pkgdl (PKGDL_TRUSTED_PROXIES=1) and the template nginx in front of it."""

    service: Pkgdl
    nginx: Server
    offload: bool

    def __post_init__(self) -> None:
        self.nginx_log = LogTail(self.nginx.log.parent / "access.log")
        self.gunicorn_log = LogTail(Path(self.service.env["PKGDL_ACCESS_LOG"]))

    def download(self, name: str, size: int) -> float:
        """One curl (Basic) through nginx in MiB/s, after curl's own 200-and-size check, then the access logs:
        nginx sent `size` body bytes from the internal /_pkgdl/local/<blob> location (offload) or from the /bin
        path (streamed); gunicorn sent no body (offload) or all `size` bytes (streamed)."""
        path = self.service.path(name)
        self.nginx_log.take()
        self.gunicorn_log.take()
        speed = curl_speed(self.nginx.base_url + path, size, {"Authorization": self.service.authorization},
                           cacert=self.nginx.ca_file)
        nginx_lines: list[str] = []
        gunicorn_lines: list[str] = []
        deadline = time.monotonic() + LOG_WAIT
        while not (nginx_lines and gunicorn_lines) and time.monotonic() < deadline:
            time.sleep(0.02)
            nginx_lines += self.nginx_log.take()
            gunicorn_lines += self.gunicorn_log.take()
        self._check(name, size, nginx_lines, gunicorn_lines)
        return speed / MiB

    def _check(self, name: str, size: int, nginx_lines: list[str], gunicorn_lines: list[str]) -> None:
        where = f"1b ({'x-accel' if self.offload else 'streamed'} via nginx)"
        matches = [found for found in map(_NGINX_LINE.search, nginx_lines) if found]
        if len(matches) != 1 or len(gunicorn_lines) != 1:
            raise LoadError(f"{where}: expected one access log line each, nginx {nginx_lines!r}, "
                            f"gunicorn {gunicorn_lines!r}")
        line, app = matches[0], json.loads(gunicorn_lines[0])
        uri = "/_pkgdl/local/" + self.service.blobs[name] if self.offload else self.service.path(name)
        app_bytes = 0 if self.offload else size
        if (line["uri"], line["status"], int(line["bytes"])) != (uri, "200", size):
            raise LoadError(f"{where}: nginx logged {line['uri']} {line['status']} {line['bytes']} bytes, "
                            f"expected {uri} 200 {size}")
        if (app.get("path"), app.get("status"), app.get("bytes")) != (self.service.path(name), 200, app_bytes):
            raise LoadError(f"{where}: gunicorn logged {app.get('path')} {app.get('status')} {app.get('bytes')} "
                            f"body bytes, expected 200 with {app_bytes}")


def large_local_nginx(world: World, plan: Plan) -> list[Row]:
    """The production topology for local storage: the template nginx in front of pkgdl with PKGDL_OFFLOAD=x-accel
    (nginx sends the file from its internal alias of the storage root) and with PKGDL_OFFLOAD=none (pkgdl streams,
    nginx proxies unbuffered), each vs nginx static on the same file; every pkgdl download's path is checked in
    both access logs."""
    root = Path(urllib.request.url2pathname(urlsplit(world.local.env["PKGDL_STORAGE_URL"]).path))
    started: list[Server] = []
    try:
        fronts: list[ThroughNginx] = []
        for offload in (True, False):
            mode = "x-accel" if offload else "none"
            service = servers.start_pkgdl_variant(world.local, f"local-{mode}", world.home,
                                                  {"PKGDL_OFFLOAD": mode, "PKGDL_TRUSTED_PROXIES": "1"})
            started.append(service.server)
            nginx = servers.start_template_nginx(f"nginx-template-{mode}", world.home, service.server.port, root)
            started.append(nginx)
            fronts.append(ThroughNginx(service, nginx, offload))
        # The template terminates TLS: the reference is nginx static over TLS too (same certificate and ciphers).
        tls = (Path(nginx.ca_file), Path(nginx.ca_file).with_name(KEY_NAME))
        static = servers.start_static_tls_nginx(world.home, root, tls)
        started.append(static)
        rows = []
        for size in plan.large_sizes:
            name = LARGE_NAME.format(mib=size // MiB)
            static_url = f"{static.base_url}/{world.local.blobs[name]}"
            curl_speed(static_url, size, cacert=static.ca_file)  # untimed: right bytes, warm, before any number
            for front in fronts:
                front.download(name, size)
            for front in fronts:
                how = "nginx X-Accel offload" if front.offload else "streamed through nginx"
                row = Row(f"1b. local single stream {size // MiB} MiB, {how}", "MiB/s",
                          reference_name="nginx static, TLS",
                          target=TARGETS["offload" if front.offload else "large_nginx"])
                row.note = ("TLS at both ends; template nginx (deploy/nginx.conf.template) before gunicorn, "
                            "PKGDL_OFFLOAD="
                            f"{'x-accel' if front.offload else 'none'}, PKGDL_TRUSTED_PROXIES=1; every run checked: "
                            "curl 200 with the full size, nginx access log "
                            + ("$uri /_pkgdl/local/<blob> with the full body, gunicorn access log 0 body bytes"
                               if front.offload else "$uri /bin with the full body, gunicorn access log the full body"))
                rows.append(interleaved(plan.runs, lambda front=front, name=name, size=size: front.download(name, size),
                                        lambda url=static_url, size=size: curl_speed(url, size, cacert=static.ca_file)
                                        / MiB, row))
        return rows
    finally:
        for server in reversed(started):
            servers.stop(server)


# ---- 2: 1 MiB files at concurrency 32 ------------------------------------------------------------------------------
def one_mib_files(world: World, plan: Plan) -> list[Row]:
    """wrk -t2 -c32 on a 1 MiB package: pkgdl (Basic) vs nginx static."""
    row = Row("2. 1 MiB files, 32 connections", "req/s", reference_name="nginx static", target=TARGETS["1mib"])
    service = world.local
    expect_status(service.server.base_url + service.path(ONE_MIB_NAME), {"Authorization": service.authorization}, 200)
    return [interleaved(
        plan.runs,
        lambda: _rate(service.server.base_url, [service.path(ONE_MIB_NAME)], {"Authorization": service.authorization},
                      plan.wrk_seconds),
        lambda: _rate(world.nginx.base_url, ["/" + service.blobs[ONE_MIB_NAME]], {}, plan.wrk_seconds),
        row)]


# ---- 3: 304 revalidation -------------------------------------------------------------------------------------------
def revalidation(world: World, plan: Plan) -> list[Row]:
    """If-None-Match with the ETag and Basic credentials (cache warm) vs a bare Flask 304, same gunicorn config."""
    row = Row("3. 304 revalidation (Basic, warm cache)", "req/s", reference_name="bare Flask 304",
              target=TARGETS["304"])
    service = world.local
    etag = '"' + service.blobs[ONE_MIB_NAME].rsplit("/", 1)[1] + '"'
    headers = {"Authorization": service.authorization, "If-None-Match": etag}
    path = service.path(ONE_MIB_NAME)
    expect_status(service.server.base_url + path, headers, 304)
    expect_status(world.bare.base_url + path, {"If-None-Match": etag}, 304)
    return [interleaved(plan.runs,
                        lambda: _rate(service.server.base_url, [path], headers, plan.wrk_seconds),
                        lambda: _rate(world.bare.base_url, [path], {"If-None-Match": etag}, plan.wrk_seconds),
                        row)]


# ---- 4: tokens -----------------------------------------------------------------------------------------------------
def timed_threads(call: Callable[[object], object], items: Sequence[Sequence[object]],
                  seconds: float) -> tuple[list[float], list[str]]:
    """Run `call` over each thread's items (after one untimed warm-up call) until done or out of time.

    Returns the latencies of the calls that returned, in µs, and one line per call that raised.
    """
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(items))

    def worker(mine: Sequence[object]) -> None:
        measured, failed = [], []
        with contextlib.suppress(Exception):
            call(mine[0])
        barrier.wait()
        deadline = time.perf_counter() + seconds
        for item in mine[1:]:
            started = time.perf_counter_ns()
            try:
                call(item)
                measured.append((time.perf_counter_ns() - started) / 1000)
            except Exception as exc:  # noqa: BLE001 - a failing call is a result too
                failed.append(f"{type(exc).__name__}: {exc}")
            if time.perf_counter() > deadline:
                break
        with lock:
            latencies.extend(measured)
            failures.extend(failed)

    threads = [threading.Thread(target=worker, args=(mine,)) for mine in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures


def p99(values: list[float]) -> float:
    """The 99th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def token_micro(world: World, plan: Plan) -> list[Row]:
    """In-process: TokenService.verify, burn-list burn and a link's claim+settle (SQLite, Redis), 16 threads, median and
    p99 in µs."""
    tokens = TokenService(world.secret_keys.split(","), 86400)
    ref = PackageRef(UID, SIID, SID, world.local.pids[SMALL_NAME])
    expires = int(time.time()) + 86400
    subjects: dict[str, tuple[Callable[[object], object], Callable[[], object]]] = {
        "verify": (lambda token: tokens.verify(token, ref), lambda: tokens.mint(ref)),
    }
    sqlite = open_burnlist(f"sqlite:///{world.home / 'micro-burnlist.sqlite3'}")
    subjects["burn SQLite"] = (lambda jti: sqlite.burn(jti, expires), lambda: secrets.token_urlsafe(16))
    subjects["claim+settle SQLite"] = (_claim_and_settle(LinkLedger(sqlite, 3600)), lambda: _link(expires))
    if world.redis is not None:
        redis = open_burnlist(f"redis://127.0.0.1:{world.redis.port}/0")
        subjects["burn Redis"] = (lambda jti: redis.burn(jti, expires), lambda: secrets.token_urlsafe(16))
        subjects["claim+settle Redis"] = (_claim_and_settle(LinkLedger(redis, 3600)), lambda: _link(expires))
    rows = []
    for name, (call, make_item) in subjects.items():
        median_row = Row(f"4. token {name}, {MICRO_THREADS} threads", "median µs", lower_is_better=True)
        tail_row = Row(f"4. token {name}, {MICRO_THREADS} threads", "p99 µs", lower_is_better=True)
        rate_row = Row(f"4. token {name}, {MICRO_THREADS} threads", "calls/s")
        failed_row = Row(f"4. token {name}, {MICRO_THREADS} threads", "failed calls", target=0, lower_is_better=True,
                         worst_case=True)
        for _ in range(plan.runs):
            items = [[make_item() for _ in range(plan.micro_calls + 1)] for _ in range(MICRO_THREADS)]
            started = time.perf_counter()
            latencies, failures = timed_threads(call, items, plan.micro_seconds)
            rate_row.pkgdl.append(len(latencies) / (time.perf_counter() - started))
            median_row.pkgdl.append(statistics.median(latencies))
            tail_row.pkgdl.append(p99(latencies))
            failed_row.pkgdl.append(len(failures))
            if failures:
                failed_row.note = f"first failure: {failures[0][:200]}"
        median_row.note = f"{len(latencies)} calls in the last run"
        rows += [median_row, tail_row, rate_row] + ([failed_row] if any(failed_row.pkgdl) else [])
    return rows


def _link(expires: int) -> Link:
    return Link(secrets.token_urlsafe(16), expires)


def _claim_and_settle(ledger: LinkLedger) -> Callable[[Link], object]:
    """What a small download (one chunk) does to its link: claim, write, settle (the burn's successor); and, for
    comparison, a download of several chunks, whose settle is a second write."""
    size = 16 << 10

    def claim_and_settle(link: Link) -> object:
        grant = ledger.admit(link, etag="ab" * 32, size=size, ranged=False, planned=size,
                             assume_written=((0, size),))
        grant.reserve(size)
        return grant.settle(((0, size),), completed=True)

    return claim_and_settle


def token_downloads(world: World, plan: Plan) -> list[Row]:
    """Downloads/s of a small file with fresh single-use tokens vs with Basic credentials, per burn-list."""
    rows = [_token_vs_basic(world.local, "SQLite", world.secret_keys, plan)]
    if world.redis_service is not None:
        rows.append(_token_vs_basic(world.redis_service, "Redis", world.secret_keys, plan))
    return rows


def _token_vs_basic(service: Pkgdl, burnlist: str, secret_keys: str, plan: Plan) -> Row:
    row = Row(f"4. token downloads ({burnlist} burn-list), {SMALL_SIZE // 1024} KiB file", "req/s",
              reference_name="Basic downloads", target=TARGETS["token"])
    tokens = TokenService(secret_keys.split(","), 86400)
    path = service.path(SMALL_NAME)
    ref = PackageRef(UID, SIID, SID, service.pids[SMALL_NAME])
    expect_status(f"{service.server.base_url}{path}?downloadToken={quote(tokens.mint(ref), safe='')}", {}, 200)

    def by_token() -> float:
        count = int(plan.tokens_per_second * plan.wrk_seconds)
        paths = [f"{path}?downloadToken={quote(tokens.mint(ref), safe='')}" for _ in range(count)]
        return _rate(service.server.base_url, paths, {}, plan.wrk_seconds, single_use=True)

    return interleaved(
        plan.runs, by_token,
        lambda: _rate(service.server.base_url, [path], {"Authorization": service.authorization}, plan.wrk_seconds),
        row)


# ---- 5 and 6 (S3) --------------------------------------------------------------------------------------------------
def large_s3(world: World, plan: Plan) -> list[Row]:
    """pkgdl over s3:// vs a presigned GET of the same object straight from SeaweedFS; worker RSS growth."""
    if world.s3 is None or world.weed is None:
        raise LoadError("SeaweedFS did not start")
    fs, rows = world.weed.filesystem(), []
    for size in plan.large_sizes:
        name = LARGE_NAME.format(mib=size // MiB)
        speed, rss = _stream_rows(f"5. S3 single stream {size // MiB} MiB", "direct GET (presigned)", TARGETS["s3"],
                                  f"S3 {size // MiB} MiB")
        direct = fs.sign(f"{world.weed.bucket}/{world.s3_prefix}/{world.s3.blobs[name]}", expiration=3600)
        rows += stream_pair(world.s3, name, size, direct, plan.runs, speed, rss)
    return rows


# ---- 8: the further storage backends, each against a direct read from its own server ----------------------------
def other_backends(world: World, plan: Plan) -> list[Row]:
    """For WebDAV, SFTP, GCS and Azure (servers from deploy/processes.py, as the tests use): pkgdl streaming the first
    large file (Basic, curl) against the same object read straight from the same server by the backend's own fsspec
    filesystem in 1 MiB reads, interleaved. A backend whose server or extra is missing is left out, with the reason."""
    rows, size = [], plan.large_sizes[0]
    name = LARGE_NAME.format(mib=size // MiB)
    source = next(path for path in (world.home / "files").iterdir() if path.name == name)
    for kind, start in servers.OTHER_BACKENDS.items():
        try:
            server = start(world.home / f"backend-{kind}")
        except Exception as exc:  # noqa: BLE001 - one backend missing leaves only its row out
            rows.append(Row(f"8. {kind} single stream {size // MiB} MiB", "MiB/s", note=f"not run: {exc}"[:200]))
            continue
        service = servers.start_pkgdl(f"pkgdl-{kind}", world.home, [source], world.secret_keys,
                                      server.url("bench"), server.options)
        storage = FsspecStorage(server.url("bench"), server.options)
        fs, location = storage._filesystem(), storage._backend.locate(service.blobs[name])
        row = Row(f"8. {kind} single stream {size // MiB} MiB", "MiB/s", reference_name="its fsspec filesystem",
                  target=TARGETS["backend"])
        url, auth = service.server.base_url + service.path(name), {"Authorization": service.authorization}
        through_pkgdl = functools.partial(_speed_mib, url, size, auth)
        direct = functools.partial(_direct_read, fs, location, size, storage._backend.open_options())
        rows.append(interleaved(plan.runs, through_pkgdl, direct, row))
    return rows


def _speed_mib(url: str, size: int, headers: dict[str, str]) -> float:
    return curl_speed(url, size, headers) / MiB


def _direct_read(fs: object, location: str, size: int, options: dict) -> float:
    """MiB/s reading the object whole with the filesystem itself, 1 MiB at a time (what pkgdl's worker does)."""
    started, received = time.perf_counter(), 0
    with fs.open(location, "rb", **options) as handle:  # type: ignore[attr-defined]
        while chunk := handle.read(MiB):
            received += len(chunk)
    if received != size:
        raise LoadError(f"direct read got {received} of {size} bytes")
    return size / MiB / (time.perf_counter() - started)


# ---- 7: 200 slow readers through the production nginx -----------------------------------------------------------
SLOW_READERS = 200
SLOW_RATE = 256 * 1024  # bytes/s per reader, at most
PROBES = 20
PROBE_TIMEOUT = 3.0  # seconds; a probe that times out counts at this latency (a lower bound)
PROBE_START = 1.0  # seconds after the slow readers start, so they have all sent their request


def probe(url: str, headers: dict[str, str], size: int, timeout: float,
          cacert: str | None = None) -> tuple[float, str | None]:
    """One small download: (seconds, None) if it answered 200 with `size` bytes, else (seconds, what went wrong)."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout,
                                    context=tls_context(cacert)) as response:
            body = response.read()
            problem = None if response.status == 200 and len(body) == size else f"{response.status}, {len(body)} B"
    except urllib.error.HTTPError as error:
        problem = f"status {error.code}"
    except (OSError, TimeoutError) as error:
        problem = f"{type(error).__name__}: {error}"
    return time.perf_counter() - started, problem


def slow_readers_nginx(world: World, plan: Plan) -> list[Row]:
    """Scenario 7 twice: with X-Accel offload (the production setting of docker-compose.yml and `make stack`), then
    streamed by the app (PKGDL_OFFLOAD=none)."""
    return slow_readers_mode(world, plan, "x-accel") + slow_readers_mode(world, plan, "none")


def slow_readers_mode(world: World, plan: Plan, offload: str) -> list[Row]:
    """200 concurrent Basic downloads of the large local file through the template nginx, each read at <= 256 KiB/s
    for plan.slow_seconds then closed; meanwhile worker RSS is sampled and sequential small Basic downloads through
    the same nginx probe whether the service still answers.

    gunicorn.conf.py gives 2 gthread workers x 8 threads = 16 requests at a time. Streamed (offload none, proxy
    buffering off), each stream holds its thread for as long as the client reads, so the rest wait (in gunicorn's
    queue or backlog); with offload the app answers at once and nginx sends the bytes. The rows say how many streams
    were served, how many never got an answer, and what the probes saw.
    """
    root = Path(urllib.request.url2pathname(urlsplit(world.local.env["PKGDL_STORAGE_URL"]).path))
    size = plan.large_sizes[0]
    name = LARGE_NAME.format(mib=size // MiB)
    mode = "X-Accel offload" if offload == "x-accel" else "streamed"
    label = f"7. {SLOW_READERS} slow readers via nginx, {mode} ({SLOW_RATE // 1024} KiB/s, {plan.slow_seconds:g} s)"
    started: list[Server] = []
    try:
        service = servers.start_pkgdl_variant(world.local, f"local-slow-{offload}", world.home,
                                              {"PKGDL_OFFLOAD": offload, "PKGDL_TRUSTED_PROXIES": "1"})
        started.append(service.server)
        nginx = servers.start_template_nginx(f"nginx-template-slow-{offload}", world.home, service.server.port, root)
        started.append(nginx)
        auth = {"Authorization": service.authorization}
        small_url = nginx.base_url + service.path(SMALL_NAME)
        expect_status(small_url, auth, 200, nginx.ca_file)
        wrk(nginx.base_url, [service.path(SMALL_NAME)], auth, duration=1)  # warm both workers' caches, as warm_up
        workers = service.server.worker_pids()

        result_box: list = []
        errors: list[BaseException] = []

        def run_slow() -> None:
            try:
                result_box.append(slow_readers(nginx.base_url, service.path(name), auth, SLOW_READERS, SLOW_RATE,
                                               plan.slow_seconds, cacert=nginx.ca_file))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the scenario's thread
                errors.append(exc)

        latencies: list[float] = []
        probe_problems: list[str] = []
        upstream_conns: list[int] = []
        with RssSampler(workers, interval=0.05) as sampler:
            slow = threading.Thread(target=run_slow, daemon=True)
            phase_end = time.monotonic() + plan.slow_seconds
            slow.start()
            time.sleep(PROBE_START)
            while len(latencies) < PROBES and time.monotonic() + 0.05 < phase_end:
                upstream_conns.append(established_to(service.server.port))
                seconds, problem = probe(small_url, auth, SMALL_SIZE,
                                         min(PROBE_TIMEOUT, max(0.05, phase_end - time.monotonic())), nginx.ca_file)
                latencies.append(seconds)
                if problem:
                    probe_problems.append(problem)
                time.sleep(0.05)
            while time.monotonic() < phase_end - 0.1:
                time.sleep(0.05)
            during = sampler.growth_mib  # before the readers close (sampled every 50 ms)
            slow.join(plan.slow_seconds + 30)
            time.sleep(1.0)  # gunicorn now works through the requests queued behind the streams (their clients left)
            # Does the service recover?
            after = [probe(small_url, auth, SMALL_SIZE, 10.0, nginx.ca_file) for _ in range(3)]
        before = max(sampler.before.values()) / 1024
        rss_file = max(rss_kib(pid, "RssFile") for pid in workers) / 1024
        rss_anon = max(rss_kib(pid, "RssAnon") for pid in workers) / 1024
        if errors:
            raise LoadError(f"slow readers: {errors[0]!r}")
        if not result_box:
            raise LoadError("slow readers did not finish")
        result = result_box[0]

        failures = result.failures
        kinds = sorted({stream.error.split(":")[0].split(" after ")[0] for stream in failures if stream.error})
        served_first = sorted(s.headers_after for s in result.streams if s.headers_after is not None)
        failed = Row(label, "failed slow requests", [len(failures)], target=0, lower_is_better=True, worst_case=True)
        failed.note = ("a failure is a connect error, a non-200 status or an end/reset by the server before the client "
                       "closes" + (f"; seen: {', '.join(kinds)}; first: {failures[0].error}" if failures else ""))
        waiting = Row(label, "never answered (no headers before close)", [result.never_answered],
                      lower_is_better=True)
        waiting.note = (f"{result.answered} of {SLOW_READERS} got a 200 while their client read "
                        + (f"(headers after {served_first[0]:.2f}-{served_first[-1]:.2f} s)" if served_first else "")
                        + f"; {result.never_answered} connected but got no response headers in {plan.slow_seconds:g} s "
                        "(streamed, they wait behind the 16 busy gunicorn threads: nginx's proxy_read_timeout is 120 "
                        "s, so none timed out within the run); ESTABLISHED nginx->gunicorn connections during the "
                        "probes: "
                        f"{min(upstream_conns, default=0)}-{max(upstream_conns, default=0)}")
        active = Row(label, "streams served concurrently (max)", [max(result.active_samples, default=0)])
        active.note = ("streams that received body bytes within a 0.5 s interval, sampled over the run: "
                       f"median {statistics.median(result.active_samples) if result.active_samples else 0:g}, "
                       f"max {max(result.active_samples, default=0)}; gunicorn.conf.py allows 2 workers x 8 threads = "
                       "16 requests at a time; streamed, with proxy_buffering off, each stream holds its thread until "
                       "the client stops reading; offloaded, nginx sends the bytes")
        rss = Row(label, "MiB", [sampler.growth_mib], target=TARGETS["rss_mib"], lower_is_better=True,
                  worst_case=True)
        rss.note = (f"worker RSS growth, largest of the 2 workers (RSS before up to {before:.0f} MiB): "
                    f"{sampler.growth_mib:.1f} MiB over the run, the close of the readers and 1 s + 3 probes after "
                    f"it; {during:.1f} MiB up to 0.1 s before they closed; "
                    f"afterwards RssAnon {rss_anon:.0f} MiB, RssFile {rss_file:.0f} MiB (largest worker)")
        answered = len(latencies) - len(probe_problems)
        probes_ok = Row(label, f"probes answered (small Basic downloads, {PROBE_TIMEOUT:g} s timeout)", [answered],
                        target=len(latencies))
        probes_ok.note = (f"{answered} of {len(latencies)} sequential {SMALL_SIZE // 1024} KiB Basic downloads through "
                          "the same nginx answered during the slow downloads"
                          + (f"; first problem: {probe_problems[0][:150]}" if probe_problems else "")
                          + "; after the slow readers closed: "
                          + ", ".join(f"{seconds * 1000:.0f} ms" + (f" ({problem[:60]})" if problem else "")
                                      for seconds, problem in after))
        median = Row(label, "probe latency median ms", [statistics.median(latencies) * 1000 if latencies else 0],
                     lower_is_better=True)
        worst = Row(label, "probe latency max ms", [max(latencies, default=0) * 1000], lower_is_better=True)
        worst.note = (f"timed-out probes count at their timeout ({PROBE_TIMEOUT:g} s, or what was left of the run): "
                      "a lower bound")
        return [failed, waiting, active, rss, probes_ok, median, worst]
    finally:
        for server in reversed(started):
            servers.stop(server)


SCENARIOS: list[tuple[str, Callable[[World, Plan], list[Row]]]] = [
    ("1/6 large local file", large_local),
    ("1b large local file through nginx (X-Accel offload, streamed)", large_local_nginx),
    ("2 1 MiB files", one_mib_files),
    ("3 304 revalidation", revalidation),
    ("4 token verify and burn", token_micro),
    ("4 token downloads", token_downloads),
    ("5/6 S3 large object", large_s3),
    ("7 200 slow readers through nginx", slow_readers_nginx),
    ("8 further storage backends (WebDAV, SFTP, GCS, Azure)", other_backends),
]
