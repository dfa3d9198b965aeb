"""What every benchmark shares: summary rows with plausibility bounds, statistics, /proc readers.

A benchmark module exposes ``NAME``, ``async measure(quick) -> dict`` (the JSON result) and
``table_rows(result) -> list[Row]``; a peer comparison also sets ``PEER = True`` (left out only
with ``--skip-peers``). Each :class:`Row` carries its headline figure and the range in which that
figure is plausible: the runner fails the run when a figure falls outside it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
KIB = 1024
MIB = 1024 * KIB


class ImplausibleResult(RuntimeError):
    """A measurement came out impossible or implausible: the run must fail, not report it."""


@dataclass(frozen=True)
class Row:
    """One line of the summary table.

    ``what`` says what is measured: where the clock starts and stops and which process is
    measured. ``value`` is the row's headline figure in ``unit``; it must be finite and lie in
    ``(low, high]`` (None: a row with no single figure, not checked).
    """

    key: str
    what: str
    target: str
    measured: str
    value: float | None = None
    unit: str = ""
    low: float = 0.0
    high: float = math.inf

    def problem(self) -> str | None:
        """Why the headline figure is implausible, or None when it is fine."""
        if self.value is None:
            return None
        if not math.isfinite(self.value):
            return f"{self.key}: {self.value} {self.unit} is not a finite number"
        if not self.low < self.value <= self.high:
            return (
                f"{self.key}: {self.value:g} {self.unit} is outside the plausible range "
                f"({self.low:g}, {self.high:g}] ({self.what})"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ statistics
def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float], digits: int = 2) -> dict[str, float]:
    """Median, p90, p99 and max of a non-empty list."""
    if not values:
        raise ImplausibleResult("no samples: nothing was measured")
    return {
        "median": round(statistics.median(values), digits),
        "p90": round(percentile(values, 0.9), digits),
        "p99": round(percentile(values, 0.99), digits),
        "max": round(max(values), digits),
        "count": len(values),
    }


def check_range(what: str, value: float, low: float, high: float, unit: str = "") -> float:
    """``value`` when it lies in ``[low, high]``; :class:`ImplausibleResult` otherwise."""
    if not math.isfinite(value) or not low <= value <= high:
        raise ImplausibleResult(
            f"{what} = {value:g} {unit} is implausible (expected {low:g}..{high:g} {unit})"
        )
    return value


async def until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.01
) -> None:
    """Poll ``predicate`` every ``interval`` seconds until it is true (TimeoutError after)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------ processes (/proc)
def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, all its threads (10 ms clock ticks)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its living descendants (e.g. gunicorn)."""
    total = 0.0
    for pid in process_tree(root):
        try:
            total += process_cpu_seconds(pid)
        except OSError:
            continue  # ended meanwhile
    return total


def memory_bytes(pid: int | str = "self") -> dict[str, int]:
    """``rss`` (resident now) and ``peak`` (high-water mark) of one process, in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found["rss" if name == "VmRSS" else "peak"] = int(rest.split()[0]) * KIB
    return found


# ------------------------------------------------------------------ results
def mib(value: float) -> float:
    return round(value / MIB, 1)


def save_result(name: str, result: Any, directory: Path = RESULTS) -> Path:
    """Write ``<directory>/<name>.json`` (what a benchmark run on its own produces)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
