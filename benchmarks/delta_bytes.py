"""Bytes on the wire per change, SotW vs delta, for a 1,000-service catalog.

A SotW and a delta ADS client each subscribe to every cluster (wildcard) and every endpoint
assignment (by name). Then, one at a time: an endpoint change of one service, and a new service
(cluster + assignment). The serialized size of every response each client receives for the
change is added up.

Run: ``.venv/bin/python -m benchmarks.delta_bytes [--services 1000]``.
Writes ``benchmarks/results/delta_bytes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from benchmarks.common import save_result
from tests.support.xds_client import DeltaClient, XdsClient
from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.cache import Snapshot, SnapshotCache
from xds_server.resource import CLUSTER, ENDPOINT
from xds_server.server import DiscoveryServer, start_server


async def run(services: int) -> dict[str, Any]:
    cache = SnapshotCache()
    server, port = await start_server(DiscoveryServer(cache), "127.0.0.1:0")
    names = [f"svc{i}" for i in range(services)]
    resources = [eds_cluster(n) for n in names] + [
        load_assignment(n, [8000 + i % 1000, 9000 + i % 1000]) for i, n in enumerate(names)
    ]
    for key in ("sotw", "delta"):
        cache.set_snapshot(key, Snapshot.of(resources))
    target = f"127.0.0.1:{port}"
    result: dict[str, Any] = {"services": services}
    async with XdsClient(target, node_id="sotw") as sotw, DeltaClient(target, "delta") as delta:
        # Initial state.
        await sotw.send(CLUSTER)
        initial_sotw = (await sotw.recv(30)).ByteSize()
        await sotw.ack(sotw.latest[CLUSTER])
        await sotw.send(ENDPOINT, names)
        initial_sotw += (await sotw.recv(30)).ByteSize()
        await sotw.ack(sotw.latest[ENDPOINT], names)
        await delta.send(CLUSTER)
        response = await delta.recv(30)
        initial_delta = response.ByteSize()
        await delta.ack(response)
        await delta.send(ENDPOINT, subscribe=names)
        response = await delta.recv(30)
        initial_delta += response.ByteSize()
        await delta.ack(response)
        result["initial_bytes"] = {"sotw": initial_sotw, "delta": initial_delta}

        async def one_change(types: list[str], sotw_names: dict[str, list[str]]) -> dict[str, int]:
            sizes = {"sotw": 0, "delta": 0}
            for type_url in types:
                got = await sotw.recv(30)
                assert got.type_url == type_url, (got.type_url, type_url)
                sizes["sotw"] += got.ByteSize()
                await sotw.ack(got, sotw_names.get(type_url, ()))
                got = await delta.recv(30)
                assert got.type_url == type_url, (got.type_url, type_url)
                sizes["delta"] += got.ByteSize()
                await delta.ack(got)
            return sizes

        # One endpoint change of one service.
        for key in ("sotw", "delta"):
            cache.update_resources(key, ENDPOINT, [load_assignment("svc7", [7777])])
        result["endpoint_change_bytes"] = await one_change([ENDPOINT], {ENDPOINT: names})

        # A new service: its cluster, then (once subscribed) its assignment.
        for key in ("sotw", "delta"):
            cache.update_resources(key, CLUSTER, [eds_cluster("new")])
            cache.update_resources(key, ENDPOINT, [load_assignment("new", [6000])])
        cds = await one_change([CLUSTER], {})
        await sotw.send(ENDPOINT, [*names, "new"], sotw.latest[ENDPOINT].version_info,
                        sotw.latest[ENDPOINT].nonce)  # fmt: skip
        await delta.send(ENDPOINT, subscribe=["new"])
        eds = await one_change([ENDPOINT], {ENDPOINT: [*names, "new"]})
        result["new_service_bytes"] = {k: cds[k] + eds[k] for k in cds}
    await server.stop(None)
    return result


NAME = "delta_bytes"


async def measure(quick: bool) -> dict[str, Any]:
    return {"cores": os.cpu_count(), **await run(100 if quick else 1000)}


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    n = f"{result['services']:,} services"
    endpoint, new = result["endpoint_change_bytes"], result["new_service_bytes"]
    return [
        (
            f"bytes per endpoint change, SotW vs delta ({n})",
            "(report)",
            f"{endpoint['sotw']:,} B vs {endpoint['delta']:,} B",
        ),
        (
            f"bytes per new service, SotW vs delta ({n})",
            "(report)",
            f"{new['sotw']:,} B vs {new['delta']:,} B",
        ),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    result = {"cores": os.cpu_count(), **await run(args.services)}
    save_result("delta_bytes", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
