"""Serving-core benchmark: snapshot change → real Envoy ACK, with no Consul and no publisher.

The xDS serving core (snapshot cache + discovery server) runs in this process with nothing else
to do; Envoy runs in its own. The clock starts when a new endpoint assignment is put into the
cache and stops when Envoy's ACK of that version is observed by the server. What one stream
costs in memory is measured with the whole bridge, in a process of its own (B2).

Run: ``.venv/bin/python -m benchmarks.core_push [--changes 200]``.
Writes ``benchmarks/results/core_push.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from benchmarks.common import Row, percentile, save_result
from tests.support.envoy import Envoy, ads_bootstrap
from tests.support.ports import free_port
from tests.support.recorder import Recorder
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.cache import Snapshot, SnapshotCache
from xds_server.resource import ENDPOINT
from xds_server.server import DiscoveryServer, start_server
from xds_server.tracking import ClientRegistry


async def push_latency(changes: int) -> dict[str, Any]:
    cache = SnapshotCache()
    registry = ClientRegistry()
    recorder = Recorder()
    registry.add_observer(recorder)
    server, port = await start_server(DiscoveryServer(cache, registry), "127.0.0.1:0")
    node = "bench"
    cache.set_snapshot(
        node,
        Snapshot.of(
            [eds_cluster(f"svc{i}") for i in range(50)]
            + [load_assignment(f"svc{i}", [8000 + i]) for i in range(50)]
            + [http_listener("ingress", free_port(), "routes"), route_config("routes", {})]
        ),
    )
    latencies: list[float] = []
    async with Envoy(ads_bootstrap(port, node)):
        for i in range(changes):
            started = time.perf_counter()
            cache.update_resources(node, ENDPOINT, [load_assignment(f"svc{i % 50}", [9000 + i])])
            version = cache.get(node).version(ENDPOINT)  # type: ignore[union-attr]
            await recorder.wait_acked(ENDPOINT, version)
            latencies.append((time.perf_counter() - started) * 1000)
    await server.stop(None)
    return {
        "changes": changes,
        "median_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "max_ms": round(max(latencies), 3),
    }


NAME = "core_push"


async def measure(quick: bool) -> dict[str, Any]:
    return {"cores": os.cpu_count(), "push_latency": await push_latency(20 if quick else 200)}


def table_rows(result: dict[str, Any]) -> list[Row]:
    push = result["push_latency"]
    return [
        Row(
            "core_push.median",
            f"serving core only (benchmark process): snapshot set → real Envoy's EDS ACK "
            f"({push['changes']} changes)",
            "(report)",
            f"median {push['median_ms']:.2f} ms, p99 {push['p99_ms']:.2f} ms",
            push["median_ms"],
            "ms",
        )
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    result = {"cores": os.cpu_count(), "push_latency": await push_latency(args.changes)}
    save_result(NAME, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
