"""The validation gate: what may be served, checked before any node sees it (pure, no I/O).

Every candidate resource passes through here, and what fails is described as a
:class:`Problem` naming the resource, the reason, where the bad value comes from and the rule:

* **a service's cluster and endpoints** (built from Consul): Envoy's own protoc-gen-validate
  rules (:func:`xds_server.validation.check`), with the rule's field traced back to the Consul
  field that produced it (``connect_timeout`` → ``Service.Meta["xds-connect-timeout"]``); and
  no service may take a reserved name (:func:`reserved_name_problem`): a name the bootstrap
  gives its own clusters (a service named ``consul_xds_bridge`` would be routed to the bridge's
  xDS port), the xDS wildcard ``*`` or an ``xdstp:`` locator (Envoy cannot subscribe to its
  endpoints by that name: the cluster warms, and holds every CDS update, for 15 s);
* **a config entries chain's target clusters and endpoints** (:func:`check_chain_resource`):
  the same rules and reserved names;
* **a node key's rendered listeners, routes and extra clusters**: the same rules; a virtual
  host that claims a domain another one holds is dropped from its route configuration (see
  :func:`domain_precedence` for who keeps it); an extra cluster with a reserved name, or an
  inline route configuration with colliding domains, refuses the whole render.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import message

from xds_server.resource import CLUSTER, LISTENER, ROUTE, SHORT_NAMES, Resource, make_resource
from xds_server.text import clip
from xds_server.validation import check, check_route_domains

from .bootstrap import BootstrapOptions, bootstrap
from .resources import BuiltService

#: Reasons a resource is quarantined (the ``reason`` label of the metric).
INVALID = "invalid"  # breaks a rule Envoy enforces
RESERVED_NAME = "reserved_name"  # takes a name of the bootstrap's own clusters
DOMAIN_COLLISION = "domain_collision"  # claims a domain another virtual host holds
NACK = "nack"  # a node rejected it (isolated by the stream core)

PROBLEMS_SHOWN = 3  # rule violations named per resource in one problem


def _bootstrap_cluster_names() -> frozenset[str]:
    """The static clusters every bootstrap made by ``consul-xds-bridge bootstrap`` has."""
    config = bootstrap(BootstrapOptions(node_id="reserved", node_cluster="reserved"))
    return frozenset(str(c["name"]) for c in config["static_resources"]["clusters"])


#: Cluster names no Consul service or template may take: Envoy keeps its static cluster of that
#: name and ignores ours, so routes to it would reach the bridge's xDS port instead.
RESERVED_CLUSTER_NAMES: frozenset[str] = _bootstrap_cluster_names()


def reserved_name_problem(name: str) -> str | None:
    """Why ``name`` may not be a cluster's (None: it may)."""
    if name in RESERVED_CLUSTER_NAMES:
        return (
            f"{name!r} is the name of the bootstrap's own xDS cluster; a service with this "
            "name would be routed to the bridge's xDS port"
        )
    if name == "*":
        return (
            "'*' is the xDS wildcard: Envoy cannot ask for this cluster's endpoints by name, "
            "so it would stay warming and hold back every cluster update"
        )
    if name.startswith("xdstp:"):
        return "names starting with 'xdstp:' are xDS resource locators to Envoy"
    return None


@dataclass(frozen=True, slots=True)
class Problem:
    """One resource kept from the nodes, and why."""

    type: str  # cluster, endpoint, listener, route or virtual_host
    name: str  # of the resource (or virtual host)
    reason: str  # INVALID, RESERVED_NAME, DOMAIN_COLLISION, NACK
    source: str  # where the bad value comes from (a Consul field, a render, a node's NACK)
    rule: str  # what is wrong
    action: str  # what is served instead
    service: str | None = None

    def describe(self) -> str:
        """One log line's worth: what, where from, which rule, and what happens instead."""
        of = f" of service {self.service!r}" if self.service and self.service != self.name else ""
        return (
            f"{self.type} {clip(self.name)!r}{of} ({self.reason}): {self.source}: "
            f"{self.rule}; {self.action}"
        )


# ---------------------------------------------------------------- services (from Consul)
def check_service(service: str, built: BuiltService, kept: bool) -> list[Problem]:
    """Problems of one service's resources; ``kept``: a last good version is being served."""
    action = "its last good version is served" if kept else "it is left out"
    cluster = built.cluster
    rule = reserved_name_problem(cluster.name)
    if rule is not None:
        source = "Service.Service"
        return [Problem("cluster", cluster.name, RESERVED_NAME, source, rule, action, service)]
    problems = []
    for kind, msg in (("cluster", cluster), ("endpoint", built.load_assignment)):
        if msg is None:
            continue
        assignment = msg if kind == "endpoint" else cluster.load_assignment
        broken = check(msg)
        sums = weight_sums(assignment, "" if kind == "endpoint" else "load_assignment.")
        if broken or sums:
            source = consul_field(broken[0], msg) if broken else "Service.Weights"
            broken += sums
            rule = "; ".join(broken[:PROBLEMS_SHOWN])
            problems.append(Problem(kind, cluster.name, INVALID, source, rule, action, service))
    return problems


