"""``bootstrap --grpc`` with TLS options: a real grpc-python client reaches a bridge whose xDS
listener requires mTLS and the node-id SAN rule, using gRFC A65 ``tls`` channel credentials."""

from __future__ import annotations

from pathlib import Path

import trustme

from bridge.app import Bridge
from bridge.bootstrap import BootstrapOptions, grpc_bootstrap
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.security.certs import ca_file, client_cert, server_cert
from tests.support.bridge_env import bridge_config
from tests.support.waiting import eventually, until
from tests.templates.support import echo_servers, grpc_client


async def test_grpc_python_reaches_an_mtls_bridge_with_the_generated_bootstrap(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    server = server_cert(ca, tmp_path)
    client = client_cert(ca, tmp_path, "grpc-tls-1", dns=("grpc-tls-1",))
    async with echo_servers("greeter-1") as servers, ConsulDouble() as consul:
        consul.register(
            "greeter",
            id="greeter-1",
            address="127.0.0.1",
            port=servers["greeter-1"].port,
            meta={"xds-protocol": "grpc"},
        )
        config = bridge_config(consul)
        config.xds_tls_cert = str(server.cert_file)
        config.xds_tls_key = str(server.key_file)
        config.xds_tls_client_ca = str(ca_file(ca, tmp_path))
        config.xds_require_node_san = True
        async with Bridge(config, node_config=TemplateSource()) as bridge:
            await until(lambda: bridge.readiness()[0], what="bridge ready")
            options = BootstrapOptions(
                node_id="grpc-tls-1",
                node_cluster="clients",
                xds_port=bridge.xds_port,
                tls_ca_file=config.xds_tls_client_ca,
                tls_cert_file=str(client.cert_file),
                tls_key_file=str(client.key_file),
            )
            async with grpc_client("xds:///greeter", grpc_bootstrap(options), tmp_path) as caller:
                await eventually(
                    lambda: caller.calls(4),
                    lambda answers: set(answers) == {"greeter-1"},
                    timeout=20,
                    what="calls over an xDS channel with A65 tls credentials",
                )
                [stream] = bridge.registry.by_node("grpc-tls-1")
                assert stream.node.user_agent_name.startswith("gRPC")
