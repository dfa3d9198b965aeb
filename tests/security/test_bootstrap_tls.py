"""``bootstrap`` is safe by default: client certificates need a CA and the bridge's name, or an
explicit ``--insecure-skip-verify``; the name is checked by a real Envoy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from bridge.app import Bridge
from bridge.bootstrap import BootstrapOptions, bootstrap
from consul_double import ConsulDouble
from tests.security.certs import Pem, ca_file, client_cert, server_cert, write
from tests.support.bridge_env import bridge_config
from tests.support.cli import run_cli
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("bootstrap-pki")
    ca = trustme.CA()
    client = client_cert(ca, directory, "edge-1", dns=("edge-1",))
    return {
        "ca": str(ca_file(ca, directory)),
        "cert": str(client.cert_file),
        "key": str(client.key_file),
    }


def cluster_tls(stdout: str) -> dict[str, Any]:
    config = yaml.safe_load(stdout)
    typed: dict[str, Any] = config["static_resources"]["clusters"][0]["transport_socket"][
        "typed_config"
    ]
    return typed


BASE = ["bootstrap", "--node-id", "edge-1", "--node-cluster", "edge"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--tls-cert", "{cert}", "--tls-key", "{key}"], "--tls-cert without --tls-ca"),
        (["--tls-ca", "{ca}"], "--tls-ca without --tls-server-name"),
        (["--tls-ca", "{ca}", "--tls-cert", "{cert}", "--tls-key", "{key}"], "--tls-server-name"),
        (["--tls-key", "{key}", "--tls-ca", "{ca}"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "{cert}", "--tls-ca", "{ca}"], "--tls-cert needs --tls-key"),
    ],
)
def test_unverifiable_tls_exits_2(files: dict[str, str], args: list[str], problem: str) -> None:
    done = run_cli(*BASE, *(a.format(**files) for a in args))
    assert done.returncode == 2, done.stdout
    assert problem in done.stderr
    assert done.stdout == ""


def test_insecure_skip_verify_says_what_it_does(files: dict[str, str]) -> None:
    done = run_cli(
        *BASE, "--insecure-skip-verify", "--tls-cert", files["cert"], "--tls-key", files["key"]
    )
    assert done.returncode == 0, done.stderr
    assert (
        "WARNING: --insecure-skip-verify: this Envoy will accept ANY server certificate"
        in done.stderr
    )
    assert "receives its client certificate" in done.stderr
    tls = cluster_tls(done.stdout)
    assert "validation_context" not in tls["common_tls_context"]
    assert tls["common_tls_context"]["tls_certificates"]

    # with a CA but no name, it says that only the name goes unchecked
    done = run_cli(*BASE, "--insecure-skip-verify", "--tls-ca", files["ca"])
    assert done.returncode == 0, done.stderr
    assert "any certificate issued by" in done.stderr
    assert cluster_tls(done.stdout)["common_tls_context"]["validation_context"] == {
        "trusted_ca": {"filename": files["ca"]}
    }


def test_verified_tls_checks_the_name_as_dns_or_ip(files: dict[str, str]) -> None:
    full = ["--tls-ca", files["ca"], "--tls-cert", files["cert"], "--tls-key", files["key"]]
    done = run_cli(*BASE, *full, "--tls-server-name", "bridge.internal")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    tls = cluster_tls(done.stdout)
    assert tls["sni"] == "bridge.internal"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "bridge.internal"}}
    ]
    tls = cluster_tls(run_cli(*BASE, *full, "--tls-server-name", "127.0.0.1").stdout)
    assert "sni" not in tls  # SNI carries host names only
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}
    ]
    with pytest.raises(ValueError, match="--tls-server-name"):
        bootstrap(BootstrapOptions("edge-1", "edge", tls_ca_file=files["ca"]))


@contextlib.asynccontextmanager
async def bridge_with(cert: Pem, client_ca: Path, xds_port: int) -> AsyncIterator[Bridge]:
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        config = bridge_config(consul)
        config.xds_listen = f"127.0.0.1:{xds_port}"
        config.xds_tls_cert, config.xds_tls_key = str(cert.cert_file), str(cert.key_file)
        config.xds_tls_client_ca = str(client_ca)
        async with Bridge(config) as bridge:
            await until(lambda: bridge.readiness()[0], what="bridge ready")
            yield bridge


def envoy_config(ca: Path, client: Pem, xds_port: int, server_name: str) -> dict[str, Any]:
    options = BootstrapOptions(
        node_id="edge-1",
        node_cluster="edge",
        xds_port=xds_port,
        tls_ca_file=str(ca),
        tls_cert_file=str(client.cert_file),
        tls_key_file=str(client.key_file),
        tls_server_name=server_name,
    )
    config = bootstrap(options)
    del config["admin"]
    return config


@pytest.mark.envoy
async def test_envoy_accepts_only_the_named_bridge(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_path = ca_file(ca, tmp_path)
    client = client_cert(ca, tmp_path, "edge-1", dns=("edge-1",))
    other = ca.issue_cert("impostor.test")  # same CA, another name
    impostor = write(
        tmp_path,
        "impostor",
        b"".join(blob.bytes() for blob in other.cert_chain_pems),
        other.private_key_pem.bytes(),
    )
    xds_port = free_port()
    envoy = Envoy(envoy_config(ca_path, client, xds_port, "localhost"), name="e1")
    async with bridge_with(impostor, ca_path, xds_port):
        try:
            await envoy.start(wait_ready=False)
            await eventually(
                lambda: envoy.stat("cluster.consul_xds_bridge.ssl.fail_verify_san"),
                lambda n: n >= 1,
                what="Envoy refusing a certificate of the same CA for another name",
            )
            assert "web" not in await envoy.active_clusters()
        finally:
            await envoy.stop()
    async with bridge_with(server_cert(ca, tmp_path), ca_path, xds_port):
        for name in ("localhost", "127.0.0.1"):  # a DNS SAN, an IP SAN
            async with Envoy(envoy_config(ca_path, client, xds_port, name), name="e2") as envoy:
                await eventually(envoy.active_clusters, lambda c: "web" in c, what=name)


def test_a_grpc_bootstrap_cannot_skip_verification() -> None:
    done = run_cli(*BASE, "--grpc", "--insecure-skip-verify")
    assert done.returncode == 2
    assert "--insecure-skip-verify has no gRPC bootstrap equivalent" in done.stderr
