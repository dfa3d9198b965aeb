"""The run's report: ``SUMMARY.md`` (one table), ``summary.json`` (the same rows, machine-readable)
and, when matplotlib is installed, ``latency.png`` (the latency distributions).

Failures are part of the report: a benchmark that raised, timed out or produced an implausible
figure gets a ``FAILED`` row in the table and an entry under ``failures`` in the JSON, and the
runner exits non-zero. Peers left out with ``--skip-peers`` are named in both.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Row


@dataclass
class Run:
    """Everything one invocation of the runner produced."""

    quick: bool
    rows: list[Row] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (benchmark, reason)
    skipped_peers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def git_revision() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=Path(__file__).parent,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(run: Run) -> str:
    when = time.strftime("%Y-%m-%d", time.gmtime())
    took = f", {run.seconds:.0f} s in all." if run.seconds else " (rebuilt from the JSON results)."
    lines = [
        f"# Benchmark summary{' (quick sizes)' if run.quick else ''}",
        "",
        f"{os.cpu_count()} cores, Python {platform.python_version()}, commit {git_revision()}, "
        f"{when}{took}",
        "",
    ]
    if run.skipped_peers:
        lines += [
            f"Peers skipped (--skip-peers): {', '.join(run.skipped_peers)} not measured.",
            "",
        ]
    if run.failures:
        lines += [f"**FAILED: {len(run.failures)} problem(s); the run exited non-zero.**", ""]
    lines += ["| what | target | measured |", "|---|---|---|"]
    lines += [f"| {_cell(r.what)} | {_cell(r.target)} | {_cell(r.measured)} |" for r in run.rows]
    lines += [f"| FAILED: {name} | — | {_cell(reason[:300])} |" for name, reason in run.failures]
    if run.failures:
        lines += ["", "## Failures", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in run.failures]
    return "\n".join(lines) + "\n"


def summary_json(run: Run) -> dict[str, Any]:
    return {
        "quick": run.quick,
        "cores": os.cpu_count(),
        "commit": git_revision(),
        "seconds": round(run.seconds, 1),
        "ok": run.ok,
        "skipped_peers": run.skipped_peers,
        "failures": [{"benchmark": name, "reason": reason} for name, reason in run.failures],
        "rows": [row.as_dict() for row in run.rows],
    }


def latency_series(results: dict[str, dict[str, Any]]) -> dict[str, list[float]]:
    """Every ``latencies_ms`` list the benchmarks reported, named ``<benchmark>: <series>``."""
    series: dict[str, list[float]] = {}
    for name, result in results.items():
        found = [result]
        found += [s for s in result.get("sizes", []) if isinstance(s, dict)]
        for item in found:
            label = f"{name} ({item['streams']:,} streams)" if "streams" in item else name
            for key, values in (item.get("latencies_ms") or {}).items():
                if isinstance(values, list) and values:
                    series[f"{label}: {key}"] = [float(v) for v in values]
    return series


def plot(series: dict[str, list[float]], path: Path) -> bool:
    """Latency CDFs on a log scale; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(10, 6))
    for label, values in sorted(series.items()):
        ordered = sorted(max(v, 0.01) for v in values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axis.step(ordered, fractions, where="post", label=f"{label} (n={len(ordered)})")
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms, log scale)")
    axis.set_ylabel("fraction of changes")
    axis.set_title(f"consul-xds-bridge latency distributions ({os.cpu_count()} cores)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(run: Run, results: dict[str, dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "SUMMARY.md").write_text(summary_markdown(run))
    (out / "summary.json").write_text(json.dumps(summary_json(run), indent=2) + "\n")
    if plot(latency_series(results), out / "latency.png"):
        print(f"plot: {out / 'latency.png'}")
    else:
        print("plot skipped: matplotlib is not installed (pip install -e '.[bench]')")
    print(f"summary: {out / 'SUMMARY.md'}")
