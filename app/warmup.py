"""Warm a fresh worker up before it accepts its first request (gunicorn.conf.py's post_worker_init).

Everything pkgdl opens lazily (after gunicorn's fork, in the process that uses it) is opened here instead, so the
first download on a new worker costs about what the next ones do (README, Performance: `make bench-scan` measures
it). Measured before this existed: on S3 the first request took ~30x a warm one (building the S3 client: botocore's
service model, credentials, the first connection), on local storage with SQLite ~4-5x (each thread's SQLite
connection, WAL and schema checks).

Nothing here changes what a request answers: every step only opens what the first request would have opened, and a
step that fails (the storage or the burn-list down while the worker starts) is logged and skipped; the request that
needs it then opens it as before, and /readyz still tells the truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from flask import Flask

from app.services import EXTENSION_KEY, Services

log = logging.getLogger("pkgdl.warmup")

# Probe names: never a real object (blobs are content-addressed, manifests end in packages.json) or login.
_PROBE_OBJECT = "pkgdl-warm-up-probe"
_PROBE_LOGIN = "pkgdl-warm-up"
_PROBE_DOWNLOAD = f"/users/{_PROBE_LOGIN}/scannedinstances/0/scans/0/packages/0/bin"
THREAD_WAIT = 10.0  # seconds to wait for the pool's threads to meet (then warm what met)
# The warm-up starts no step after this many seconds: a store that is down while workers start must not keep them
# from serving what does not need it (/healthz, Basic downloads during a burn-list outage), nor near gunicorn's
# worker timeout.
BUDGET = 5.0


def warm_up(app: Flask, pool: Executor | None = None, threads: int = 1,
            notify: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Open the app's storage, burn-list, throttle, users, KDF and token signer in this process, run one request
    through the app, and open each of the `threads` request threads' own connections in `pool` (gunicorn's
    gthread pool); returns seconds per step done.

    The steps run in a thread of their own while this one waits at most BUDGET seconds, calling `notify` (gunicorn's
    heartbeat) meanwhile: a store that hangs while the worker starts (its timeouts and retries can add up to more
    than gunicorn's worker timeout) only delays the worker by the budget; no step starts after it. Once a step of
    the storage or the burn-list fails, their other steps are skipped. An app without pkgdl's services (bench's
    bare Flask) is left alone."""
    services: Services | None = app.extensions.get(EXTENSION_KEY)
    if services is None:
        return {}
    deadline = time.monotonic() + BUDGET
    steps = _steps(app, services)
    if pool is not None and threads > 1:
        steps.append(("burn-list, per thread", lambda: _in_every_thread(pool, threads, services.burnlist.ping)))
    timings: dict[str, float] = {}
    runner = threading.Thread(target=_run, args=(steps, deadline, timings), name="pkgdl-warm-up", daemon=True)
    runner.start()
    while runner.is_alive() and time.monotonic() < deadline:
        runner.join(0.5)
        notify()
    if runner.is_alive():
        log.warning("warm-up: not done after %.0f s; the worker starts, its first requests open the rest", BUDGET)
    return dict(timings)


def _run(steps: list[tuple[str, Callable[[], Any]]], deadline: float, timings: dict[str, float]) -> None:
    failed: set[str] = set()
    for name, step in steps:
        group = name.split(" ", 1)[0].rstrip(",")
        if group in failed or time.monotonic() > deadline:
            continue
        started = time.perf_counter()
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a warm-up step must never stop a worker from starting
            log.warning("warm-up: %s not opened (%s); the first request opens it", name, type(exc).__name__)
            failed.add(group)
        timings[name] = time.perf_counter() - started


def _steps(app: Flask, services: Services) -> list[tuple[str, Callable[[], Any]]]:
    from app.tokens import PackageRef
    from app.users import UserDirectory, _dummy_hash

    def token_round_trip() -> None:
        ref = PackageRef(_PROBE_LOGIN, 0, 0, 0)
        services.tokens.verify(services.tokens.mint(ref, max_age=1), ref)

    store = services.authenticator.store
    # The users file and argon2; a directory (PKGDL_AUTH_BACKEND=ldap) is asked on a sign-in only.
    users = [("users file", lambda: store.get(_PROBE_LOGIN)),
             # argon2: the library and the hash unknown logins are checked against (one KDF run, ~25 ms)
             ("KDF", _dummy_hash)] if isinstance(store, UserDirectory) else []
    return [
        # S3: the client (botocore's service model, credentials, endpoint) and a HEAD of the bucket; local: the root
        ("storage", services.storage.ping),
        # S3: the HEAD every download makes before its first byte (another operation model), on a missing key
        ("storage HEAD", lambda: services.storage.exists(_PROBE_OBJECT)),
        # S3: the GET a manifest is read with (a missing key: 404, its operation model parsed)
        ("storage GET", lambda: _missing_is_fine(services.storage.read_bytes, _PROBE_OBJECT)),
        # S3 offload: SigV4 signing of presigned URLs (computed locally, no request)
        ("storage signer", lambda: services.storage.presigned_url(_PROBE_OBJECT, 60)),
        ("burn-list", services.burnlist.ping),
        ("login throttle", lambda: services.throttle.retry_after(_PROBE_LOGIN, "127.0.0.1")),
        *users,
        ("token signer", token_round_trip),
        ("request", lambda: _one_request(app, "/healthz")),
        # The download route without credentials: a 401 (touches no storage, store or metric) compiles the routing
        # map's patterns for the ids and renders a uforgeError, as a first download's path would.
        ("request, download route", lambda: _one_request(app, _PROBE_DOWNLOAD)),
    ]


def _missing_is_fine(read: Callable[[str], Any], path: str) -> None:
    try:
        read(path)
    except FileNotFoundError:
        pass


def _one_request(app: Flask, path: str) -> None:
    """GET `path` through the whole WSGI stack (werkzeug's routing map, request and response objects)."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path, environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
    body = app(environ, lambda status, headers, exc_info=None: None)
    try:
        for _ in body:
            pass
    finally:
        getattr(body, "close", lambda: None)()


def _in_every_thread(pool: Executor, threads: int, action: Callable[[], None]) -> None:
    """Run `action` once in each of `threads` distinct threads of `pool`: every task waits for the others, so the
    pool starts a thread per task (the SQLite burn-list keeps one connection per thread)."""
    barrier = threading.Barrier(threads)

    def task() -> None:
        try:
            barrier.wait(THREAD_WAIT)
        except threading.BrokenBarrierError:
            pass
        action()

    failures = [future.exception(THREAD_WAIT * 2) for future in [pool.submit(task) for _ in range(threads)]]
    failure = next((exc for exc in failures if exc is not None), None)
    if failure is not None:
        raise failure
