"""The benchmark runner: a failure of any kind reaches the summary and the exit status."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import __main__ as runner
from benchmarks.common import KIB, Row

ROOT = Path(__file__).resolve().parents[2]


def fake(rows: list[Row], fail: BaseException | None = None, peer: bool = False) -> Any:
    async def measure(quick: bool) -> dict[str, Any]:
        if fail is not None:
            raise fail
        return {"quick": quick}

    return SimpleNamespace(measure=measure, table_rows=lambda result: rows, PEER=peer)


GOOD = Row("good.latency", "good: write → ACK", "(report)", "5 ms", 5.0, "ms")


def run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    modules: dict[str, Any],
    skip_peers: bool = False,
) -> tuple[int, dict[str, Any], str]:
    """Run the fake benchmarks: (exit status, summary.json, SUMMARY.md)."""
    monkeypatch.setattr(runner, "load", modules.__getitem__)
    done = asyncio.run(runner.run_all(list(modules), True, skip_peers, tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    return runner.exit_status(done), summary, (tmp_path / "SUMMARY.md").read_text()


def test_a_benchmark_that_raises_is_a_failed_row_and_a_non_zero_exit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    modules = {"good": fake([GOOD]), "broken": fake([], RuntimeError("the double did not start"))}
    status, summary, table = run(monkeypatch, tmp_path, modules)
    assert status == 1
    assert summary["ok"] is False
    assert summary["failures"] == [
        {"benchmark": "broken", "reason": "RuntimeError: the double did not start"}
    ]
    assert "| FAILED: broken | — | RuntimeError: the double did not start |" in table
    assert "| good: write → ACK | (report) | 5 ms |" in table  # the others still report


def test_an_implausible_figure_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    negative = Row("mem", "memory per stream", "—", "-193 KiB", -193.0, "KiB", low=1.0)
    huge = Row("mem2", "memory per stream", "—", "20 MiB", 20 * 1024.0, "KiB", 1.0, 10 * KIB)
    nan = Row("lat", "latency", "—", "nan ms", float("nan"), "ms")
    status, summary, table = run(
        monkeypatch, tmp_path, {"a": fake([negative]), "b": fake([huge]), "c": fake([nan])}
    )
    assert status == 1
    reasons = [f["reason"] for f in summary["failures"]]
    assert len(reasons) == 3
    assert "mem: -193 KiB is outside the plausible range (1, inf]" in reasons[0]
    assert "mem2: 20480 KiB is outside the plausible range (1, 10240]" in reasons[1]
    assert "lat: nan ms is not a finite number" in reasons[2]
    assert table.count("| FAILED: ") == 3


def test_a_benchmark_that_reports_no_rows_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    status, summary, _ = run(monkeypatch, tmp_path, {"empty": fake([])})
    assert status == 1
    assert summary["failures"][0]["reason"] == "the benchmark reported no rows"


def test_a_benchmark_that_hangs_times_out_as_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def forever(quick: bool) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    monkeypatch.setitem(runner.TIMEOUT_S, True, 0.2)
    hung = SimpleNamespace(measure=forever, table_rows=lambda result: [GOOD])
    status, summary, _ = run(monkeypatch, tmp_path, {"hung": hung})
    assert status == 1
    assert summary["failures"] == [{"benchmark": "hung", "reason": "timed out"}]


def test_skipping_peers_is_explicit_and_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peer = fake([], RuntimeError("must not run"), peer=True)
    status, summary, table = run(
        monkeypatch, tmp_path, {"good": fake([GOOD]), "peer": peer}, skip_peers=True
    )
    assert status == 0
    assert summary["skipped_peers"] == ["peer"]
    assert "Peers skipped (--skip-peers): peer not measured." in table


def test_a_peer_that_cannot_be_installed_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "BENCH_SOVEREIGN_VENV": str(tmp_path / "venv"),
        "BENCH_SOVEREIGN_REQUIREMENT": str(tmp_path / "no-such-sovereign.tar.gz"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "peer_sovereign",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: peer_sovereign: RuntimeError: cannot install sovereign" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"][0]["benchmark"] == "peer_sovereign"
    assert "no-such-sovereign.tar.gz" in summary["failures"][0]["reason"]
    assert "| FAILED: peer_sovereign |" in (out / "SUMMARY.md").read_text()
