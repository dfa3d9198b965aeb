"""``consul-xds-bridge bootstrap --grpc``: a GRPC_XDS_BOOTSTRAP document (gRFC A27 / A53 / A65).
Real clients using it: ``test_grpc_variant.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.bootstrap import BootstrapOptions, grpc_bootstrap
from tests.support.cli import run_cli


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


def test_cli_asks_for_resource_deletion_to_be_ignored_only_for_grpc() -> None:
    base = ["bootstrap", "--node-id", "grpc-1", "--node-cluster", "clients"]
    result = run_cli(*base, "--grpc", "--ignore-resource-deletion")
    assert result.returncode == 0, result.stderr
    [server] = json.loads(result.stdout)["xds_servers"]
    assert server["server_features"] == ["xds_v3", "ignore_resource_deletion"]
    refused = run_cli(*base, "--ignore-resource-deletion")
    assert refused.returncode == 2
    assert "--grpc" in refused.stderr


def test_render_shows_the_grpc_variant_a_grpc_client_gets(tmp_path: Path) -> None:
    entry = {
        "Node": {"Node": "n1", "Address": "10.0.0.1"},
        "Service": {"ID": "web-1", "Service": "web", "Port": 8080, "Address": "backend.local"},
        "Checks": [],
    }
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"dc1": {"web": [entry]}}))
    result = run_cli("render", "--node-id", "app-1", "--grpc", "--catalog", str(catalog))
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    assert rendered["variant"] == "grpc"
    clusters = {c["name"]: c["resource"] for c in rendered["resources"]["cluster"]["items"]}
    assert sorted(clusters) == ["web", "web~dns~backend.local:8080"]
    assert clusters["web"]["cluster_type"]["name"] == "envoy.clusters.aggregate"
    assert clusters["web~dns~backend.local:8080"]["type"] == "LOGICAL_DNS"
