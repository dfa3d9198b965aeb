"""Consul write → Envoy ACK, end to end: Consul double → bridge → real Envoy.

Three processes: the bridge (:mod:`benchmarks.bridge_host`, the bridge as ``serve`` builds it,
alone), Envoy, and this one (the Consul double with dc1 + dc2, and the clock). Each change is a
write to the double (deregister, register, check critical, check passing of ``web-2``, in
turn); the clock starts at the write (this process) and stops when Envoy's ACK of the first new
EDS version after it reaches the bridge (recorded in the bridge process; CLOCK_MONOTONIC is
shared by the processes). Two runs: changes spaced by ``--spacing`` seconds (an operator's pace),
and back to back (each write right after the previous ACK), where the watch's
``consul.min_interval`` (100 ms between calls of one watch, to protect Consul) is the floor.
Also reports the bridge's own histogram (Consul response → ACK).

Run: ``.venv/bin/python -m benchmarks.consul_push [--changes 60] [--spacing 0.25]``.
Writes ``benchmarks/results/consul_push.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks.bridge_host import BridgeHost, bridge_host
from benchmarks.common import Row, save_result, spread
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port

NAME = "consul_push"
NODE = "bench-consul"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def steps(consul: ConsulDouble) -> list[Callable[[], None]]:
    def register() -> None:
        consul.register("web", id="web-2", address="127.0.0.1", port=9002, node="node2")

    return [
        lambda: consul.deregister("web-2"),
        register,
        lambda: consul.set_check_status("service:web-2", "critical"),
        lambda: consul.set_check_status("service:web-2", "passing"),
    ]


async def timed_changes(
    host: BridgeHost, changes: list[Callable[[], None]], count: int, spacing: float
) -> list[float]:
    latencies: list[float] = []
    for i in range(count):
        if spacing:
            await asyncio.sleep(spacing)
        started = time.monotonic()
        changes[i % len(changes)]()
        reply = await host.request("acks", type_url=ENDPOINT, after=started, count=1, timeout=30)
        latencies.append((reply["acks"][0][0] - started) * 1000)
    return latencies


async def run(changes: int, spacing: float) -> dict[str, Any]:
    async with ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=9001, node="node1")
        consul.register("web", id="web-2", address="127.0.0.1", port=9002, node="node2")
        async with bridge_host(consul.url, consul_wait="60s", consul_datacenters="dc2") as host:
            await host.request("ready")
            bootstrap = bridge_bootstrap(host.xds_port, NODE, free_port(), ["web"])
            async with Envoy(bootstrap, name="bench-consul-push"):
                await host.request("acks", type_url=ENDPOINT, after=0.0, count=1, timeout=30)
                spaced = await timed_changes(host, steps(consul), changes, spacing)
                back_to_back = await timed_changes(host, steps(consul), changes, 0.0)
                histogram = await host.request("histogram", type="endpoint")
    count, total = histogram["count"], histogram["sum"]
    return {
        "changes": changes,
        "spacing_s": spacing,
        "write_to_envoy_ack_ms_spaced": spread(spaced),
        "write_to_envoy_ack_ms_back_to_back": spread(back_to_back),
        "bridge_histogram_consul_response_to_ack_ms": {
            "observations": int(count),
            "mean": round(total / count * 1000, 2) if count else None,
        },
    }


async def measure(quick: bool) -> dict[str, Any]:
    return {"cores": os.cpu_count(), **await run(4 if quick else 60, 0.25)}


def table_rows(result: dict[str, Any]) -> list[Row]:
    spaced = result["write_to_envoy_ack_ms_spaced"]
    burst = result["write_to_envoy_ack_ms_back_to_back"]
    what = "Consul write → Envoy's EDS ACK at the bridge (bridge in its own process)"
    return [
        Row(
            "consul_push.spaced",
            f"{what}, {result['changes']} changes {result['spacing_s']:g} s apart",
            "(report)",
            f"median {spaced['median']:.1f} ms, p90 {spaced['p90']:.1f}, max {spaced['max']:.1f}",
            spaced["median"],
            "ms",
        ),
        Row(
            "consul_push.back_to_back",
            f"{what}, back-to-back writes",
            "(report)",
            f"median {burst['median']:.1f} ms (consul.min_interval 100 ms between calls)",
            burst["median"],
            "ms",
        ),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--spacing", type=float, default=0.25)
    args = parser.parse_args()
    result = {"cores": os.cpu_count(), **await run(args.changes, args.spacing)}
    save_result(NAME, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
