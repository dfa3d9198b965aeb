"""``make bench-quick``: every benchmark runs end to end at small sizes (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.__main__ import MODULES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.envoy


def test_bench_quick_runs_every_benchmark_and_writes_the_summary(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "bench-quick", f"BENCH_OUT={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert "FAILED" not in summary
    assert "| what | target | measured |" in summary
    for name in MODULES:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result, name
    assert "B1 " in summary
    assert "B2 " in summary
    assert "B3 " in summary
    assert "B4 " in summary
