"""Consul fault → recovery: from Consul answering again to Envoy's traffic showing a change.

``bridge serve`` runs in a process of its own (``consul.wait`` 2 s, so a hung read times out
quickly, as in the reliability tests); one real Envoy routes ``Host: web`` to ``web``
(``web-1``, ``web-2``); the Consul double and the backends run in this process. Per fault:

1. the fault is injected into every read of the double (500 "No cluster leader", a connection
   reset, 429, a hang; or the double stopped altogether);
2. ``web-1`` is re-registered with new meta, so the bridge's held blocking query on ``web``
   returns and its next read meets the fault (the bridge's ``/debug/consul`` shows the error);
3. ``web-2`` is deregistered: a change Consul cannot tell the bridge yet;
4. the fault is cleared (or the double started again): **the clock starts**; it stops at the
   first request through Envoy proving ``web-2`` is gone (:class:`benchmarks.traffic.Probe`).

The bridge's backoff ends as soon as one ``/v1/status/leader`` probe (every 0.5 s while anything
backs off) or any read succeeds, so the figure is about that probe interval at most. An index
reset (a snapshot restore: every index drops to 1) has no outage: its clock starts at
``web-2``'s check turning critical right after the reset (a removal right after a reset is held
by the mass-removal guard, by design), with the bridge's watches held by the double; the
bridge's per-datacenter probe notices the reset within about a second and every watch reads
again from index 0.

Run: ``.venv/bin/python -m benchmarks.consul_recovery [--quick]``.
Writes ``benchmarks/results/consul_recovery.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from benchmarks.common import Row, save_result, spread
from benchmarks.traffic import Catalog, Probe, Served, serve_bridge
from consul_double import ConsulDouble
from tests.support.backends import backends
from tests.support.bridge_env import bridge_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port

NAME = "consul_recovery"
WEB_WATCH = "/v1/health/service/web"
FAULTS: dict[str, Callable[[ConsulDouble], object]] = {
    "HTTP 500 no leader": lambda c: c.faults.error(500, "No cluster leader"),
    "connection reset": lambda c: c.faults.drop(),
    "HTTP 429": lambda c: c.faults.too_many_requests(),
    "hang": lambda c: c.faults.hang(),
}
OUTAGES = ("Consul down", "index reset")
#: Before each scenario: more than ``consul.min_interval``, so that every watch's blocking query
#: is held by the double again (see the index reset note in the module docs).
SETTLE_S = 0.3
QUICK_SCENARIOS = ("HTTP 500 no leader", "connection reset", "Consul down", "index reset")


class Stack:
    """What one scenario needs: the catalog, the bridge's admin API, the probe."""

    def __init__(self, catalog: Catalog, bridge: Served, probe: Probe) -> None:
        self.catalog = catalog
        self.bridge = bridge
        self.probe = probe
        self.rounds = 0

    @property
    def consul(self) -> ConsulDouble:
        return self.catalog.consul

    async def web_watch(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.bridge.admin_port}/debug/consul"
        async with self.probe.session.get(url) as response:
            status = await response.json()
        for watch in status["watches"]:
            if watch["path"].startswith(WEB_WATCH) and watch["dc"] == "dc1":
                found: dict[str, Any] = watch
                return found
        raise RuntimeError(f"no watch of {WEB_WATCH} in /debug/consul: {status['watches']}")

    async def web_watch_until(self, check: Callable[[dict[str, Any]], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not check(await self.web_watch()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def touch(self) -> None:
        """Make the web watch return, so that its next read is made under the fault."""
        self.rounds += 1
        self.catalog.register("web-1", "node1", meta={"touch": str(self.rounds)})

    async def restore(self) -> None:
        self.consul.faults.clear()
        if not self.consul.running:
            await self.consul.start()
        self.catalog.reset()
        await self.probe.settle({"web-1", "web-2"}, 30, "back to both instances")


async def one_fault(stack: Stack, fault: str) -> float:
    """Milliseconds from the fault cleared to traffic without web-2."""
    await asyncio.sleep(SETTLE_S)
    errors = (await stack.web_watch())["error_count"]
    if fault == "Consul down":
        await stack.consul.stop()
        await stack.web_watch_until(lambda w: w["failing"] >= 3, "the bridge backing off")
    elif fault == "index reset":
        stack.consul.reset_index()
    else:
        FAULTS[fault](stack.consul)
        await stack.touch()
        await stack.web_watch_until(
            lambda w: w["error_count"] > errors, f"the web watch meeting the fault ({fault})"
        )
    if fault == "index reset":  # a removal would be held after a reset: a health change
        stack.consul.set_check_status("service:web-2", "critical")
    else:
        stack.consul.deregister("web-2")
        await asyncio.sleep(0.3)  # the change waits while Consul misbehaves
    started = time.perf_counter()
    if fault == "Consul down":
        await stack.consul.start()
    else:
        stack.consul.faults.clear()
    return await stack.probe.follows(False, started)


async def run(scenarios: tuple[str, ...], rounds: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in scenarios}
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        backends("web-1", "web-2") as started,
        ConsulDouble() as consul,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        catalog = Catalog(consul, {b.name: b for b in started})
        catalog.reset()
        async with serve_bridge(consul.url, consul_wait="2s") as bridge:
            ingress = free_port()
            bootstrap = bridge_bootstrap(bridge.xds_port, "bench-recovery", ingress, ["web"])
            async with Envoy(bootstrap, name="bench-recovery-envoy"):
                stack = Stack(catalog, bridge, Probe(ingress, session))
                await stack.probe.settle({"web-1", "web-2"}, 30, "bridge start")
                for _ in range(rounds):
                    for name in scenarios:
                        found[name].append(await one_fault(stack, name))
                        await stack.restore()
    return found


async def measure(quick: bool) -> dict[str, Any]:
    scenarios = QUICK_SCENARIOS if quick else (*FAULTS, *OUTAGES)
    found = await run(scenarios, 1 if quick else 5)
    return {
        "cores": os.cpu_count(),
        "consul_wait_s": 2,
        "recovery_ms": {name: spread(values) for name, values in found.items()},
        "latencies_ms": {
            f"recovery: {name}": [round(v, 2) for v in values] for name, values in found.items()
        },
    }


def table_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for name, figures in result["recovery_ms"].items():
        start = "web-2 failing its check" if name == "index reset" else "Consul answering again"
        rows.append(
            Row(
                f"consul_recovery.{name.replace(' ', '_')}",
                f"Consul fault '{name}': {start} → traffic through Envoy shows the change made "
                "during it (bridge = serve process)",
                "(report)",
                f"median {figures['median']:.0f} ms, max {figures['max']:.0f} ms "
                f"({figures['count']} rounds)",
                figures["median"],
                "ms",
            )
        )
    return rows


if __name__ == "__main__":
    output = asyncio.run(measure("--quick" in sys.argv))
    save_result(NAME, output)
    print(json.dumps({k: v for k, v in output.items() if k != "latencies_ms"}, indent=2))