@functools.lru_cache(maxsize=4096)
def check_chain_resource(resource: Resource, kept: bool) -> Problem | None:
    """The problem of a cluster or endpoint assignment built for a config entries chain (a
    target cluster: a subset, a failover, a redirect); ``kept``: a version is being served."""
    kind = SHORT_NAMES.get(resource.type_url, "other")
    action = "the version served before stays served" if kept else "it is left out"
    source = "Consul config entries (see /debug/traffic)"
    rule = reserved_name_problem(resource.name) if resource.type_url == CLUSTER else None
    if rule is not None:
        return Problem(kind, resource.name, RESERVED_NAME, source, rule, action)
    msg: Any = resource.message
    broken = check(msg)
    if resource.type_url == CLUSTER:
        broken += weight_sums(msg.load_assignment, "load_assignment.")
    else:
        broken += weight_sums(msg)
    if not broken:
        return None
    rule = "; ".join(broken[:PROBLEMS_SHOWN])
    return Problem(kind, resource.name, INVALID, source, rule, action)


def weight_sums(assignment: Any, prefix: str = "") -> list[str]:
    """The xDS API's rule that PGV cannot express: the weights of one locality's endpoints, and
    of the localities of one priority, must each add up to at most 2^32 - 1 (proxyless gRPC
    clients reject the assignment otherwise; Envoy 1.40 happens to accept it)."""
    limit = 2**32 - 1
    problems = []
    by_priority: dict[int, int] = {}
    for i, locality in enumerate(assignment.endpoints):
        total = sum(e.load_balancing_weight.value or 1 for e in locality.lb_endpoints)
        if total > limit:
            problems.append(
                f"{prefix}endpoints[{i}].lb_endpoints: the endpoints' load_balancing_weight "
                f"add up to {total}, more than {limit}"
            )
        weight = locality.load_balancing_weight.value
        by_priority[locality.priority] = by_priority.get(locality.priority, 0) + weight
    for priority, total in sorted(by_priority.items()):
        if total > limit:
            problems.append(
                f"{prefix}endpoints: the locality weights of priority {priority} add up to "
                f"{total}, more than {limit}"
            )
    return problems


_META_FIELDS = (
    ("connect_timeout", "xds-connect-timeout"),
    ("lb_policy", "xds-lb-policy"),
    ("common_lb_config.healthy_panic_threshold", "xds-panic-threshold"),
    ("typed_extension_protocol_options", "xds-protocol"),
    ("circuit_breakers.thresholds[0].max_connections", "xds-max-connections"),
    ("circuit_breakers.thresholds[0].max_pending_requests", "xds-max-pending-requests"),
    ("circuit_breakers.thresholds[0].max_requests", "xds-max-requests"),
    ("circuit_breakers.thresholds[0].max_retries", "xds-max-retries"),
)
_ENDPOINT_FIELDS = (
    ("endpoint.address.socket_address.address", "Service.Address (or Node.Address)"),
    ("endpoint.address.socket_address.port_value", "Service.Port"),
    ("endpoint.hostname", "Node.Node"),
    ("load_balancing_weight", "Service.Weights"),
    ("metadata", "Service.Meta / Service.Tags"),
)
_LB_ENDPOINT = re.compile(r"^(?:load_assignment\.)?endpoints\[(\d+)\]\.lb_endpoints\[(\d+)\]\.?")
_LOCALITY = re.compile(r"^(?:load_assignment\.)?endpoints\[(\d+)\]\.")


def consul_field(problem: str, msg: message.Message) -> str:
    """The Consul field behind a rule violation ``path: what`` of a built cluster/assignment."""
    path = problem.partition(":")[0]
    for prefix, key in _META_FIELDS:
        if path.startswith(prefix):
            return f'Service.Meta["{key}"]'
    if path in ("name", "cluster_name", "load_assignment.cluster_name"):
        return "Service.Service"
    found = _LB_ENDPOINT.match(path)
    if found:
        rest = path[found.end() :]
        instance = _instance_id(msg, int(found.group(1)), int(found.group(2)))
        field = next((f for prefix, f in _ENDPOINT_FIELDS if rest.startswith(prefix)), "instance")
        return f"{field} of instance {clip(instance)!r}"
    if _LOCALITY.match(path):
        return "the instances' datacenter"
    return f"the service's instances (Envoy field {path})"


