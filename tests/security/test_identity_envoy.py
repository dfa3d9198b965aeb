"""One node must not rewrite another group's configuration (real Envoys over mTLS).

Nodes are grouped by cluster (``xds.node_key: cluster``); certificates carry SPIFFE-style URI SANs
``spiffe://mesh/<cluster>/<id>`` and ``xds.identity_sans`` binds both fields to them. The bundled
template set puts the ingress listener on node metadata ``ingress_port`` (default: the
``ingress_port`` template variable).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from bridge.app import Bridge
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.security.certs import Pem, ca_file, client_cert, server_cert
from tests.security.mtls import (
    ads_stream,
    credentials,
    envoy_listener_ports,
    first_listeners,
    listener_ports,
    make_node,
    mtls_bootstrap,
)
from tests.support.bridge_env import bridge_config
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until
from xds_server.resource import LISTENER

SPIFFE = "spiffe://mesh/{cluster}/{id}"


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    ca_file: Path
    server: Pem
    pay_1: Pem
    pay_2: Pem
    attacker: Pem  # a perfectly valid certificate -- of another group


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("identity-pki")
    ca = trustme.CA()

    def member(cluster: str, node_id: str) -> Pem:
        uri = f"spiffe://mesh/{cluster}/{node_id}"
        return client_cert(ca, directory, node_id, uris=(uri,), dns=(node_id,))

    return Pki(
        ca_pem=ca.cert_pem.bytes(),
        ca_file=ca_file(ca, directory),
        server=server_cert(ca, directory),
        pay_1=member("payments", "pay-1"),
        pay_2=member("payments", "pay-2"),
        attacker=member("edge", "edge-1"),
    )


@contextlib.asynccontextmanager
async def grouped_bridge(
    pki: Pki, xds_port: int, group_port: int
) -> AsyncIterator[tuple[Bridge, ConsulDouble]]:
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        config = bridge_config(consul)
        config.xds_listen = f"127.0.0.1:{xds_port}"
        config.node_key = "cluster"
        config.xds_tls_cert = str(pki.server.cert_file)
        config.xds_tls_key = str(pki.server.key_file)
        config.xds_tls_client_ca = str(pki.ca_file)
        config.xds_require_node_san = True
        config.xds_identity_sans = (SPIFFE,)
        variables = {"ingress_port": group_port, "ingress_address": "127.0.0.1"}
        async with Bridge(config, TemplateSource(variables=variables)) as bridge:
            await until(lambda: bridge.readiness()[0], what="bridge ready")
            yield bridge, consul


def denied(bridge: Bridge) -> float:
    value = bridge.metrics.registry.get_sample_value(
        "consul_xds_streams_denied_total", {"reason": "identity"}
    )
    return value or 0.0


@pytest.mark.envoy
async def test_a_certificate_of_another_group_cannot_claim_payments(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xds_server")
    xds_port, group_port, attacker_port = free_port(), free_port(), free_port()
    async with grouped_bridge(pki, xds_port, group_port) as (bridge, consul):
        # the attacker comes first, as the first node of a group used to shape its listeners
        attacker_meta = {"ingress_port": str(attacker_port), "ingress_address": "127.0.0.1"}
        claims = mtls_bootstrap(
            pki.ca_file, pki.attacker, "edge-1", "payments", xds_port, attacker_meta
        )
        attacker = Envoy(claims, name="attacker")
        try:
            await attacker.start(wait_ready=False)
            await until(lambda: denied(bridge) >= 1, what="the attacker's Envoy refused")
            assert bridge.registry.by_node("edge-1") == []
            assert any(
                "cluster 'payments' (the certificate says 'edge')" in r.getMessage()
                for r in caplog.records
            )
            # what the attacker's stream is told: PERMISSION_DENIED, with the reason
            attacker_creds = credentials(pki.ca_pem, pki.attacker)
            claim = make_node("edge-1", "payments", ingress_port=str(attacker_port))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await first_listeners(xds_port, attacker_creds, claim)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

            # the real payments Envoy gets the group's own configuration
            payments = mtls_bootstrap(pki.ca_file, pki.pay_1, "pay-1", "payments", xds_port)
            async with Envoy(payments, name="pay-1") as envoy:
                ports = await eventually(
                    lambda: envoy_listener_ports(envoy), bool, what="pay-1's listener"
                )
                assert ports == {"ingress_http": group_port}
                before = await envoy.stat("listener_manager.lds.update_success")

                # the attacker keeps trying (its Envoy retries; so does a gRPC client)
                for _ in range(3):
                    with pytest.raises(grpc.aio.AioRpcError):
                        await first_listeners(xds_port, attacker_creds, claim)
                assert denied(bridge) >= 5
                # and the payments Envoy is untouched, through a catalog change too
                assert await envoy_listener_ports(envoy) == {"ingress_http": group_port}
                assert await envoy.stat("listener_manager.lds.update_success") == before
                consul.register("api", id="api-1", address="127.0.0.1", port=8081)
                await eventually(envoy.active_clusters, lambda c: "api" in c, what="api")
                assert await envoy_listener_ports(envoy) == {"ingress_http": group_port}
                assert await envoy.stat("listener_manager.lds.update_rejected") == 0
        finally:
            await attacker.stop()


async def test_one_members_metadata_does_not_shape_the_group(pki: Pki) -> None:
    """A legitimate member of payments connects first claiming ``ingress_port``: the group's
    listener is rendered without it (only bound fields reach a shared render)."""
    xds_port, group_port, claimed_port = free_port(), free_port(), free_port()
    async with grouped_bridge(pki, xds_port, group_port) as (bridge, _consul):
        pay_2 = make_node("pay-2", "payments", ingress_port=str(claimed_port))
        async with ads_stream(xds_port, credentials(pki.ca_pem, pki.pay_2), pay_2) as first:
            await first.request(LISTENER)
            assert listener_ports(await first.response()) == {"ingress_http": group_port}
            pay_1 = make_node("pay-1", "payments")
            ports = await first_listeners(xds_port, credentials(pki.ca_pem, pki.pay_1), pay_1)
            assert ports == {"ingress_http": group_port}
            # /debug/clients still shows what each client claimed
            streams = bridge.registry.by_node("pay-2")
            assert [s.node_key for s in streams] == ["payments"]
