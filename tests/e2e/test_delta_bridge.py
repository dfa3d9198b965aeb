"""Incremental xDS through the whole bridge: Consul double → bridge (templates) → delta Envoy."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.templating import BUNDLED_DIR
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends, get
from tests.support.bridge_env import answers, envoy_bootstrap, start_bridge
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.recorder import Recorder
from tests.support.waiting import eventually, until
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE

pytestmark = pytest.mark.envoy

NODE = "delta-edge"


@dataclass
class DeltaStack:
    consul: ConsulDouble
    bridge: Bridge
    envoy: Envoy
    ingress: int
    backends: dict[str, Backend]
    templates: Path
    xds_port: int

    async def follows(self, expected: set[str], host: str = "web", what: str = "") -> None:
        await eventually(
            lambda: answers(self.ingress, host),
            lambda seen: set(seen) == expected,
            timeout=10,
            what=what or f"{host} answered by exactly {sorted(expected)}",
        )

    def register(self, instance: str, service: str = "web") -> None:
        self.consul.register(
            service,
            id=instance,
            address="127.0.0.1",
            port=self.backends[instance].port,
            check_status="passing",
        )


async def ready(bridge: Bridge) -> bool:
    return bridge.readiness()[0]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DeltaStack]:
    templates = tmp_path / "templates"
    shutil.copytree(BUNDLED_DIR, templates)
    xds_port, ingress = free_port(), free_port()
    async with (
        backends("web-1", "web-2", "api-1") as started,
        ConsulDouble(datacenter="dc1") as consul,
    ):
        by_name = {b.name: b for b in started}
        for name in ("web-1", "web-2"):
            consul.register(
                "web", id=name, address="127.0.0.1", port=by_name[name].port, check_status="passing"
            )
        async with start_bridge(consul, templates, xds_port) as bridge:
            await eventually(lambda: ready(bridge), what="bridge ready")
            async with Envoy(envoy_bootstrap(NODE, xds_port, ingress, delta=True)) as envoy:
                stack = DeltaStack(consul, bridge, envoy, ingress, by_name, templates, xds_port)
                await stack.follows({"web-1", "web-2"})
                yield stack


async def test_instances_and_services_follow_consul(stack: DeltaStack) -> None:
    (stream,) = stack.bridge.registry.by_node(NODE)
    assert stream.method == "Delta ADS"
    stack.consul.deregister("web-2")
    await stack.follows({"web-1"}, what="web-2 deregistered")
    stack.register("web-2")
    await stack.follows({"web-1", "web-2"}, what="web-2 back")

    stack.register("api-1", service="api")
    await stack.follows({"api-1"}, host="api", what="a new service")
    stack.consul.deregister("api-1")  # its last instance: the service leaves the catalog
    await eventually(stack.envoy.active_clusters, lambda c: "api" not in c, what="api removed")
    assert (await get(stack.ingress, host="api"))[0] == 404
    assert await stack.envoy.warming_clusters() == {}
    assert await stack.envoy.stat("cluster_manager.cds.update_rejected") == 0


async def test_template_edits_apply_and_a_rejected_one_is_nacked_once(stack: DeltaStack) -> None:
    recorder = Recorder()
    stack.bridge.registry.add_observer(recorder)
    routes = stack.templates / "default" / "routes.yaml.j2"
    routes.write_text(routes.read_text().replace("no such service", "nothing here"))
    await eventually(
        lambda: get(stack.ingress, host="nope"),
        lambda reply: reply[0] == 404 and "nothing here" in reply[1],
        what="the edited route template applied",
    )

    listeners = stack.templates / "default" / "listeners.yaml.j2"
    good = listeners.read_text()
    # Parses as a Listener, but breaks Envoy's rules (an empty stat_prefix): the validation gate
    # refuses it before Envoy sees it, and the node keeps its last good listener.
    listeners.write_text(good.replace("stat_prefix: ingress_http", 'stat_prefix: ""'))
    await until(lambda: NODE in stack.bridge.publisher.refused_renders, what="the edit refused")
    assert "stat_prefix: must be at least 1 character" in (
        stack.bridge.publisher.refused_renders[NODE].message
    )
    # Passes every rule the gate knows, but Envoy rejects the address: one NACK, the listener is
    # isolated for this node, and nothing else is held back.
    bound = (
        "address: {{ node.metadata.ingress_address | "
        'default(vars.ingress_address | default("0.0.0.0")) | tojson }}'
    )
    assert bound in good
    listeners.write_text(good.replace(bound, 'address: "not-an-ip"'))
    await recorder.wait_for(
        lambda events: any(e.kind == "nacked" for e in events), what="Envoy's NACK"
    )
    (nack,) = recorder.of("nacked")
    assert nack.type_url == LISTENER
    listener_sends = len(recorder.of("sent", LISTENER))
    stack.consul.deregister("web-2")  # a later change goes out; the rejected one is not re-sent
    await stack.follows({"web-1"})
    assert len(recorder.of("sent", LISTENER)) == listener_sends
    assert len(recorder.of("nacked")) == 1
    (stream,) = stack.bridge.registry.by_node(NODE)
    assert stream.state(LISTENER).refused == ["ingress_http"]

    listeners.write_text(good)
    await recorder.wait_for(
        lambda events: any(e.kind == "acked" and e.type_url == LISTENER for e in events),
        what="the fixed listener accepted",
    )
    await stack.follows({"web-1"})


async def test_sotw_and_delta_envoys_on_one_bridge_see_the_same_versions(
    stack: DeltaStack,
) -> None:
    ingress = free_port()
    async with Envoy(envoy_bootstrap("sotw-edge", stack.xds_port, ingress, delta=False)):
        await eventually(
            lambda: answers(ingress, "web"), lambda seen: set(seen) == {"web-1", "web-2"}
        )
        stack.consul.deregister("web-1")
        await stack.follows({"web-2"})

        def versions(node_id: str) -> dict[str, str | None]:
            (stream,) = stack.bridge.registry.by_node(node_id)
            return {t: stream.state(t).version_acked for t in (CLUSTER, ENDPOINT)}

        await until(
            lambda: versions("sotw-edge") == versions(NODE),
            what="both envoys at the same cluster and endpoint versions",
        )
        (delta_stream,) = stack.bridge.registry.by_node(NODE)
        (sotw_stream,) = stack.bridge.registry.by_node("sotw-edge")
        assert delta_stream.method == "Delta ADS"
        assert sotw_stream.method == "ADS"
        assert versions(NODE)[ENDPOINT] is not None


async def test_reconnect_after_a_bridge_restart_resends_nothing(stack: DeltaStack) -> None:
    await stack.bridge.stop()
    restarted = start_bridge(stack.consul, stack.templates, stack.xds_port)
    recorder = Recorder()
    restarted.registry.add_observer(recorder)
    async with restarted:
        await until(lambda: bool(restarted.registry.by_node(NODE)), what="envoy reconnected")
        await eventually(lambda: ready(restarted), what="restarted bridge ready")
        (stream,) = restarted.registry.by_node(NODE)
        # Envoy said what it holds (initial_resource_versions); the bridge has the same content.
        await stack.follows({"web-1", "web-2"})
        assert [e for e in recorder.of("sent") if e.resources] == [], recorder.events
        stack.consul.deregister("web-2")
        await stack.follows({"web-1"})
        sent = [(e.type_url, e.resources) for e in recorder.of("sent")]
        assert sent == [(ENDPOINT, 1)]
        assert stream.state(ROUTE).last_nack is None