def _instance_id(msg: Any, locality: int, index: int) -> str:
    assignment = msg.load_assignment if hasattr(msg, "load_assignment") else msg
    try:
        endpoint = assignment.endpoints[locality].lb_endpoints[index]
        consul = endpoint.metadata.filter_metadata["consul"]
        return str(consul.fields["id"].string_value or "?")
    except (IndexError, KeyError):
        return "?"


# ---------------------------------------------------------------- what templates rendered
@dataclass(frozen=True, slots=True)
class GatedRender:
    """A node key's rendered resources after the gate: ``resources`` None refuses the render
    (the key keeps its last good listeners/routes); ``problems`` says what was dropped or why
    the render was refused."""

    resources: tuple[Resource, ...] | None
    problems: tuple[Problem, ...]


def domain_precedence(services: Collection[str]) -> Any:
    """Who keeps a domain two virtual hosts claim, first to last:

    1. a virtual host the template wrote itself (its name is not a Consul service: the
       catch-all ``*``) keeps it against one made for a service (a service named ``*``);
    2. a virtual host whose domains are all lower case keeps it against one spelling them
       otherwise (Envoy compares lower-cased: ``web`` keeps ``web`` against a service ``Web``);
    3. then the order of the route configuration (the default set: services by name).
    """

    def rank(index: int, vhost: route_components_pb2.VirtualHost) -> tuple[bool, bool]:
        lower = all(domain == domain.lower() for domain in vhost.domains)
        return vhost.name in services, not lower

    return rank


def gate_render(rendered: Sequence[Resource], services: Collection[str]) -> GatedRender:
    """Check what the templates rendered for one node key against ``services`` (served)."""
    kept: list[Resource] = []
    problems: list[Problem] = []
    refused = False
    for resource in rendered:
        if resource.type_url == ROUTE:
            resource, dropped = _drop_colliding_hosts(resource, services)
            problems.extend(dropped)
        invalid = _render_problems(resource)
        if invalid:
            refused = True
            problems.extend(invalid)
        kept.append(resource)
    return GatedRender(None if refused else tuple(kept), tuple(problems))


def _drop_colliding_hosts(
    resource: Resource, services: Collection[str]
) -> tuple[Resource, list[Problem]]:
    config: Any = resource.message
    dropped = check_route_domains(config, domain_precedence(services))
    if not dropped:
        return resource, []
    gone = {d.index for d in dropped}
    trimmed = route_pb2.RouteConfiguration()
    trimmed.CopyFrom(config)
    del trimmed.virtual_hosts[:]
    trimmed.virtual_hosts.extend(v for i, v in enumerate(config.virtual_hosts) if i not in gone)
    problems = []
    for d in dropped:
        service = d.name if d.name in services else None
        source = "Service.Service" if service else f"route configuration {resource.name!r}"
        rule = f"{d.problem} in route configuration {clip(resource.name)!r}"
        action = "this virtual host is left out, the others are served"
        problems.append(
            Problem("virtual_host", d.name, DOMAIN_COLLISION, source, rule, action, service)
        )
    return make_resource(trimmed, resource.origin_time), problems


@functools.lru_cache(maxsize=4096)
def _render_problems(resource: Resource) -> tuple[Problem, ...]:
    """Rule violations of one rendered resource (cached by content: renders repeat)."""
    kind = SHORT_NAMES[resource.type_url]
    action = "the node key keeps its last good listeners and routes"
    source = "rendered by the templates"
    problems = []
    reserved = reserved_name_problem(resource.name) if resource.type_url == CLUSTER else None
    if reserved is not None:
        problems.append(Problem(kind, resource.name, RESERVED_NAME, source, reserved, action))
    broken = check(resource.message)
    if resource.type_url == LISTENER:
        broken += _inline_route_collisions(resource.message)
    if broken:
        rule = "; ".join(broken[:PROBLEMS_SHOWN])
        problems.append(Problem(kind, resource.name, INVALID, source, rule, action))
    return tuple(problems)


def _inline_route_collisions(listener: Any) -> list[str]:
    """Domain collisions in route configurations written inline in a listener's HTTP
    connection managers (filter chains and ``api_listener``)."""
    managers = []
    packed = [f.typed_config for chain in listener.filter_chains for f in chain.filters]
    if listener.HasField("default_filter_chain"):
        packed += [f.typed_config for f in listener.default_filter_chain.filters]
    if listener.HasField("api_listener"):
        packed.append(listener.api_listener.api_listener)
    for value in packed:
        manager = hcm_pb2.HttpConnectionManager()
        if value.Is(manager.DESCRIPTOR) and value.Unpack(manager):
            managers.append(manager)
    problems = []
    for manager in managers:
        if manager.HasField("route_config"):
            for d in check_route_domains(manager.route_config):
                problems.append(f"route_config {manager.route_config.name!r}: {d.problem}")
    return problems
