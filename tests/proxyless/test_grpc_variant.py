"""Real proxyless gRPC clients (Node ``@grpc/grpc-js-xds`` and grpc-python) against the clusters the
bridge builds: the Envoy variant of some services is NACKed, the gRPC variant never is and reaches
the instances.

The resources are served straight from a snapshot cache (the ``xds`` fixture), exactly as the
bridge builds them (``build_service``, then ``grpc_shaping.shape_for_grpc``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from google.protobuf.message import Message

from bridge.bootstrap import BootstrapOptions, grpc_bootstrap
from bridge.grpc_shaping import shape_for_grpc
from bridge.resources import BuiltService
from tests.conftest import XdsServer
from tests.support.waiting import eventually
from tests.templates.support import EchoServer, echo_servers

from .clients import CLIENTS, ProxylessClient
from .services import api_listener, built, instance, nacks, serve

pytestmark = pytest.mark.usefixtures("node_installed")


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, EchoServer]]:
    async with echo_servers("a", "b") as running:
        yield running


def bootstrap(xds: XdsServer, node_id: str) -> dict[str, object]:
    return grpc_bootstrap(
        BootstrapOptions(
            node_id=node_id, node_cluster="proxyless", xds_port=xds.port, locality_region="dc1"
        )
    )


def envoy_variant(service: BuiltService) -> list[Message]:
    messages: list[Message] = [
        service.cluster,
        api_listener(service.cluster.name, service.cluster.name),
    ]
    if service.load_assignment is not None:
        messages.append(service.load_assignment)
    return messages


def grpc_variant(service: BuiltService) -> list[Message]:
    shaped = shape_for_grpc(service)
    name = service.cluster.name
    return [*shaped.clusters, *shaped.load_assignments, api_listener(name, name)]


async def answers_until(client: ProxylessClient, wanted: set[str], what: str) -> set[str]:
    """Calls until every backend in ``wanted`` answered (a timeout shows the answers seen)."""
    seen: set[str] = set()

    async def probe() -> set[str]:
        answers = await client.calls(6)
        seen.update(answers)
        return seen

    return await eventually(probe, lambda got: wanted <= got, timeout=40, what=what)


async def the_nack(client: ProxylessClient, xds: XdsServer, node_id: str) -> str:
    """The one NACK a client sends for what it was served (a call makes a channel resolve)."""
    answers = await client.calls(1)
    assert answers[0].startswith("error"), answers

    async def nacked() -> list[str]:
        return nacks(xds, node_id)

    [message] = await eventually(nacked, timeout=10, what=f"a NACK from {node_id}")
    return message


def two_instances(
    servers: dict[str, EchoServer],
    service: str,
    meta: dict[str, str],
    weights: Sequence[int] = (1, 1),
) -> BuiltService:
    return built(
        service,
        [
            instance(service, f"{service}-{name}", servers[name].port, meta=meta, weight=weight)
            for name, weight in zip(("a", "b"), weights, strict=True)
        ],
    )


NACKED_POLICIES = ["least_request", "maglev", "random"]


@pytest.mark.parametrize("client_kind", sorted(CLIENTS))
@pytest.mark.parametrize("policy", NACKED_POLICIES)
async def test_envoy_variant_of_a_policy_gRPC_lacks_is_nacked(
    xds: XdsServer, servers: dict[str, EchoServer], tmp_path: Path, client_kind: str, policy: str
) -> None:
    """Why the gRPC variant exists: what Envoy accepts, gRPC clients reject."""
    service = two_instances(servers, f"svc-{policy}", {"xds-lb-policy": policy})
    node_id = f"{client_kind}-envoy-{policy}"
    serve(xds, node_id, envoy_variant(service))
    async with CLIENTS[client_kind](
        f"xds:///svc-{policy}", bootstrap(xds, node_id), tmp_path
    ) as client:
        message = await the_nack(client, xds, node_id)
    assert message.startswith("Cluster: ")
    assert ("LB policy is not supported" in message) or (
        f"unsupported lb_policy: {policy.upper()}" in message
    )


@pytest.mark.parametrize("client_kind", sorted(CLIENTS))
@pytest.mark.parametrize(
    "policy", ["round_robin", "least_request", "random", "ring_hash", "maglev"]
)
async def test_grpc_variant_of_every_policy_is_accepted_and_reaches_every_instance(
    xds: XdsServer, servers: dict[str, EchoServer], tmp_path: Path, client_kind: str, policy: str
) -> None:
    service = two_instances(servers, f"svc-{policy}", {"xds-lb-policy": policy})
    node_id = f"{client_kind}-grpc-{policy}"
    serve(xds, node_id, grpc_variant(service))
    async with CLIENTS[client_kind](
        f"xds:///svc-{policy}", bootstrap(xds, node_id), tmp_path
    ) as client:
        # ring_hash without a route hash policy hashes each call randomly (gRFC A42): both answer.
        await answers_until(client, {"a", "b"}, f"{client_kind} calls reaching a and b")
    assert nacks(xds, node_id) == []


@pytest.mark.parametrize("client_kind", sorted(CLIENTS))
async def test_hostname_instances_are_nacked_as_strict_dns_and_served_as_logical_dns(
    xds: XdsServer, servers: dict[str, EchoServer], tmp_path: Path, client_kind: str
) -> None:
    """A service with an instance addressed by hostname: Envoy's STRICT_DNS cluster is NACKed;
    the gRPC variant (aggregate of EDS + LOGICAL_DNS, gRFC A37) is accepted: IP-addressed
    instances first, the hostname one when they fail."""
    name = "svc-dns"
    ip_instance = instance(name, "dns-a", servers["a"].port)
    hostname_instance = instance(name, "dns-b", servers["b"].port, address="localhost")
    service = built(name, [ip_instance, hostname_instance])
    envoy_node, grpc_node = f"{client_kind}-envoy-dns", f"{client_kind}-grpc-dns"
    serve(xds, envoy_node, envoy_variant(service))
    serve(xds, grpc_node, grpc_variant(service))
    async with CLIENTS[client_kind](
        f"xds:///{name}", bootstrap(xds, envoy_node), tmp_path
    ) as client:
        message = await the_nack(client, xds, envoy_node)
    assert ("STRICT_DNS" in message) or ("unknown discovery type" in message)

    grpc_dir = tmp_path / "grpc"
    grpc_dir.mkdir()
    async with CLIENTS[client_kind](
        f"xds:///{name}", bootstrap(xds, grpc_node), grpc_dir
    ) as client:
        await answers_until(client, {"a"}, f"{client_kind} calls reaching the IP instance")
        failed = instance(name, "dns-a", servers["a"].port, status="critical")
        serve(xds, grpc_node, grpc_variant(built(name, [failed, hostname_instance])))
        await eventually(
            lambda: client.calls(4),
            lambda answers: set(answers) == {"b"},
            timeout=30,
            what=f"{client_kind} failing over to the hostname instance",
        )
    assert nacks(xds, grpc_node) == []
