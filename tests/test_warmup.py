"""app/warmup.py: what a fresh gunicorn worker opens before it accepts (gunicorn.conf.py's post_worker_init)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from app import warmup
from tests.test_download_view import ALICE


def test_every_step_runs_and_changes_no_answer(app, client, scan, caplog):
    before = client.get(scan.listing_path(), headers=ALICE)
    metrics = client.get("/metrics").data
    beats = []
    with ThreadPoolExecutor(4) as pool, caplog.at_level(logging.WARNING, logger="pkgdl"):
        timings = warmup.warm_up(app, pool, 4, notify=lambda: beats.append(1))
    assert "not opened" not in caplog.text  # every step succeeded (a failed one is timed too)
    assert set(timings) == {"storage", "storage HEAD", "storage GET", "storage signer", "burn-list", "login throttle",
                            "users file", "KDF", "token signer", "request", "request, download route",
                            "burn-list, per thread"}
    assert client.get("/metrics").data == metrics  # no download, rejection or sign-in counted
    after = client.get(scan.listing_path(), headers=ALICE)
    assert before.status_code == after.status_code == 200 and beats


def test_an_app_without_pkgdl_services_is_left_alone():
    assert warmup.warm_up(Flask("bare")) == {}


def test_a_failing_store_skips_its_other_steps_and_the_rest_runs(app, storage, caplog):
    storage.fault = ConnectionError("down")
    timings = warmup.warm_up(app)
    storage.fault = None
    assert "storage" in timings and not {"storage HEAD", "storage GET", "storage signer"} & set(timings)
    assert {"burn-list", "KDF", "token signer", "request"} <= set(timings)
    assert "warm-up: storage not opened (ConnectionError)" in caplog.text


def test_a_hanging_step_delays_the_worker_by_the_budget_only(app, monkeypatch):
    monkeypatch.setattr(warmup, "BUDGET", 0.5)
    monkeypatch.setattr(app.extensions["pkgdl"].storage, "ping", lambda: time.sleep(2))
    started = time.monotonic()
    timings = warmup.warm_up(app)
    assert time.monotonic() - started < 1.5
    assert "KDF" not in timings  # no step started after the budget
