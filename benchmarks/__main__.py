"""Run the benchmarks: ``make bench`` (full sizes) or ``make bench-quick`` (small, < 2 min).

Each benchmark module exposes ``NAME``, ``async measure(quick) -> dict`` and
``table_rows(result) -> [(what, target, measured)]``. The runner writes
``<out>/<name>.json`` per benchmark, ``<out>/SUMMARY.md`` (one table, with the machine's core
count) and, when matplotlib is installed, ``<out>/latency.png`` (the latency distributions).

Usage: ``python -m benchmarks [--quick] [--only NAME,...] [--out DIR] [--from-results]``
(``--from-results``: rebuild the summary and plot from the JSON files already in ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.common import RESULTS

#: In the order of the issue's targets (B1..B4), then the supporting measurements.
MODULES = (
    "change_latency",
    "fanout",
    "catalog_scale",
    "peer_sovereign",
    "consul_push",
    "core_push",
    "delta_bytes",
    "template_render",
)


def load(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


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


def summary_markdown(rows: list[tuple[str, str, str]], quick: bool, seconds: float) -> str:
    lines = [
        f"# Benchmark summary{' (quick sizes)' if quick else ''}",
        "",
        f"{os.cpu_count()} cores, Python {platform.python_version()}, commit {git_revision()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}"
        + (f", {seconds:.0f} s in all." if seconds else " (rebuilt from the JSON results)."),
        "",
        "| what | target | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {what} | {target} | {measured} |" for what, target, measured in rows]
    return "\n".join(lines) + "\n"


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


def report(results: dict[str, dict[str, Any]], out: Path, quick: bool, seconds: float) -> None:
    rows = [row for name, result in results.items() for row in load(name).table_rows(result)]
    save(out / "SUMMARY.md", summary_markdown(rows, quick, seconds))
    if plot(latency_series(results), out / "latency.png"):
        print(f"plot: {out / 'latency.png'}")
    else:
        print("plot skipped: matplotlib is not installed (pip install -e '.[bench]')")
    print(f"summary: {out / 'SUMMARY.md'}")


def save(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def run(names: list[str], quick: bool, out: Path) -> int:
    results: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        print(f"== {name}{' (quick)' if quick else ''}", flush=True)
        began = time.monotonic()
        try:
            module = load(name)
            result = await module.measure(quick)
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
            print(f"   failed: {exc!r}", flush=True)
            continue
        results[name] = result
        save(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
        for row in module.table_rows(result):
            print(f"   {row[0]}: {row[2]}  (target {row[1]})", flush=True)
        print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
    report(results, out, quick, time.monotonic() - started)
    for failure in failed:
        print(f"FAILED: {failure}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 2 min in all)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", default="", help="results directory")
    parser.add_argument(
        "--from-results", action="store_true", help="only rebuild SUMMARY.md and the plot"
    )
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(MODULES)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)} (known: {', '.join(MODULES)})")
    out = Path(args.out) if args.out else (RESULTS / "quick" if args.quick else RESULTS)
    if args.from_results:
        found = {n: json.loads((out / f"{n}.json").read_text()) for n in names}
        report(found, out, args.quick, 0.0)
        return 0
    return asyncio.run(run(names, args.quick, out))


if __name__ == "__main__":
    sys.exit(main())
