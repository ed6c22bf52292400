"""A bounded run of the atheris harness (tests/fuzz_conditional.py) in a subprocess; `make fuzz` runs it longer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_conditional.py")
RUNS = 20_000


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not importable (pip install atheris, in the test extra): fuzz smoke skipped")
def test_conditional_fuzz_smoke(tmp_path):
    result = subprocess.run([sys.executable, str(HARNESS), f"-atheris_runs={RUNS}", "-seed=1", "-max_len=4096"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} " in result.stderr
