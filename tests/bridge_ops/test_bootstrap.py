"""``consul-xds-bridge bootstrap``: the generated bootstrap is valid and reaches the bridge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trustme
import yaml

from bridge.bootstrap import BootstrapOptions, bootstrap, bootstrap_yaml, parse_metadata
from tests.conftest import XdsServer
from tests.support.envoy import Envoy, envoy_binary
from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.cache import Snapshot


async def envoy_validate(config: str, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(config)
    process = await asyncio.create_subprocess_exec(
        envoy_binary(),
        "--mode",
        "validate",
        "-c",
        str(path),
        "--disable-hot-restart",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.envoy
@pytest.mark.parametrize("delta", [False, True])
async def test_bootstrap_passes_envoy_validate(tmp_path: Path, delta: bool) -> None:
    options = BootstrapOptions(
        node_id="edge-1",
        node_cluster="edge",
        xds_host="127.0.0.1",
        xds_port=18000,
        metadata=parse_metadata(["ingress_port=10001", "team=payments"]),
        delta=delta,
    )
    code, output = await envoy_validate(bootstrap_yaml(options), tmp_path)
    assert code == 0, output


@pytest.mark.envoy
async def test_bootstrap_with_mtls_and_hostname_passes_envoy_validate(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("bridge.internal")
    client_cert = ca.issue_cert("edge-1.envoy")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    del server_cert
    options = BootstrapOptions(
        node_id="edge-1",
        node_cluster="edge",
        xds_host="bridge.internal",
        tls_ca_file=str(ca_file),
        tls_cert_file=str(cert_file),
        tls_key_file=str(key_file),
        tls_server_name="bridge.internal",
    )
    generated = bootstrap(options)
    assert generated["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    code, output = await envoy_validate(bootstrap_yaml(options), tmp_path)
    assert code == 0, output


@pytest.mark.envoy
async def test_envoy_started_from_generated_bootstrap_gets_config(xds: XdsServer) -> None:
    xds.cache.set_snapshot("gen-1", Snapshot.of([eds_cluster("web"), load_assignment("web", [1])]))
    options = BootstrapOptions(
        node_id="gen-1", node_cluster="edge", xds_port=xds.port, admin_port=0
    )
    config = yaml.safe_load(bootstrap_yaml(options))
    del config["admin"]  # the test harness picks a free admin port
    async with Envoy(config) as envoy:
        assert "web" in await envoy.active_clusters()
        (stream,) = xds.registry.by_node("gen-1")
        assert stream.node_cluster == "edge"
        assert stream.user_agent.startswith("envoy/1.")


def test_metadata_pairs_must_have_a_key_and_value() -> None:
    assert parse_metadata(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_metadata(["novalue"])
