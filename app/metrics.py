"""Prometheus metrics: downloads by outcome and auth kind, bytes, token rejections, 304s, time to first byte.

Order matters: prometheus_client decides at import whether values go to per-process files, by whether
PROMETHEUS_MULTIPROC_DIR is set then. gunicorn.conf.py sets it before gunicorn imports the app (so before this
module); a process that imports this module first counts in memory only.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide.

    Under gunicorn (gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR) every worker writes its values to files in that
    directory and /metrics adds up all workers, whichever worker answers.
    """

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))  # read once, as prometheus_client does
        self.registry = CollectorRegistry()
        self.downloads = Counter("pkgdl_downloads_total", "Package binary responses", ["outcome", "auth", "status"],
                                 registry=self.registry)
        self.bytes_sent = Counter("pkgdl_bytes_sent_total", "Package bytes sent", ["auth"], registry=self.registry)
        self.token_rejections = Counter("pkgdl_token_rejections_total", "Download tokens refused", ["reason"],
                                        registry=self.registry)
        self.link_events = Counter("pkgdl_link_events_total",
                                   "Download links claimed, resumed and spent (spent_<reason>)", ["event"],
                                   registry=self.registry)
        self.not_modified = Counter("pkgdl_not_modified_total", "304 answers", registry=self.registry)
        self.first_byte = Histogram("pkgdl_time_to_first_byte_seconds", "Request start to first body byte",
                                    registry=self.registry)

    def token_rejected(self, reason: str) -> None:
        """Count a refused token by reason (never shown to the client)."""
        self.token_rejections.labels(reason=reason).inc()

    def link_event(self, event: str) -> None:
        """Count a link claimed, resumed, or spent (spent_completed, spent_budget, spent_window, ...)."""
        self.link_events.labels(event=event).inc()

    def download_finished(self, auth: str, status: int, sent: int, result: str) -> None:
        """Count one finished download response (result: completed, aborted, sendfile, offloaded)."""
        self.downloads.labels(outcome=result, auth=auth, status=str(status)).inc()
        self.bytes_sent.labels(auth=auth).inc(sent)

    def exposition(self) -> bytes:
        """The text exposition format, summed over every worker process when running multiprocess."""
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
