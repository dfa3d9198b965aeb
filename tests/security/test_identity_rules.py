"""Identity beyond the node id, as pure functions: SAN patterns, the rule they make, the start-up
check of fields that select configuration, and what a group's render may see."""

from __future__ import annotations

import os
import re

import pytest
import trustme

from bridge.config import ConfigError
from bridge.identity import IdentityRule, SanPattern, parse_patterns
from bridge.identity_policy import (
    GroupNodes,
    IdentityPolicy,
    check_identity,
    reduce_node,
    selecting_fields,
    serving_cache,
)
from consul_double import ConsulDouble
from tests.security.certs import ca_file, server_cert
from tests.security.mtls import make_node
from tests.support.cli import run_cli, serving, terminate
from xds_server import SnapshotCache, node_key_by_cluster

SPIFFE = "spiffe://mesh/{cluster}/{id}"


def auth(*uris: str, dns: tuple[str, ...] = ()) -> dict[str, list[bytes]]:
    return {
        "x509_pem_cert": [b"-----BEGIN CERTIFICATE-----..."],
        "peer_uri": [u.encode() for u in uris],
        "peer_dns": [d.encode() for d in dns],
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("spiffe://mesh/payments/pay-1", "no placeholder"),
        ("spiffe://mesh/{team}/{id}", "unknown placeholder {team}"),
        ("spiffe://mesh/{metadata.}/{id}", "unknown placeholder"),
        ("spiffe://mesh/{id}/{id}", "appears twice"),
        ("spiffe://mesh/{cluster}{id}", "something between them"),
        ("spiffe://mesh/{cluster/{id}", "braces only"),
        ("spiffe://mesh/}{id}", "braces only"),
    ],
)
def test_bad_patterns_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SanPattern.parse(text)


def test_a_placeholder_is_one_uri_segment_or_one_dns_label() -> None:
    uri = SanPattern.parse(SPIFFE)
    assert uri.uri
    assert uri.match("spiffe://mesh/payments/pay-1") == {"cluster": "payments", "id": "pay-1"}
    assert uri.match("spiffe://mesh/payments/pay-1/extra") is None
    assert uri.match("spiffe://mesh/a/b/c") is None  # never spans a '/'
    assert uri.match("spiffe://other/payments/pay-1") is None
    assert uri.match("SPIFFE://mesh/payments/pay-1") is None  # URIs compare exactly

    dns = SanPattern.parse("{id}.{metadata.team}.nodes.example")
    assert not dns.uri
    assert dns.match("Edge-1.Blue.NODES.example") == {"id": "Edge-1", "metadata.team": "Blue"}
    assert dns.match("edge-1.x.blue.nodes.example") is None  # never spans a '.'
    assert dns.match("*.blue.nodes.example") is None  # wildcards bind nothing
    assert dns.same("blue", "BLUE")
    assert not uri.same("blue", "BLUE")


def test_the_rule_binds_what_the_patterns_capture() -> None:
    rule = IdentityRule(parse_patterns([SPIFFE]))
    assert rule.bound_fields == {"id", "cluster"}
    payments = auth("spiffe://mesh/payments/pay-1")
    assert rule.authorize(make_node("pay-1", "payments"), payments) is None

    # any valid certificate, claiming another group: refused, saying what it binds
    edge = auth("spiffe://mesh/edge/edge-1", dns=("edge-1",))
    denial = rule.authorize(make_node("edge-1", "payments", ingress_port="10999"), edge)
    assert denial is not None
    assert "cluster 'payments' (the certificate says 'edge')" in denial
    assert "URI:spiffe://mesh/edge/edge-1 matches 'spiffe://mesh/{cluster}/{id}'" in denial
    # the id is bound as well, through the pattern
    assert rule.authorize(make_node("pay-2", "payments"), payments) is not None
    # a certificate none of whose SANs match
    other = rule.authorize(make_node("pay-1", "payments"), auth(dns=("pay-1",)))
    assert other is not None
    assert "none of the certificate's SANs (DNS:pay-1)" in other
    assert "no certificate" in (rule.authorize(make_node("pay-1", "payments"), {}) or "")


