"""``consul-xds-bridge bootstrap --grpc``: a GRPC_XDS_BOOTSTRAP document (gRFC A27 / A53 / A65).
Real clients using it: ``test_grpc_variant.py``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bridge.bootstrap import BootstrapOptions, grpc_bootstrap


def test_node_identity_servers_and_features() -> None:
    document = grpc_bootstrap(
        BootstrapOptions(
            node_id="grpc-1",
            node_cluster="clients",
            xds_host="bridge-a",
            xds_port=18000,
            replicas=(("::1", 18001),),
            metadata={"team": "payments"},
            locality_region="dc1",
            locality_zone="z1",
            ignore_resource_deletion=True,
        )
    )
    assert document["node"] == {
        "id": "grpc-1",
        "cluster": "clients",
        "metadata": {"team": "payments"},
        "locality": {"region": "dc1", "zone": "z1"},
    }
    servers = document["xds_servers"]
    assert [s["server_uri"] for s in servers] == ["bridge-a:18000", "[::1]:18001"]
    for server in servers:
        assert server["channel_creds"] == [{"type": "insecure"}]
        assert server["server_features"] == ["xds_v3", "ignore_resource_deletion"]


def test_tls_options_become_a65_tls_channel_credentials() -> None:
    options = BootstrapOptions(
        node_id="n",
        node_cluster="c",
        tls_ca_file="/ca.pem",
        tls_cert_file="/client.pem",
        tls_key_file="/client.key",
    )
    [server] = grpc_bootstrap(options)["xds_servers"]
    assert server["channel_creds"] == [
        {
            "type": "tls",
            "config": {
                "ca_certificate_file": "/ca.pem",
                "certificate_file": "/client.pem",
                "private_key_file": "/client.key",
            },
        }
    ]
    assert server["server_features"] == ["xds_v3"]


def test_the_node_always_has_a_locality() -> None:
    """grpc-js-xds rejects a bootstrap node without one (and its calls just never complete)."""
    document = grpc_bootstrap(BootstrapOptions(node_id="n", node_cluster="c"))
    assert document["node"] == {"id": "n", "cluster": "c", "locality": {}}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (BootstrapOptions(node_id="", node_cluster="c"), "--node-id"),
        (BootstrapOptions(node_id="n", node_cluster="c", tls_cert_file="/c.pem"), "--tls-key"),
        (
            BootstrapOptions(
                node_id="n", node_cluster="c", tls_ca_file="/ca.pem", tls_server_name="bridge"
            ),
            "--tls-server-name",
        ),
    ],
)
def test_what_cannot_be_expressed_is_an_error(options: BootstrapOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grpc_bootstrap(options)


def test_cli_prints_the_json() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "bootstrap",
            "--grpc",
            "--node-id",
            "grpc-1",
            "--node-cluster",
            "clients",
            "--xds-address",
            "127.0.0.1:18000",
            "--locality-region",
            "dc1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["xds_servers"][0]["server_uri"] == "127.0.0.1:18000"
    assert document["node"]["locality"] == {"region": "dc1"}
