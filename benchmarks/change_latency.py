"""B1 change latency: a Consul change → HTTP traffic through one real Envoy follows it.

The bridge runs as ``python -m bridge serve`` in a process of its own (defaults); each change
deregisters or registers ``web-2`` (of ``web-1``, ``web-2``) in the Consul double (in this
process) after a random pause. The clock starts at the write and stops at the first request
through Envoy whose answer proves the change (:class:`benchmarks.traffic.Probe`, shared with the
peer comparison B4).

Run: ``.venv/bin/python -m benchmarks.change_latency [--quick]``.
Writes ``benchmarks/results/change_latency.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import aiohttp

from benchmarks.common import Row, save_result, spread
from benchmarks.traffic import Catalog, bridge_phase
from consul_double import ConsulDouble
from tests.support.backends import backends

NAME = "change_latency"


async def measure(quick: bool) -> dict[str, Any]:
    changes = 6 if quick else 60
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        backends("web-1", "web-2") as started,
        ConsulDouble() as consul,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        catalog = Catalog(consul, {b.name: b for b in started})
        latencies, phase = await bridge_phase(catalog, session, changes, idle_s=0.5)
    figures = spread(latencies)
    return {
        "cores": os.cpu_count(),
        "changes": changes,
        "median_ms": figures["median"],
        "p99_ms": figures["p99"],
        "max_ms": figures["max"],
        "probe_errors": phase["probe_errors"],
        "bridge_cpu_ms_per_change": phase["cpu_ms_per_change"],
        "latencies_ms": {"change_to_traffic": [round(v, 2) for v in latencies]},
    }


def table_rows(result: dict[str, Any]) -> list[Row]:
    what = (
        f"B1 Consul write → first HTTP answer through Envoy proving it (bridge = serve process, "
        f"1 Envoy, {result['changes']} changes)"
    )
    return [
        Row("B1.median", f"{what}, median", "<= 50 ms", f"{result['median_ms']:.1f} ms",
            result["median_ms"], "ms"),
        Row("B1.p99", f"{what}, p99", "<= 250 ms",
            f"{result['p99_ms']:.1f} ms (max {result['max_ms']:.1f})", result["p99_ms"], "ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    output = asyncio.run(measure("--quick" in sys.argv))
    save_result(NAME, output)
    print(json.dumps({k: v for k, v in output.items() if k != "latencies_ms"}, indent=2))