def test_metadata_binding_and_a_pattern_without_the_id() -> None:
    rule = IdentityRule(parse_patterns(["spiffe://mesh/team/{metadata.team}"]))
    assert rule.bound_fields == {"id", "metadata.team"}
    cert = auth("spiffe://mesh/team/blue", dns=("edge-1",))
    assert rule.authorize(make_node("edge-1", "any", team="blue"), cert) is None
    wrong = rule.authorize(make_node("edge-1", "any", team="red"), cert)
    assert wrong is not None
    assert "metadata.team 'red'" in wrong
    missing = rule.authorize(make_node("edge-1", "any"), cert)
    assert missing is not None
    assert "metadata.team None" in missing
    # the pattern does not capture the id, so the id must still be a SAN
    not_a_san = rule.authorize(make_node("edge-2", "any", team="blue"), cert)
    assert not_a_san is not None
    assert "id 'edge-2' (not a SAN" in not_a_san


def test_a_field_is_bound_only_when_every_pattern_binds_it() -> None:
    rule = IdentityRule(parse_patterns([SPIFFE, "{id}.nodes.example"]))
    assert rule.bound_fields == {"id"}  # a certificate matching the second may claim any cluster
    assert IdentityRule().bound_fields == {"id"}


def test_without_patterns_the_rule_is_the_node_id_san_rule() -> None:
    rule = IdentityRule()
    assert rule.authorize(make_node("edge-1", "payments"), auth(dns=("edge-1",))) is None
    assert rule.authorize(make_node("edge-2", "payments"), auth(dns=("edge-1",))) is not None


def test_selecting_fields_come_from_the_node_key_and_the_template_rules() -> None:
    assert selecting_fields("id", ["node_id"]) == {}
    assert selecting_fields("cluster", []) == {"cluster": "xds.node_key"}
    assert selecting_fields("metadata:team", ["node_cluster", "metadata.tier"]) == {
        "metadata.team": "xds.node_key",
        "cluster": "templates.rules",
        "metadata.tier": "templates.rules",
    }


def policy(
    patterns: tuple[str, ...] = (),
    *,
    mtls: bool = True,
    san_rule: bool = True,
    unbound: tuple[str, ...] = (),
) -> IdentityPolicy:
    rule = IdentityRule(parse_patterns(patterns))
    return IdentityPolicy(mtls, san_rule, rule, frozenset(unbound))


def test_start_up_refuses_grouping_by_an_unbound_field_under_mtls() -> None:
    by_cluster = {"cluster": "xds.node_key"}
    hint = re.escape("spiffe://<trust-domain>/{cluster}/{id}")
    with pytest.raises(ConfigError, match=hint) as caught:
        check_identity(policy(), by_cluster)
    assert caught.value.key == "xds.node_key"
    assert "xds.unbound_fields: [cluster]" in str(caught.value)
    # bound by the certificate: fine, nothing to warn about
    assert check_identity(policy((SPIFFE,)), by_cluster) == []
    # template rules on an unbound metadata key
    with pytest.raises(ConfigError) as caught:
        check_identity(policy((SPIFFE,)), {"metadata.tier": "templates.rules"})
    assert caught.value.key == "templates.rules"
    # mTLS without the SAN rule binds nothing, so grouping must be a deliberate choice too
    with pytest.raises(ConfigError, match=r"turn on xds\.require_node_san"):
        check_identity(policy(san_rule=False), by_cluster)
    # plaintext or server-only TLS: there is no client identity to bind to
    assert check_identity(policy(mtls=False, san_rule=False), by_cluster) == []


