"""End to end: Consul double → bridge → real Envoy → HTTP backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.backends import get
from tests.support.bridge_env import Stack, running_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.envoy

NODE = "edge-e2e"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack(NODE) as started:
        yield started


async def test_registered_instances_receive_traffic(stack: Stack) -> None:
    await stack.follows({"web-1", "web-2"})
    stack.register("api-1", service="api")
    await stack.follows({"api-1"}, host="api")


async def test_deregister_fail_and_maintenance_move_traffic_away_and_back(stack: Stack) -> None:
    await stack.follows({"web-1", "web-2"})
    stack.consul.deregister("web-2")
    await stack.follows({"web-1"}, what="web-2 deregistered")
    stack.register("web-2", node="node2")
    await stack.follows({"web-1", "web-2"}, what="web-2 registered again")

    stack.consul.set_check_status("service:web-2", "critical")
    await stack.follows({"web-1"}, what="web-2 critical")
    stack.consul.set_check_status("service:web-2", "passing")
    await stack.follows({"web-1", "web-2"}, what="web-2 passing again")

    stack.consul.set_service_maintenance("web-1", True, reason="deploy")
    await stack.follows({"web-2"}, what="web-1 in maintenance")
    stack.consul.set_service_maintenance("web-1", False)
    await stack.follows({"web-1", "web-2"}, what="web-1 out of maintenance")

    stack.consul.set_node_check("node2", "critical")
    await stack.follows({"web-1"}, what="node2 failing")
    stack.consul.set_node_check("node2", "passing")
    await stack.follows({"web-1", "web-2"}, what="node2 healthy again")
    assert await stack.envoy.stat("cluster_manager.cds.update_rejected") == 0


async def test_hostname_addressed_instance_works_without_nack(stack: Stack) -> None:
    stack.register("api-1", service="api", address="localhost")
    await stack.follows({"api-1"}, host="api")
    assert await stack.envoy.stat("cluster_manager.cds.update_rejected") == 0
    client = stack.bridge.registry.by_node(NODE)[0]
    assert all(state.last_nack is None for state in client.types.values())


async def test_consul_outage_fails_no_request_and_changes_resume(stack: Stack) -> None:
    await stack.follows({"web-1", "web-2"})
    await stack.consul.stop()
    failures = 0
    for _ in range(60):
        status, _body = await get(stack.ingress, host="web")
        failures += status != 200
    assert failures == 0
    await stack.consul.start()
    stack.consul.deregister("web-1")
    await stack.follows({"web-2"}, what="a change after the outage")


async def test_index_reset_does_not_stop_changes(stack: Stack) -> None:
    await stack.follows({"web-1", "web-2"})
    stack.consul.reset_index()
    stack.register("web-dc2")  # a new instance (a removal would be held after a reset)
    await stack.follows({"web-1", "web-2", "web-dc2"}, what="a change after the index reset")


async def test_failover_datacenter_is_used_when_local_instances_are_down(stack: Stack) -> None:
    stack.register("web-dc2", datacenter="dc2", node="remote1")
    await stack.follows({"web-1", "web-2"}, what="local instances preferred")
    stack.consul.set_check_status("service:web-1", "critical")
    stack.consul.set_check_status("service:web-2", "critical")
    await stack.follows({"web-dc2"}, what="failover to dc2")
    # One local instance back: Envoy's overprovisioning (1.4 x 50% healthy = 70%) keeps most
    # traffic local and spills the rest to dc2; both local instances back: all local again.
    stack.consul.set_check_status("service:web-1", "passing")
    await eventually(lambda: stack.traffic(), lambda seen: "web-1" in seen, what="web-1 back")
    stack.consul.set_check_status("service:web-2", "passing")
    await stack.follows({"web-1", "web-2"}, what="all traffic local again")
