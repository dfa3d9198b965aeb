"""Stream churn: how fast xDS clients can connect and go, and what they leave behind.

Two processes besides this one: the bridge (:mod:`benchmarks.bridge_host`, the bridge as
``serve`` builds it, alone) and the churning client (:mod:`benchmarks.churn_client`: cycles of
open an ADS stream → CDS request → response → ACK → cancel, 50 at a time, each a new node). The
Consul double (one service) runs in this process.

* cycle time: stream opened → CDS response received, in the client (median/p99), and cycles
  per second over the whole run;
* what is left: after the cycles, once the bridge has no open stream and no per-node snapshot
  (it must reach that; otherwise the run fails), the bridge process's RSS after
  ``gc.collect()`` minus the same after a warm-up of the same kind.

Run: ``.venv/bin/python -m benchmarks.churn [--quick]``; writes ``benchmarks/results/churn.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from typing import Any

from benchmarks.bridge_host import BridgeHost, bridge_host
from benchmarks.common import KIB, ImplausibleResult, Row, save_result, spread
from consul_double import ConsulDouble

NAME = "churn"
SIZES = {True: (100, 400), False: (300, 5000)}  # (warm-up, measured) cycles, by quick


async def cycles(host: BridgeHost, first: int, count: int) -> dict[str, Any]:
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.churn_client", f"127.0.0.1:{host.xds_port}",
        str(first), str(count), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(600):
        out, _ = await client.communicate()
    if client.returncode != 0:
        raise RuntimeError(f"the churn client failed with exit status {client.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


async def drained(host: BridgeHost) -> dict[str, Any]:
    """The bridge's stats (after gc.collect()) once every stream and node snapshot is gone."""
    for _ in range(300):
        stats = await host.request("stats")
        if stats["streams"] == 0 and stats["snapshot_keys"] == 0:
            return await host.request("stats", gc=True)
        await asyncio.sleep(0.1)
    raise ImplausibleResult(
        f"the bridge kept {stats['streams']} streams and {stats['snapshot_keys']} node "
        "snapshots 30 s after every client left"
    )


async def measure(quick: bool) -> dict[str, Any]:
    warmup, count = SIZES[quick]
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080)
        async with bridge_host(consul.url, consul_wait="60s") as host:
            await host.request("ready")
            await cycles(host, 0, warmup)
            before = await drained(host)
            run = await cycles(host, warmup, count)
            after = await drained(host)
    growth = after["rss"] - before["rss"]
    return {
        "cores": os.cpu_count(),
        "warmup_cycles": warmup,
        "cycles": count,
        "cycle_ms": spread(run["cycle_ms"]),
        "cycles_per_s": round(count / run["seconds"], 1),
        "rss_after_warmup_kib": before["rss"] // KIB,
        "rss_after_cycles_kib": after["rss"] // KIB,
        "rss_growth_bytes_per_cycle": round(growth / count, 1),
        "latencies_ms": {"churn: open → CDS response": run["cycle_ms"]},
    }


def table_rows(result: dict[str, Any]) -> list[Row]:
    cycle = result["cycle_ms"]
    n = f"{result['cycles']:,} cycles, 50 at a time"
    return [
        Row(
            "churn.cycle",
            f"churn: ADS stream opened → CDS response received, in the client ({n}; bridge in "
            "its own process)",
            "(report)",
            f"median {cycle['median']:.1f} ms, p99 {cycle['p99']:.1f} ms; "
            f"{result['cycles_per_s']:,.0f} cycles/s",
            cycle["median"],
            "ms",
        ),
        Row(
            "churn.rss_growth",
            f"churn: bridge process RSS after gc.collect(), after {n} minus after the warm-up "
            "(every stream and node snapshot gone)",
            "(report)",
            f"{result['rss_after_warmup_kib'] / 1024:.1f} → "
            f"{result['rss_after_cycles_kib'] / 1024:.1f} MiB "
            f"({result['rss_growth_bytes_per_cycle']:+.0f} B per cycle)",
            result["rss_growth_bytes_per_cycle"],
            "B",
            low=-math.inf,
        ),
    ]


if __name__ == "__main__":
    output = asyncio.run(measure("--quick" in sys.argv))
    save_result(NAME, output)
    print(json.dumps({k: v for k, v in output.items() if k != "latencies_ms"}, indent=2))
