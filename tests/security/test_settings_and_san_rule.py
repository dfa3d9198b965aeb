"""The SAN rule as a pure function, and the xDS TLS / admin settings: parsing, wiring, errors."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme
from envoy.config.core.v3 import base_pb2

from bridge.app import bridge_config
from bridge.config import BY_KEY, ConfigError, load
from bridge.security import (
    XdsTls,
    authorize_node_by_san,
    check_xds_tls,
    node_id_in_sans,
)
from bridge.tls_reload import ServerCertificates
from consul_double import ConsulDouble
from tests.security.certs import ca_file, client_cert, server_cert
from tests.support.cli import run_cli, serving, terminate

SPIFFE = "spiffe://mesh/node/edge-1"


def test_node_id_must_equal_a_uri_or_dns_san() -> None:
    assert node_id_in_sans(SPIFFE, [SPIFFE], [])
    assert node_id_in_sans("edge-1", [], ["edge-1"])
    assert node_id_in_sans("Edge-1.Example", [], ["edge-1.example"])  # DNS is case-insensitive
    assert not node_id_in_sans("edge-2", [SPIFFE], ["edge-1"])
    assert not node_id_in_sans("edge-1", [SPIFFE], [])  # a URI matches as a whole, not a suffix
    assert not node_id_in_sans("spiffe://mesh/node/EDGE-1", [SPIFFE], [])  # URIs: exact
    assert not node_id_in_sans("edge-1", ["spiffe://mesh/node/edge-1x"], ["edge-1x"])
    assert not node_id_in_sans("a.example", [], ["*.example"])  # wildcards authorize nothing
    assert not node_id_in_sans("*.example", [], ["*.example"])
    assert not node_id_in_sans("", [""], [""])


def test_authorize_reads_the_grpc_auth_context_and_explains_a_denial() -> None:
    auth = {
        "x509_pem_cert": [b"-----BEGIN CERTIFICATE-----..."],
        "x509_subject_alternative_name": [SPIFFE.encode(), b"edge-1", b"10.0.0.1"],
        "peer_uri": [SPIFFE.encode()],
        "peer_dns": [b"edge-1"],
        "peer_ip": [b"10.0.0.1"],
    }
    assert authorize_node_by_san(base_pb2.Node(id="edge-1"), auth) is None
    assert authorize_node_by_san(base_pb2.Node(id=SPIFFE), auth) is None
    denial = authorize_node_by_san(base_pb2.Node(id="edge-2"), auth)
    assert denial is not None
    assert "'edge-2'" in denial
    assert f"URI:{SPIFFE}" in denial
    assert "DNS:edge-1" in denial
    # IP SANs are not identities for this rule
    assert authorize_node_by_san(base_pb2.Node(id="10.0.0.1"), auth) is not None
    no_cert = authorize_node_by_san(base_pb2.Node(id="edge-1"), {})
    assert no_cert is not None
    assert "no certificate" in no_cert
    only_cn = authorize_node_by_san(base_pb2.Node(id="edge-1"), {"x509_pem_cert": [b"pem"]})
    assert only_cn is not None
    assert "none (no URI or DNS SANs)" in only_cn


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other = trustme.CA()
    server = server_cert(ca, directory)
    other_server = server_cert(other, directory, "other-server")
    garbage = directory / "garbage.pem"
    garbage.write_text("not a certificate\n")
    return {
        "ca": ca_file(ca, directory),
        "cert": server.cert_file,
        "key": server.key_file,
        "other_key": other_server.key_file,
        "client": client_cert(ca, directory, "edge-1", dns=("edge-1",)).cert_file,
        "garbage": garbage,
    }


def test_server_credentials_tls_and_mtls(pki: dict[str, Path]) -> None:
    tls = ServerCertificates(XdsTls(str(pki["cert"]), str(pki["key"])))
    assert tls.current.client_ca is None
    assert tls.credentials() is not None
    mtls = XdsTls(str(pki["cert"]), str(pki["key"]), str(pki["ca"]), require_node_san=True)
    assert ServerCertificates(mtls).current.client_ca == pki["ca"].read_bytes()


@pytest.mark.parametrize(
    ("tls", "key", "problem"),
    [
        (XdsTls(cert_file="{cert}"), "xds.tls_key", "together"),
        (XdsTls(key_file="{key}"), "xds.tls_cert", "together"),
        (XdsTls(client_ca_file="{ca}"), "xds.tls_client_ca", "needs xds.tls_cert"),
        (XdsTls("{cert}", "{key}", require_node_san=True), "xds.require_node_san", "tls_client_ca"),
        (XdsTls("/nonexistent/cert.pem", "{key}"), "xds.tls_cert", "cannot read"),
        (XdsTls("{cert}", "/nonexistent/key.pem"), "xds.tls_key", "cannot read"),
        (XdsTls("{garbage}", "{key}"), "xds.tls_cert", "not a PEM file"),
        (XdsTls("{cert}", "{other_key}"), "xds.tls_key", "is not the key of"),
        (XdsTls("{cert}", "{key}", "{garbage}"), "xds.tls_client_ca", "not a PEM file"),
        (XdsTls("{cert}", "{key}", "/nonexistent/ca.pem"), "xds.tls_client_ca", "cannot read"),
    ],
)
def test_bad_tls_settings_name_the_key(
    pki: dict[str, Path], tls: XdsTls, key: str, problem: str
) -> None:
    paths = {name: str(path) for name, path in pki.items()}
    filled = XdsTls(
        tls.cert_file.format(**paths),
        tls.key_file.format(**paths),
        tls.client_ca_file.format(**paths),
        tls.require_node_san,
    )
    with pytest.raises(ConfigError, match=problem) as caught:
        check_xds_tls(filled)
    assert caught.value.key == key
    if filled.enabled:
        with pytest.raises(ConfigError):
            ServerCertificates(filled)


def test_settings_reach_the_bridge_config_from_flags_and_environment(pki: dict[str, Path]) -> None:
    env = {
        "CONSUL_XDS_BRIDGE_XDS_TLS_CERT": str(pki["cert"]),
        "CONSUL_XDS_BRIDGE_XDS_TLS_KEY": str(pki["key"]),
        "CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN": "debug-secret-1234",
    }
    flags = {"xds.tls_client_ca": str(pki["ca"]), "xds.require_node_san": "true"}
    config = load(flags, env)
    bridge = bridge_config(config)
    assert bridge.xds_tls == XdsTls(str(pki["cert"]), str(pki["key"]), str(pki["ca"]), True)
    assert bridge.admin_debug_token == "debug-secret-1234"
    assert "debug-secret-1234" not in repr(bridge)
    assert config.describe()["admin.debug_token"]["value"] == "[redacted]"
    assert BY_KEY["admin.debug_token"].secret
    assert BY_KEY["admin.debug_token"].flag is None  # secrets stay off command lines
    with pytest.raises(ConfigError, match=r"xds\.require_node_san"):
        load({"xds.require_node_san": "maybe"})
    with pytest.raises(ConfigError, match=r"xds\.tls_key") as caught:
        bridge_config(load({"xds.tls_cert": str(pki["cert"])}))
    assert caught.value.key == "xds.tls_key"


def test_admin_listens_on_loopback_by_default() -> None:
    assert BY_KEY["admin.listen"].default == "127.0.0.1:9102"
    assert bridge_config(load({}, {})).admin_listen == "127.0.0.1:9102"
    assert bridge_config(load({}, {})).admin_debug_token == ""


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--xds-tls-cert", "{cert}"], "xds.tls_key"),
        (["--xds-tls-cert", "{cert}", "--xds-tls-key", "{other_key}"], "xds.tls_key"),
        (["--xds-require-node-san", "true"], "xds.require_node_san"),
        (
            ["--xds-tls-cert", "{cert}", "--xds-tls-key", "{key}", "--xds-tls-client-ca", "/no"],
            "xds.tls_client_ca",
        ),
    ],
)
def test_serve_exits_2_naming_the_tls_key(pki: dict[str, Path], args: list[str], key: str) -> None:
    paths = {name: str(path) for name, path in pki.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "XDS"))}
    argv = ["serve", "--admin-listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"]
    argv += [a.format(**paths) for a in args]
    done = run_cli(*argv, env=env)
    assert done.returncode == 2, done.stderr
    assert key in done.stderr


async def test_serve_talks_https_when_consul_http_ssl_is_set(pki: dict[str, Path]) -> None:
    """``CONSUL_HTTP_ADDR=host:port CONSUL_HTTP_SSL=true`` means HTTPS, as with Consul's CLI,
    through ``serve``'s real path (environment → settings table → Consul client)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki["cert"], pki["key"])
    async with ConsulDouble(ssl_context=server_ctx) as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        host_port = consul.url.removeprefix("https://")
        env = {"CONSUL_HTTP_ADDR": host_port, "CONSUL_HTTP_SSL": "true", "PATH": ""}
        env |= {"CONSUL_CACERT": str(pki["ca"])}
        async with serving(env=env) as process:
            stderr = await terminate(process, 20)
    assert process.returncode == 0, stderr
    assert f"Consul at https://{host_port}" in stderr
