"""Selection rules, the template context and what a set reads (pure functions)."""

from __future__ import annotations

import pytest

from bridge.resources import BuildSettings
from bridge.templating.context import (
    NODE_FIELDS,
    ServiceContexts,
    agreed_meta,
    node_context,
    service_context,
)
from bridge.templating.reads import node_fields_read, volatile_fields_read
from bridge.templating.rules import Pattern, parse_rules, select_set

from .support import catalog_of, envoy_node, grpc_node, instance, updates

RULES = parse_rules(
    [
        {"match": {"node_id": "re:canary-\\d+"}, "template_set": "canary"},
        {"match": {"node_cluster": "edge-*", "metadata.tier": "front*"}, "template_set": "edge"},
        {"match": {"metadata.role": "sidecar"}, "template_set": "sidecar"},
        {"match": {"node_cluster": "edge-*"}, "template_set": "edge-plain"},
    ]
)


@pytest.mark.parametrize(
    ("node_id", "cluster", "metadata", "expected"),
    [
        ("canary-12", "edge-west", {"tier": "front"}, "canary"),  # first match wins
        ("canary-x", "other", {}, "default"),  # a regex must match the whole id
        ("e1", "edge-west", {"tier": "frontend"}, "edge"),  # all conditions hold
        ("e2", "edge-west", {"tier": "back"}, "edge-plain"),
        ("e3", "edge-west", {}, "edge-plain"),  # a missing key matches no pattern
        ("s1", "mesh", {"role": "sidecar"}, "sidecar"),
        ("x", "Edge-west", {}, "default"),  # globs are case-sensitive
    ],
)
def test_rules_select_the_first_matching_set(
    node_id: str, cluster: str, metadata: dict[str, str], expected: str
) -> None:
    node = node_context(envoy_node(node_id, cluster, metadata))
    assert select_set(RULES, node, "default") == expected


def test_missing_metadata_key_does_not_match_a_star_glob() -> None:
    rules = parse_rules([{"match": {"metadata.zone": "*"}, "template_set": "zoned"}])
    assert select_set(rules, node_context(envoy_node()), "default") == "default"
    zoned = node_context(envoy_node(metadata={"zone": ""}))
    assert select_set(rules, zoned, "default") == "zoned"


def test_numeric_metadata_matches_its_decimal_text() -> None:
    rules = parse_rules([{"match": {"metadata.shard": "1?"}, "template_set": "teens"}])
    assert select_set(rules, node_context(envoy_node(metadata={"shard": 12})), "d") == "teens"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([{"match": {"node_zone": "a"}, "template_set": "x"}], "cannot match on 'node_zone'"),
        ([{"match": {"node_id": "re:("}, "template_set": "x"}], "bad regular expression"),
        ([{"match": {}, "template_set": "x"}], "rule 0: needs a non-empty match"),
        ([{"match": {"metadata.": "a"}, "template_set": "x"}], "cannot match on 'metadata.'"),
    ],
)
def test_bad_rules_are_rejected_with_the_rule_named(
    raw: list[dict[str, object]], problem: str
) -> None:
    with pytest.raises(ValueError, match="rule 0") as caught:
        parse_rules(raw)
    assert problem in str(caught.value)


def test_patterns_glob_or_regex() -> None:
    assert Pattern.parse("edge-*").matches("edge-1")
    assert not Pattern.parse("edge-*").matches("my-edge-1")
    assert Pattern.parse("re:edge-[0-9]+").matches("edge-42")
    assert not Pattern.parse("re:edge-[0-9]+").matches("edge-42b")


def test_node_context_carries_identity_metadata_locality_and_user_agent() -> None:
    node = envoy_node("n1", "edge", {"ingress_port": 10001, "tier": "front"})
    node.locality.region = "dc1"
    node.locality.zone = "a"
    node.user_agent_version = "1.40.0"
    context = node_context(node)
    assert (context.id, context.cluster) == ("n1", "edge")
    assert context.metadata == {"ingress_port": 10001, "tier": "front"}
    assert context.locality == {"region": "dc1", "zone": "a", "sub_zone": ""}
    assert (context.user_agent, context.user_agent_version) == ("envoy", "1.40.0")
    assert context.is_envoy
    assert not context.is_grpc
    assert node_context(grpc_node()).is_grpc


def test_service_context_from_a_catalog_view() -> None:
    catalog = catalog_of(
        instance("api", 1, port=9000, meta={"xds-protocol": "grpc", "team": "a"}, tags=["v2"]),
        instance("api", 2, port=9001, status="critical", meta={"xds-protocol": "grpc"}),
        instance("api", 3, port=9000, dc="dc2", meta={"team": "b"}),
    )
    view = catalog.view("api")
    assert view is not None
    svc = service_context(view, BuildSettings(cluster_prefix="consul."))
    assert svc.name == "api"
    assert svc.cluster == "consul.api"
    assert svc.protocol == "grpc"
    assert svc.is_grpc
    assert svc.tags == ("v2",)
    assert svc.meta == {"xds-protocol": "grpc", "team": "a"}  # most common; ties → smallest
    assert svc.datacenters == ("dc1", "dc2")
    assert (svc.healthy, svc.total, svc.ports) == (2, 3, (9000, 9001))


def test_agreed_meta_prefers_the_most_common_value() -> None:
    instances = [
        instance("a", 1, meta={"k": "x"}),
        instance("a", 2, meta={"k": "y"}),
        instance("a", 3, meta={"k": "y"}),
    ]
    assert agreed_meta(instances) == (("k", "y"),)


def test_datacenters_without_instances_are_left_out() -> None:
    catalog = catalog_of(instance("web", 1, dc="dc2"), datacenters=("dc1", "dc2", "dc3"))
    view = catalog.view("web")
    assert view is not None
    assert service_context(view, BuildSettings()).datacenters == ("dc2",)


def test_what_a_set_reads() -> None:
    assert node_fields_read(["{{ node.metadata.port }} {{ node['cluster'] }}"]) == (
        "cluster",
        "metadata",
    )
    assert node_fields_read(["{% set n = node %}{{ n.id }}"]) == NODE_FIELDS  # aliased: all
    assert node_fields_read(["{{ node_port }}"]) == ()
    assert node_fields_read(["# node {{ 'node' }} {{ fail('node x') }}"]) == ()  # text, strings
    assert node_fields_read(["{{ node['meta' ~ 'data'] }}"]) == NODE_FIELDS  # dynamic: all
    assert node_fields_read(['{{ "abc }}']) == NODE_FIELDS  # does not lex: all
    assert volatile_fields_read(["{{ svc.healthy }}", "{% for p in svc.ports %}"]) == (
        "healthy",
        "ports",
    )
    assert volatile_fields_read(["{{ svc.name }}"]) == ()
    assert volatile_fields_read(["total healthy ports {{ svc.name }}"]) == ()  # output text
    assert volatile_fields_read(["{{ services | map(attribute='total') | sum }}"]) == ("total",)


def test_service_tokens_ignore_volatile_fields_unless_read() -> None:
    contexts = ServiceContexts(BuildSettings())
    catalog = catalog_of(instance("web", 1), instance("web", 2))
    contexts.update(catalog.views())
    stable, counted = contexts.token(()), contexts.token(("healthy",))
    first = contexts.services
    contexts.update(catalog.views())
    assert contexts.services is first  # nothing changed: nothing rebuilt

    catalog.apply(updates(instance("web", 1), instance("web", 2, status="critical")))
    contexts.update(catalog.views())
    assert contexts.services is not first
    assert contexts.token(()) == stable
    assert contexts.token(("healthy",)) != counted