def test_a_deliberate_choice_starts_with_a_loud_warning() -> None:
    warnings = check_identity(policy(unbound=("cluster",)), {"cluster": "xds.node_key"})
    assert len(warnings) == 1
    assert "accepted by xds.unbound_fields" in warnings[0]
    assert "any client with a certificate" in warnings[0]
    no_san_rule = check_identity(policy(san_rule=False), {})
    assert "xds.require_node_san is off" in no_san_rule[0]


@pytest.mark.parametrize(
    ("the_policy", "key"),
    [
        (policy(unbound=("id",)), "xds.unbound_fields"),
        (policy(unbound=("locality",)), "xds.unbound_fields"),
        (policy((SPIFFE,), mtls=False, san_rule=False), "xds.identity_sans"),
    ],
)
def test_bad_identity_settings_name_the_key(the_policy: IdentityPolicy, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_identity(the_policy, {})
    assert caught.value.key == key


def test_a_group_is_rendered_from_bound_fields_only() -> None:
    node = make_node("pay-2", "payments", ingress_port="10999", team="blue")
    node.locality.zone = "z1"
    reduced = reduce_node(node, frozenset({"id", "cluster", "metadata.team"}))
    assert (reduced.id, reduced.cluster, reduced.user_agent_name) == ("pay-2", "payments", "envoy")
    assert dict(reduced.metadata) == {"team": "blue"}
    assert not reduced.HasField("locality")
    assert reduce_node(node, frozenset({"id"})).cluster == ""
    assert dict(node.metadata) == {"ingress_port": "10999", "team": "blue"}  # not changed

    cache = SnapshotCache(node_key_by_cluster)
    front = GroupNodes(cache, frozenset({"id", "cluster"}))
    assert front.watch(node, lambda changed: None) == "payments"
    assert dict(cache.watched()["payments"].metadata) == {}
    assert front.node_key(node) == "payments"


def test_only_shared_keys_under_mtls_get_the_group_front() -> None:
    cache = SnapshotCache()
    assert serving_cache(cache, "id", policy()) is cache
    assert serving_cache(cache, "cluster", policy(mtls=False, san_rule=False)) is cache
    front = serving_cache(cache, "cluster", policy((SPIFFE,)))
    assert isinstance(front, GroupNodes)
    assert front.kept == {"id", "cluster"}


@pytest.fixture(scope="module")
def mtls_flags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    directory = tmp_path_factory.mktemp("identity-cli")
    ca = trustme.CA()
    server = server_cert(ca, directory)
    return [
        "--xds-tls-cert", str(server.cert_file), "--xds-tls-key", str(server.key_file),
        "--xds-tls-client-ca", str(ca_file(ca, directory)), "--xds-require-node-san",
    ]  # fmt: skip


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "XDS"))}


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--node-key", "cluster"], "xds.node_key"),
        (
            ["--node-key", "cluster", "--xds-identity-sans", "spiffe://m/{team}/{id}"],
            "xds.identity_sans",
        ),
        (["--node-key", "metadata:team", "--xds-identity-sans", SPIFFE], "xds.node_key"),
        (["--xds-unbound-fields", "id"], "xds.unbound_fields"),
    ],
)
def test_serve_refuses_unbound_grouping_with_exit_2(
    mtls_flags: list[str], args: list[str], key: str
) -> None:
    argv = ["serve", "--admin-listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"]
    done = run_cli(*argv, *mtls_flags, *args, env=clean_env())
    assert done.returncode == 2, done.stderr
    assert f"config error: {key}:" in done.stderr


async def test_serve_starts_with_a_loud_warning_when_unbound_on_purpose(
    mtls_flags: list[str],
) -> None:
    async with ConsulDouble() as consul:
        env = clean_env() | {"CONSUL_HTTP_ADDR": consul.url}
        args = ["--node-key", "cluster", "--xds-unbound-fields", "cluster"]
        async with serving(*mtls_flags, *args, env=env) as process:
            stderr = await terminate(process, 20)
    assert process.returncode == 0, stderr
    assert (
        "WARNING bridge.app: security: xds.node_key selects configuration by node cluster" in stderr
    )
