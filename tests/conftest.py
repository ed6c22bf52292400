"""Shared pytest setup: fixture plugins are the tests/fixtures_*.py modules, loaded by name."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = sorted(f"tests.{p.stem}" for p in pathlib.Path(__file__).parent.glob("fixtures_*.py"))

# Property tests check behaviour, not speed: no per-example deadline and no "too slow" health check, which a loaded
# 2-core CI machine would otherwise trip at random (speed is measured in bench/).
settings.register_profile("pkgdl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pkgdl")

# Fixtures that start a real server or reach PyPI: a test using any of them (directly, through another fixture or a
# parameter) is an integration test, so `make test-fast` (-m "not integration") needs none of them.
REAL_COMPONENTS = {"seaweedfs", "redis_server", "slapd", "nginx_static", "make_nginx", "service", "uforge_sdk",
                   "uforge_schema"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real component as `integration`."""
    for item in items:
        if REAL_COMPONENTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
