"""Run the benchmarks: ``make bench`` (full sizes) or ``make bench-quick`` (small, about a minute).

Every control plane measured runs in a process of its own (the bridge host, ``bridge serve``,
sovereign), never in this process, which only drives the load and reads the clocks. Each
benchmark writes ``<out>/<name>.json``; the run writes ``<out>/SUMMARY.md``, ``summary.json`` and,
when matplotlib is installed, ``latency.png`` (see :mod:`benchmarks.report`).

The exit status is non-zero when any benchmark failed: raised, timed out, or produced a figure
outside its plausible range (a negative memory figure, say). A peer that cannot be installed or
run is such a failure; ``--skip-peers`` leaves the peers out on purpose, and the summary says so.

Usage: ``python -m benchmarks [--quick] [--only NAME,...] [--skip-peers] [--out DIR]
[--from-results]`` (``--from-results``: rebuild the summary from the JSON files in ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import report
from benchmarks.common import RESULTS, Row

#: In the order of the issue's targets (B1..B4), then the supporting measurements.
MODULES = (
    "change_latency",
    "fanout",
    "catalog_scale",
    "peer_sovereign",
    "consul_push",
    "consul_recovery",
    "core_push",
    "delta_bytes",
    "template_render",
    "template_reload",
    "churn",
)

#: Seconds one benchmark may take before it counts as failed (quick, full).
TIMEOUT_S = {True: 300.0, False: 3600.0}


def load(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def is_peer(module: ModuleType) -> bool:
    return bool(getattr(module, "PEER", False))


def rows_of(name: str, module: ModuleType, result: dict[str, Any], run: report.Run) -> None:
    """Add the benchmark's rows to ``run``; an implausible figure is a failure."""
    rows: list[Row] = module.table_rows(result)
    if not rows:
        run.failures.append((name, "the benchmark reported no rows"))
    for row in rows:
        run.rows.append(row)
        problem = row.problem()
        if problem is not None:
            run.failures.append((name, f"implausible figure: {problem}"))


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


async def run_one(name: str, module: ModuleType, run: report.Run, out: Path) -> dict[str, Any]:
    """One benchmark; its failure is recorded in ``run`` (never raised)."""
    print(f"== {name}{' (quick)' if run.quick else ''}", flush=True)
    began = time.monotonic()
    try:
        async with asyncio.timeout(TIMEOUT_S[run.quick]):
            result: dict[str, Any] = await module.measure(run.quick)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        before = len(run.rows)
        rows_of(name, module, result, run)
    except Exception as exc:  # recorded as a FAILED row and a non-zero exit, never hidden
        traceback.print_exc()
        run.failures.append((name, failure_reason(exc)[:2000]))
        print(f"   FAILED: {failure_reason(exc)[:500]}", flush=True)
        return {}
    for row in run.rows[before:]:
        print(f"   {row.what}: {row.measured}  (target {row.target})", flush=True)
    print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
    return result


async def run_all(names: list[str], quick: bool, skip_peers: bool, out: Path) -> report.Run:
    run = report.Run(quick=quick)
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    for name in names:
        module = load(name)
        if skip_peers and is_peer(module):
            run.skipped_peers.append(name)
            print(f"== {name}: skipped (--skip-peers)", flush=True)
            continue
        result = await run_one(name, module, run, out)
        if result:
            results[name] = result
    run.seconds = time.monotonic() - started
    report.write(run, results, out)
    return run


def from_results(names: list[str], quick: bool, out: Path) -> report.Run:
    """Rebuild the summary from ``<out>/<name>.json`` (a missing file is a failure)."""
    run = report.Run(quick=quick)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        path = out / f"{name}.json"
        if not path.exists():
            run.failures.append((name, f"no result file {path}"))
            continue
        try:
            results[name] = json.loads(path.read_text())
            rows_of(name, load(name), results[name], run)
        except Exception as exc:  # a result of an older format: a FAILED row, never a crash
            run.failures.append((name, f"cannot read {path}: {failure_reason(exc)}"))
    report.write(run, results, out)
    return run


def exit_status(run: report.Run) -> int:
    for name, reason in run.failures:
        print(f"FAILED: {name}: {reason[:1000]}", flush=True)
    if run.skipped_peers:
        print(f"peers skipped (--skip-peers): {', '.join(run.skipped_peers)}", flush=True)
    return 0 if run.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", default="", help="results directory")
    parser.add_argument(
        "--skip-peers", action="store_true", help="leave out the peer comparison (B4)"
    )
    parser.add_argument(
        "--from-results", action="store_true", help="only rebuild the summary and the plot"
    )
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(MODULES)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)} (known: {', '.join(MODULES)})")
    out = Path(args.out) if args.out else (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_results:
        return exit_status(from_results(names, args.quick, out))
    return exit_status(asyncio.run(run_all(names, args.quick, args.skip_peers, out)))


if __name__ == "__main__":
    sys.exit(main())
