"""The double's secondary indexes and caches (for 100,000-instance catalogs) stay in step."""

from __future__ import annotations

from typing import Any

import aiohttp

from consul_double import ConsulDouble
from consul_double.seed import instance_id, node_address, node_of, seed, service_name


def _scan_instances(double: ConsulDouble, name: str) -> list[tuple[str, str]]:
    dc = double.cluster.dc()
    return sorted((s.node, s.id) for s in dc.services.values() if s.name == name)


def test_indexes_follow_register_rename_and_deregister() -> None:
    double = ConsulDouble()
    seed(double, services=5, instances=3, nodes=2)
    dc = double.cluster.dc()
    assert [(s.node, s.id) for s in dc.instances(service_name(1))] == _scan_instances(
        double, service_name(1)
    )
    # Rename an instance to another service: both services' lookups follow.
    node = node_of(1, 0, instances=3, nodes=2)
    double.register("renamed", id=instance_id(1, 0), node=node, node_address=node_address(node))
    assert instance_id(1, 0) not in {s.id for s in dc.instances(service_name(1))}
    assert [s.id for s in dc.instances("renamed")] == [instance_id(1, 0)]
    svc = dc.find_service(instance_id(1, 0))
    assert [c.check_id for c in dc.checks_of(svc)] == ["serfHealth", f"service:{svc.id}"]
    assert {c.service_name for c in dc.service_checks("renamed")} == {"renamed"}
    double.deregister(instance_id(1, 0))
    assert dc.instances("renamed") == []
    assert not dc.service_exists("renamed")
    assert dc.service_checks("renamed") == []
    # A node going away takes its services and checks out of every index.
    with dc.write() as txn:
        dc.remove_node(txn, "node-0")
    assert all(s.node != "node-0" for n in range(5) for s in dc.instances(service_name(n)))
    assert dc.node_checks("node-0") == []


def test_cached_lists_move_with_every_write() -> None:
    double = ConsulDouble()
    seed(double, services=3, instances=2, nodes=2)
    dc = double.cluster.dc()
    before = dc.catalog_services()
    double.register("new", id="new-1", tags=["t"])
    after = dc.catalog_services()
    assert "new" not in before
    assert after["new"] == ["t"]
    checks = dc.checks_in_state("any")
    assert [(c.node, c.check_id) for c in checks] == sorted(dc.checks)
    double.set_check_status(f"service:{instance_id(0, 0)}", "critical")
    statuses = {c.check_id: c.status for c in dc.checks_in_state("any")}
    assert statuses[f"service:{instance_id(0, 0)}"] == "critical"
    double.reset_index()  # a restored store replaces dc, which keeps what it had
    assert {c.modify_index for c in double.cluster.dc().checks_in_state("any")} == {1}
    assert statuses == {c.check_id: c.status for c in dc.checks_in_state("any")}
    assert max(c.modify_index for c in dc.checks_in_state("any")) > 1


async def test_health_state_filter_and_cached_json() -> None:
    async with ConsulDouble() as double:
        seed(double, services=4, instances=2, nodes=2)
        async with aiohttp.ClientSession() as session:

            async def get(query: str) -> Any:
                async with session.get(f"{double.url}/v1/health/state/any{query}") as resp:
                    assert resp.status == 200
                    return await resp.json()

            everything = await get("")
            assert len(everything) == len(double.cluster.dc().checks)
            not_passing = '?filter=Status != "passing"'
            assert await get(not_passing) == []
            double.set_check_status(f"service:{instance_id(2, 1)}", "warning")
            double.set_check_status(f"service:{instance_id(0, 0)}", "critical")
            found = await get(not_passing)
            assert [(c["CheckID"], c["Status"]) for c in found] == [
                (f"service:{instance_id(0, 0)}", "critical"),
                (f"service:{instance_id(2, 1)}", "warning"),
            ]
            # The status fast path answers as the generic filter does.
            assert await get('?filter=not (Status == "passing")') == found
            assert await get('?filter=Status == "warning"') == found[1:]
            double.set_check_status(f"service:{instance_id(0, 0)}", "passing")
            double.set_check_status(f"service:{instance_id(2, 1)}", "passing")
            assert await get(not_passing) == []
            changed = await get("")
            assert changed != everything  # the check's ModifyIndex moved
            assert [c["CheckID"] for c in changed] == [c["CheckID"] for c in everything]
