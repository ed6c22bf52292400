"""Benchmark entry point: `python -m bench.run [--quick]`.

Starts everything on free loopback ports in a temporary directory (nginx, gunicorn + pkgdl over local files, a bare
Flask app, redis-server, SeaweedFS + pkgdl over s3://; scenario 1b adds two more gunicorns behind nginx rendered from
deploy/nginx.conf.template, and stops them when it is done), runs the scenarios of bench.scenarios, writes
bench/results/<date>[-quick].md and .png, and stops every process it started.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report, servers
from bench.load import LoadError
from bench.scenarios import (
    LARGE_NAME,
    ONE_MIB_NAME,
    SCENARIOS,
    SMALL_NAME,
    SMALL_SIZE,
    Plan,
    Row,
    World,
    warm_up,
)
from bench.servers import MiB

RESULTS = Path(__file__).resolve().parent / "results"
# Where a run writes unless told: git-ignored, so a user's run never overwrites the published results in RESULTS
# (publish with --out bench/results).
LOCAL_RESULTS = RESULTS / "local"
S3_PREFIX = "bench"


def seed_files(directory: Path, plan: Plan) -> list[Path]:
    """The packages every service serves: the large file(s), a 1 MiB file and a small one."""
    directory.mkdir()
    sizes = {LARGE_NAME.format(mib=size // MiB): size for size in plan.large_sizes}
    sizes |= {ONE_MIB_NAME: MiB, SMALL_NAME: SMALL_SIZE}
    return [servers.write_random_file(directory / name, size, name) for name, size in sizes.items()]


def start_world(home: Path, plan: Plan, notes: list[str]) -> World:
    """Start the servers; Redis and SeaweedFS are optional (their scenarios are then left out, with a note)."""
    files = seed_files(home / "files", plan)
    keys = f"bench-old-{secrets.token_hex(16)},bench-new-{secrets.token_hex(16)}"
    local_root = home / "local" / "packages"
    local = servers.start_pkgdl("local", home, files, keys, local_root.as_uri())
    world = World(home, keys, servers.start_nginx(home, local_root), local, servers.start_bare_flask(home))
    try:
        world.redis = servers.start_redis(home)
        small = [path for path in files if path.name == SMALL_NAME]
        world.redis_service = servers.start_pkgdl("local-redis", home, small, keys, (home / "local-redis-packages")
                                                  .as_uri(), burnlist_url=f"redis://127.0.0.1:{world.redis.port}/0")
    except (OSError, RuntimeError) as exc:
        notes.append(f"redis-server or pkgdl with the Redis burn-list did not start, Redis rows left out: {exc}")
    try:
        world.weed = servers.start_seaweedfs(home)
        world.s3_prefix = S3_PREFIX
        world.s3 = servers.start_pkgdl("s3", home, files, keys, f"s3://{world.weed.bucket}/{S3_PREFIX}",
                                       world.weed.options)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the S3 scenarios out, with the reason
        notes.append(f"SeaweedFS or pkgdl over S3 did not start: {str(exc)[:300]}")
    return world


def context(plan: Plan, started: float, load_before: str) -> list[str]:
    """The lines above the table: when, where, how."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    nginx = subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True, text=True).stderr.strip()
    import gunicorn

    mode = "quick" if plan.quick else "full"
    return [
        f"Command: `python -m bench.run{' --quick' if plan.quick else ''}` ({mode}); "
        f"{time.monotonic() - started:.0f} s including setup.",
        f"Machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}; load average before {load_before}, "
        f"after {' '.join(Path('/proc/loadavg').read_text().split()[:3])}. Shared and noisy: compare ratios, not "
        "absolute numbers.",
        f"Software: Python {platform.python_version()}, gunicorn {gunicorn.__version__} (repository "
        f"gunicorn.conf.py: 2 gthread workers x 8 threads), {nginx} (sendfile, one worker).",
        f"Method: {plan.runs} runs per scenario; pkgdl and its reference are measured back to back and the order flips "
        f"every run; ratio = median of the per-run ratios. Single streams: one curl, large sizes "
        f"{', '.join(f'{s // MiB} MiB' for s in plan.large_sizes)}. Rates: wrk -t2 -c32 -d{plan.wrk_seconds:g}s "
        "(responses >= 400 void a run). Load generators share the 2 cores with the servers.",
        "Targets: bench/scenarios.py TARGETS (the goals of the performance issue). Access logs are on "
        "(files) for gunicorn, off for the static nginx; 1b's front nginx is deploy/nginx.conf.template as rendered "
        "for production (worker_processes auto, its access log on: the runs are checked against it).",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs, short durations, 64 MiB (< 2 minutes)")
    parser.add_argument("--out", type=Path, default=LOCAL_RESULTS,
                        help="directory for the .md and .png (default bench/results/local/, git-ignored; "
                             "--out bench/results publishes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) for inspection")
    parser.add_argument("--only", metavar="PREFIX", action="append",
                        help="run only the scenarios whose name starts with PREFIX (repeatable), e.g. --only 4; "
                             "the report then goes to bench/results/partial/ unless --out says otherwise")
    args = parser.parse_args(argv)
    scenarios = [(name, run) for name, run in SCENARIOS if not args.only or name.startswith(tuple(args.only))]
    if args.only and not scenarios:
        parser.error(f"no scenario starts with {' or '.join(args.only)}: {', '.join(name for name, _ in SCENARIOS)}")
    if args.only and args.out in (RESULTS, LOCAL_RESULTS):
        args.out = RESULTS / "partial"  # a partial run never replaces the committed full or quick results
    if shutil.which("wrk") is None:
        print("[bench] wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop what we started
    started, load_before = time.monotonic(), Path("/proc/loadavg").read_text().split(" ", 3)[:3]
    home = Path(tempfile.mkdtemp(prefix="pkgdl-bench-"))
    rows: list[Row] = []
    failures: list[str] = []
    try:
        world = start_world(home, plan, failures)
        warm_up(world, plan)
        for name, scenario in scenarios:
            print(f"[bench] {name} ...", flush=True)
            try:
                rows += scenario(world, plan)
            except (LoadError, OSError, RuntimeError) as exc:
                failures.append(f"{name}: {exc}")
                print(f"[bench] {name} left out: {exc}", flush=True)
    finally:
        servers.stop_all()
        if args.keep:
            print(f"[bench] kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = datetime.date.today().isoformat() + ("-quick" if plan.quick else "")
    title = f"pkgdl benchmark {stem}"
    text = report.markdown(rows, title, context(plan, started, " ".join(load_before)), failures)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    try:
        report.chart(rows, title, args.out / f"{stem}.png")
    except ImportError:  # an optional piece: the report is written, the chart is not
        print("[bench] warning: no chart, matplotlib is not installed (pip install -e '.[bench]')")
        print(f"[bench] wrote {args.out / stem}.md")
        return 0
    print(f"[bench] wrote {args.out / stem}.md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
