"""Rendering the sets: the default set's contract, caching, errors, hot reload, check-templates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from bridge.catalog import Catalog
from bridge.config import ConfigError, load
from bridge.publisher import Publisher
from bridge.resources import BuildSettings
from bridge.templating import (
    BUNDLED_DIR,
    TemplateSource,
    parse_rules,
    template_source_from_config,
)
from xds_server.cache import SnapshotCache
from xds_server.resource import LISTENER, ROUTE, Resource

from .support import catalog_of, copy_sets, envoy_node, grpc_node, instance, updates

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def web_and_api() -> Catalog:
    return catalog_of(
        instance("web", 1, port=8080),
        instance("web", 2, port=8080),
        instance("web", 3, port=8080, dc="dc2"),
        instance("api", 4, port=9000, meta={"xds-protocol": "grpc"}),
    )


def as_dicts(resources: Sequence[Resource] | None, type_url: str) -> dict[str, Any]:
    assert resources is not None
    return {
        r.name: json_format.MessageToDict(r.message, preserving_proto_field_name=True)
        for r in resources
        if r.type_url == type_url
    }


def render(
    source: TemplateSource, node: base_pb2.Node, catalog: Catalog, key: str = ""
) -> Sequence[Resource] | None:
    return source.node_resources(key or str(node.id), node, catalog, True)


# ---------------------------------------------------------------- the default set's contract
def test_default_set_gives_envoys_ingress_http_with_one_virtual_host_per_service() -> None:
    resources = render(TemplateSource(), envoy_node(), web_and_api())
    listeners = as_dicts(resources, LISTENER)
    assert list(listeners) == ["ingress_http"]
    address = listeners["ingress_http"]["address"]["socket_address"]
    assert address == {"address": "0.0.0.0", "port_value": 10000}
    manager = listeners["ingress_http"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["@type"] == HCM + ".HttpConnectionManager"
    assert manager["rds"]["route_config_name"] == "ingress_routes"
    assert manager["rds"]["config_source"]["ads"] == {}
    assert manager["http_filters"][-1]["typed_config"]["@type"] == ROUTER

    routes = as_dicts(resources, ROUTE)
    hosts = {vh["name"]: vh for vh in routes["ingress_routes"]["virtual_hosts"]}
    assert list(hosts) == ["api", "web", "unknown_host"]
    assert hosts["web"]["domains"] == [
        "web",
        "web:*",
        "web.service.consul",
        "web.service.consul:*",
        "web.service.dc1.consul",
        "web.service.dc1.consul:*",
        "web.service.dc2.consul",
        "web.service.dc2.consul:*",
    ]
    assert hosts["web"]["routes"][0]["match"] == {"prefix": "/"}
    assert hosts["web"]["routes"][0]["route"]["cluster"] == "web"
    assert hosts["unknown_host"]["domains"] == ["*"]
    assert hosts["unknown_host"]["routes"][0]["direct_response"]["status"] == 404


def test_ingress_port_and_address_come_from_node_metadata() -> None:
    node = envoy_node(metadata={"ingress_port": 10001, "ingress_address": "127.0.0.1"})
    listeners = as_dicts(render(TemplateSource(), node, web_and_api()), LISTENER)
    address = listeners["ingress_http"]["address"]["socket_address"]
    assert address == {"address": "127.0.0.1", "port_value": 10001}


def test_a_bad_ingress_port_is_an_error_naming_the_line() -> None:
    source = TemplateSource()
    assert (
        render(source, envoy_node("bad", metadata={"ingress_port": "http"}), web_and_api()) is None
    )
    message = source.errors["bad"].message
    assert "listeners.yaml.j2, line" in message
    assert "ingress_port must be a port number, got http" in message


def test_default_set_gives_grpc_clients_api_listeners_per_service_and_port() -> None:
    resources = render(TemplateSource(), grpc_node(), web_and_api())
    listeners = as_dicts(resources, LISTENER)
    assert sorted(listeners) == ["api", "api:9000", "web", "web:8080"]
    assert as_dicts(resources, ROUTE) == {}
    manager = listeners["api:9000"]["api_listener"]["api_listener"]
    assert manager["@type"] == HCM + ".HttpConnectionManager"
    assert [f["typed_config"]["@type"] for f in manager["http_filters"]][-1] == ROUTER
    [host] = manager["route_config"]["virtual_hosts"]
    assert host["routes"][0]["route"]["cluster"] == "api"


def test_cluster_prefix_is_used_in_routes() -> None:
    source = TemplateSource(build=BuildSettings(cluster_prefix="consul."))
    catalog = catalog_of(instance("web", 1))
    routes = as_dicts(render(source, envoy_node(), catalog), ROUTE)
    assert routes["ingress_routes"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] == (
        "consul.web"
    )


def test_rules_and_vars_pick_and_parametrize_another_set() -> None:
    rules = parse_rules([{"match": {"node_cluster": "edge-*"}, "template_set": "edge"}])
    source = TemplateSource(rules=rules, variables={"edge_domain": "example.org"})
    resources = render(source, envoy_node(cluster="edge-west"), web_and_api())
    assert list(as_dicts(resources, LISTENER)) == ["edge_http"]
    hosts = as_dicts(resources, ROUTE)["edge_routes"]["virtual_hosts"]
    assert hosts[1]["domains"] == ["web.example.org", "web.example.org:*"]
    assert list(
        as_dicts(render(source, envoy_node(cluster="ingress"), web_and_api()), LISTENER)
    ) == ["ingress_http"]


def test_template_source_from_config(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text(
        f"templates:\n  dir: {BUNDLED_DIR}\n  default_set: edge\n"
        "  rules:\n  - match: {node_id: 're:plain-.*'}\n    template_set: default\n"
        "  vars: {edge_domain: corp}\n"
    )
    source = template_source_from_config(load(config_file=config_file), BuildSettings())
    catalog = web_and_api()
    edge = as_dicts(render(source, envoy_node("e1"), catalog), ROUTE)["edge_routes"]
    assert edge["virtual_hosts"][0]["domains"][0] == "api.corp"
    assert "ingress_http" in as_dicts(render(source, envoy_node("plain-1"), catalog), LISTENER)


def test_missing_sets_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^templates.default_set: template set 'nope' not"):
        TemplateSource(default_set="nope")
    rules = parse_rules([{"match": {"node_id": "*"}, "template_set": "ghost"}])
    with pytest.raises(ConfigError, match=r"^templates.rules: .*: ghost"):
        TemplateSource(rules=rules)
    with pytest.raises(ConfigError, match=r"^templates.dir: no template sets in"):
        TemplateSource(tmp_path / "missing")


# ---------------------------------------------------------------- caching
def test_a_thousand_node_keys_of_one_group_render_once() -> None:
    source = TemplateSource()
    catalog = web_and_api()
    results = {
        render(source, envoy_node(f"envoy-{i}", "ingress"), catalog, key=f"envoy-{i}")
        for i in range(1000)
    }
    assert len(results) == 1  # one shared tuple of resources
    assert source.renders_total["default"] == 1
    render(source, envoy_node("other", "ingress", {"ingress_port": 10001}), catalog)
    assert source.renders_total["default"] == 2  # what the set reads differs: a new render


def _publisher_with_nodes(source: TemplateSource, count: int) -> tuple[Publisher, SnapshotCache]:
    cache = SnapshotCache()
    publisher = Publisher(cache, node_config=source, debounce=0)
    for i in range(count):
        cache.watch(envoy_node(f"envoy-{i}", "ingress"), lambda types: None)
    return publisher, cache


async def test_through_the_publisher_only_service_set_or_read_changes_rerender() -> None:
    source = TemplateSource()
    publisher, cache = _publisher_with_nodes(source, 1000)
    publisher.submit(updates(instance("web", 1), instance("web", 2)))
    publisher.mark_ready()
    assert source.renders_total["default"] == 1
    assert len(cache.snapshot_keys()) == 1000

    # Endpoint-only changes: an instance fails, another one appears on a known port.
    publisher.submit(updates(instance("web", 1, status="critical"), instance("web", 2)))
    publisher.flush()
    publisher.submit(updates(instance("web", 1), instance("web", 2), instance("web", 5)))
    publisher.flush()
    assert source.renders_total["default"] == 1

    # What the templates read changes: a new service, a protocol change, a new port.
    publisher.submit(updates(instance("api", 3)))
    publisher.flush()
    assert source.renders_total["default"] == 2
    publisher.submit(updates(instance("api", 3, meta={"xds-protocol": "grpc"})))
    publisher.flush()
    assert source.renders_total["default"] == 3
    publisher.submit(updates(instance("api", 3, port=9999, meta={"xds-protocol": "grpc"})))
    publisher.flush()
    assert source.renders_total["default"] == 4
    snapshot = cache.get("envoy-999")
    assert snapshot is not None
    hosts = snapshot.get(ROUTE)["ingress_routes"].message.virtual_hosts  # type: ignore[attr-defined]
    assert [vh.name for vh in hosts] == ["api", "web", "unknown_host"]


def test_a_set_that_reads_health_counts_rerenders_on_endpoint_changes(tmp_path: Path) -> None:
    directory = tmp_path / "sets"
    (directory / "counts").mkdir(parents=True)
    (directory / "counts" / "routes.yaml.j2").write_text(
        "- name: counts\n  virtual_hosts:\n{% for svc in services %}"
        "  - {name: {{ svc.name }}-{{ svc.healthy }}, domains: [{{ svc.name }}]}\n{% endfor %}"
    )
    source = TemplateSource(directory, default_set="counts")
    catalog = catalog_of(instance("web", 1), instance("web", 2))
    first = as_dicts(render(source, envoy_node(), catalog), ROUTE)
    catalog.apply(updates(instance("web", 1), instance("web", 2, status="critical")))
    second = as_dicts(render(source, envoy_node(), catalog), ROUTE)
    assert first["counts"]["virtual_hosts"][0]["name"] == "web-2"
    assert second["counts"]["virtual_hosts"][0]["name"] == "web-1"
    assert source.renders_total["counts"] == 2


# ---------------------------------------------------------------- errors
def broken_source(tmp_path: Path, file: str, text: str) -> TemplateSource:
    directory = copy_sets(tmp_path / "sets", "default")
    (directory / "default" / file).write_text(text)
    return TemplateSource(directory)


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        (
            "routes.yaml.j2",
            "- name: r\n  virtual_hosts:\n{% for svc in services %}\n{% endfro %}\n",
            ["routes.yaml.j2, line 4", "endfro"],
        ),
        (
            "routes.yaml.j2",
            "- name: r\n\n  virtual_hosts: {{ vars.missing }}\n",
            ["routes.yaml.j2, line 3", "'dict object' has no attribute 'missing'"],
        ),
        (
            "_macros.j2",
            "{% macro router() %}\n{{ nope }}\n{% endmacro %}\n"
            "{% macro api_listener(name, svc) %}{% endmacro %}",
            ["_macros.j2, line 2", "'nope' is undefined"],
        ),
        (
            "routes.yaml.j2",
            "- name: r\n  virtual_hosts: [\n",
            ["routes.yaml.j2", "not valid YAML", "rendered line 3"],
        ),
        (
            "routes.yaml.j2",
            "- name: ingress_routes\n- name: r2\n  virtual_hostz: []\n",
            ["routes.yaml.j2", "routes item 1 ('r2')", "virtual_hostz", "rendered line 2"],
        ),
        (
            "routes.yaml.j2",
            "- name: ingress_routes\n  virtual_hosts: {name: x}\n",
            ["routes.yaml.j2", "virtual_hosts"],
        ),
        (
            "routes.yaml.j2",
            "- name: ingress_routes\n- name: ingress_routes\n",
            ["routes.yaml.j2", "duplicate routes 'ingress_routes'"],
        ),
        (
            "routes.yaml.j2",
            "- name: other_routes\n",
            ["listeners.yaml.j2", "RDS route configurations", "ingress_routes"],
        ),
        (
            "routes.yaml.j2",
            "- name: ingress_routes\n  virtual_hosts:\n  - name: a\n    domains: ['*']\n"
            "    routes:\n    - {match: {prefix: /}, route: {cluster: nowhere}}\n",
            ["routes.yaml.j2", "neither Consul services", "nowhere"],
        ),
        ("routes.yaml.j2", "name: ingress_routes\n", ["must render a list of routes, got dict"]),
    ],
)
def test_errors_name_the_set_file_line_and_node(
    tmp_path: Path, file: str, text: str, expected: list[str]
) -> None:
    source = broken_source(tmp_path, file, text)
    node = envoy_node("envoy-7", "ingress")
    assert render(source, node, web_and_api(), key="key-7") is None
    error = source.errors["key-7"]
    assert error.template_set == "default"
    assert "template set 'default'" in error.message
    assert "node 'envoy-7', cluster 'ingress'" in error.message
    for part in expected:
        assert part in error.message
    assert source.render_errors_total["default"] == 1


@pytest.mark.parametrize(
    "code",
    ["{{ vars.update({'a': 1}) }}", "{{ services.append(1) }}", "{{ node.__class__ }}"],
)
def test_templates_cannot_change_their_context_or_reach_python_internals(
    tmp_path: Path, code: str
) -> None:
    source = broken_source(tmp_path, "routes.yaml.j2", f"# {code}\n")
    assert render(source, envoy_node(), web_and_api()) is None
    assert "routes.yaml.j2, line 1" in source.errors["envoy-1"].message


async def test_a_broken_edit_keeps_the_last_good_resources_and_a_fix_applies(
    tmp_path: Path,
) -> None:
    directory = copy_sets(tmp_path / "sets", "default")
    source = TemplateSource(directory)
    publisher, cache = _publisher_with_nodes(source, 3)
    publisher.submit(updates(instance("web", 1)))
    publisher.mark_ready()
    good = cache.get("envoy-0")
    assert good is not None
    assert "ingress_http" in good.get(LISTENER)

    routes = directory / "default" / "routes.yaml.j2"
    text = routes.read_text()
    routes.write_text(text.replace("virtual_hosts:", "virtual_hostz:"))
    assert source.reload().changed == ("default",)
    publisher.republish()
    assert cache.get("envoy-0") == good
    assert sorted(source.errors) == ["envoy-0", "envoy-1", "envoy-2"]
    assert source.render_errors_total["default"] == 1  # one failed render for the whole group

    routes.write_text(text.replace("no such service", "gone"))
    source.reload()
    publisher.republish()
    assert source.errors == {}
    fixed = cache.get("envoy-0")
    assert fixed is not None
    assert fixed != good
    vhosts = fixed.get(ROUTE)["ingress_routes"].message.virtual_hosts  # type: ignore[attr-defined]
    assert vhosts[-1].routes[0].direct_response.body.inline_string == "gone\n"


def test_a_new_node_during_a_broken_edit_gets_nothing_and_an_error(tmp_path: Path) -> None:
    source = broken_source(tmp_path, "listeners.yaml.j2", "{{ node.nope }}")
    assert render(source, envoy_node("late"), web_and_api()) is None
    assert "listeners.yaml.j2, line 1" in source.errors["late"].message
