"""gunicorn settings for pkgdl: `gunicorn -c gunicorn.conf.py` needs no other argument."""

import os
import shutil
import tempfile

wsgi_app = "app:create_app()"
bind = os.environ.get("PKGDL_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("PKGDL_WORKERS", "2"))
threads = int(os.environ.get("PKGDL_THREADS", "8"))
# gthread: a long download does not block the worker's heartbeat, so `timeout` never kills a slow stream
# (sync workers are killed mid-download: gunicorn issues 1736, 3259), and keep-alive works.
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
keepalive = 5
# Only the nginx hop may set X-Forwarded-Proto and friends.
forwarded_allow_ips = os.environ.get("PKGDL_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Request line and header limits: ids are short, a token is < 200 characters.
limit_request_line = 4094
limit_request_fields = 64
limit_request_field_size = 8190

# gunicorn >= 25 opens a control socket (worker counts, reload, shutdown) at one default path per user
# ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl): several instances on one host would fight over it, and nothing here
# uses it. Signals (HUP, TTIN/TTOU, TERM) still manage the server.
control_socket_disable = True

accesslog = os.environ.get("PKGDL_ACCESS_LOG", "-")
errorlog = os.environ.get("PKGDL_ERROR_LOG", "-")
# One JSON object per request (app/access_log.py): the path WITHOUT its query string, since a downloadToken must never
# reach a log; no Referer either.
logger_class = "app.access_log.JsonAccessLogger"

# Prometheus multiprocess mode: each worker writes its metrics to files here; /metrics sums them. A fresh directory per
# server start, so counts of a previous run never leak in.
_OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pkgdl-metrics-")


def on_starting(server):
    """Check the configuration once, in the master, before any worker: a bad value is one line naming its variable
    and exit code 2 (not a traceback from every worker)."""
    import sys

    if getattr(server.app, "app_uri", wsgi_app) != wsgi_app:  # another app under this file (bench's bare Flask)
        return
    from app.config import ConfigError, check_for_serving, from_env

    try:
        check_for_serving(from_env())
    except ConfigError as error:
        print(f"pkgdl: {error}", file=sys.stderr, flush=True)
        os._exit(2)  # before gunicorn listens or forks: nothing to clean up


def child_exit(server, worker):
    """Keep a dead worker's counters but drop its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory if we created it."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


def post_worker_init(worker):
    """Warm the new worker up before it accepts (app/warmup.py): its storage client, burn-list connections (one
    per request thread for SQLite), KDF, token signer and one request through the app are opened now, so its first
    download costs about what the next ones do. The app is the one this worker built (create_app runs in each)."""
    if getattr(worker.app, "app_uri", wsgi_app) != wsgi_app:  # another app under this file (bench's bare Flask)
        return
    from app.warmup import warm_up

    timings = warm_up(worker.wsgi, getattr(worker, "tpool", None), worker.cfg.threads, notify=worker.notify)
    worker.log.debug("warm-up: %s", ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in timings.items()))
