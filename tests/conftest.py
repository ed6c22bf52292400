"""Shared pytest setup: fixture plugins are the tests/fixtures_*.py modules, loaded by name."""

from __future__ import annotations

import pathlib

from hypothesis import HealthCheck, settings

pytest_plugins = sorted(f"tests.{p.stem}" for p in pathlib.Path(__file__).parent.glob("fixtures_*.py"))

# Property tests check behaviour, not speed: no per-example deadline and no "too slow" health check, which a loaded
# 2-core CI machine would otherwise trip at random (speed is measured in bench/).
settings.register_profile("pkgdl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pkgdl")
