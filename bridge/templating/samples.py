"""Sample data a template set is checked against: a small catalog and two sample nodes.

``check-templates`` renders every set with it, ``serve`` refuses to start when the default set
cannot render with it, and ``/readyz`` is 503 while the default set (as it is on disk now)
cannot. The sample nodes carry no metadata: the default set is the one for nodes no rule
matches, so it has to cope with any node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2

from xds_server.resource import Resource

from ..catalog import Catalog, ServiceUpdate
from ..model import Check, Instance
from ..resources import BuildSettings
from .checks import precheck
from .context import ServiceContexts, node_context, template_context
from .errors import TemplateError
from .rendering import render_set
from .rules import Rule
from .sets import TemplateSet


def _instance(service: str, n: int, dc: str, port: int, **meta: str) -> Instance:
    return Instance(
        service=service,
        id=f"{service}-{n}",
        node=f"node{n}",
        datacenter=dc,
        address=f"10.0.0.{n}",
        port=port,
        meta=tuple(sorted(meta.items())),
        checks=(Check("serfHealth", "Serf", "passing", ""),),
    )


def sample_catalog() -> Catalog:
    """A small catalog: an HTTP service in two datacenters and a gRPC service."""
    catalog = Catalog(["dc1", "dc2"])
    catalog.apply(
        [
            ServiceUpdate(
                "web", "dc1", (_instance("web", 1, "dc1", 8080), _instance("web", 2, "dc1", 8080))
            ),
            ServiceUpdate("web", "dc2", (_instance("web", 3, "dc2", 8080),)),
            ServiceUpdate(
                "greeter",
                "dc1",
                (_instance("greeter", 4, "dc1", 50051, **{"xds-protocol": "grpc"}),),
            ),
        ]
    )
    return catalog


def sample_nodes() -> list[base_pb2.Node]:
    """An Envoy and a proxyless gRPC client, without metadata."""
    envoy = base_pb2.Node(id="sample-envoy", cluster="sample", user_agent_name="envoy")
    grpc_client = base_pb2.Node(id="sample-grpc", cluster="sample", user_agent_name="gRPC Python")
    return [envoy, grpc_client]


def sample_nodes_for_set(rules: Sequence[Rule], set_name: str) -> list[base_pb2.Node]:
    """Sample nodes, with the identity of the first rule choosing ``set_name`` where its
    patterns are literal enough to be turned into a value."""
    nodes = sample_nodes()
    for rule in rules:
        if rule.template_set != set_name:
            continue
        for node in nodes:
            for key, pattern in rule.conditions:
                literal = pattern.text.replace("*", "x").replace("?", "x")
                if pattern.text.startswith("re:") or not pattern.matches(literal):
                    continue
                if key == "node_id":
                    node.id = literal
                elif key == "node_cluster":
                    node.cluster = literal
                else:
                    node.metadata.fields[key[len("metadata.") :]].string_value = literal
        break
    return nodes


SampleRender = tuple[base_pb2.Node, tuple[Resource, ...] | TemplateError]


def sample_renders(
    tset: TemplateSet,
    catalog: Catalog,
    rules: Sequence[Rule] = (),
    variables: Mapping[str, Any] | None = None,
) -> list[SampleRender]:
    """``tset`` rendered for each sample node against ``catalog`` with ``variables``."""
    services = ServiceContexts(BuildSettings())
    services.update(catalog.views())
    results: list[SampleRender] = []
    for node in sample_nodes_for_set(rules, tset.name):
        context = template_context(node_context(node), services.services, dict(variables or {}))
        try:
            results.append(
                (node, render_set(tset, context, (s.cluster for s in services.services)))
            )
        except TemplateError as exc:
            results.append((node, exc))
    return results


def sample_problem(
    tset: TemplateSet, rules: Sequence[Rule] = (), variables: Mapping[str, Any] | None = None
) -> str | None:
    """The first reason ``tset`` cannot render for the sample nodes (None: it can)."""
    syntax = precheck(tset)
    if syntax:
        return syntax[0]
    for node, result in sample_renders(tset, sample_catalog(), rules, variables):
        if isinstance(result, TemplateError):
            return f"{result} (sample node {node.id!r})"
    return None
