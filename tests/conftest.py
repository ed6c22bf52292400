"""Shared pytest setup: fixture plugins are the tests/fixtures_*.py modules, loaded by name."""

from __future__ import annotations

import pathlib

pytest_plugins = sorted(f"tests.{p.stem}" for p in pathlib.Path(__file__).parent.glob("fixtures_*.py"))
