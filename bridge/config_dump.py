"""A node's resources in the shape of Envoy's admin ``/config_dump`` (``admin.v3.ConfigDump``).

``/debug/config_dump?node=ID`` and ``render --format config_dump`` print what a node has (or
would have) exactly as that node's Envoy prints its dynamic resources, so the two can be
diffed:

* ``ClustersConfigDump.dynamic_active_clusters``, ``ListenersConfigDump.dynamic_listeners``
  (``active_state``), ``RoutesConfigDump.dynamic_route_configs`` carry the resources as sent;
* ``EndpointsConfigDump.dynamic_endpoint_configs`` (only with ``include_eds``, as in Envoy) carry
  each ClusterLoadAssignment the way Envoy prints it: rebuilt from its hosts, so with the
  defaults it applied made explicit (see :func:`as_envoy_holds`).

What cannot match and :func:`normalise` therefore drops: ``last_updated`` (a time) and
``version_info`` (Envoy shows the version of the response that carried a resource; the bridge
shows the resource's own content hash), the static and bootstrap sections Envoy adds, and list
order (resources are sorted by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import json_format

from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, ResourceSet

_Shared = config_dump_shared_pb2
#: Envoy's default ``policy.overprovisioning_factor`` (it prints it when the CLA has none).
DEFAULT_OVERPROVISIONING = 140

#: name → wall-clock seconds the node accepted the resource (``last_updated``), per type URL
Updated = Mapping[str, Mapping[str, float]]


def config_dump(
    snapshot: Snapshot | None, include_eds: bool = False, updated: Updated | None = None
) -> dict[str, Any]:
    """The ConfigDump JSON (field names as Envoy prints them) of a node's snapshot."""
    snapshot = snapshot or Snapshot()
    updated = updated or {}
    sections: list[Any] = [_clusters(snapshot.get(CLUSTER), updated.get(CLUSTER, {}))]
    if include_eds:
        sections.append(_endpoints(snapshot.get(ENDPOINT), updated.get(ENDPOINT, {})))
    sections.append(_listeners(snapshot.get(LISTENER), updated.get(LISTENER, {})))
    sections.append(_routes(snapshot.get(ROUTE), updated.get(ROUTE, {})))
    dump = config_dump_pb2.ConfigDump()
    for section in sections:
        dump.configs.add().Pack(section)
    result: dict[str, Any] = json_format.MessageToDict(dump, preserving_proto_field_name=True)
    return result


def _stamp(message: Any, when: float | None) -> None:
    if when is not None:
        message.last_updated.FromNanoseconds(int(when * 1e9))


def _clusters(resources: ResourceSet, updated: Mapping[str, float]) -> Any:
    section = _Shared.ClustersConfigDump(version_info=resources.version if resources else "")
    for name, resource in sorted(resources.items()):
        entry = section.dynamic_active_clusters.add(version_info=resource.version)
        entry.cluster.CopyFrom(resource.packed)
        _stamp(entry, updated.get(name))
    return section


def _endpoints(resources: ResourceSet, updated: Mapping[str, float]) -> Any:
    section = _Shared.EndpointsConfigDump()
    for name, resource in sorted(resources.items()):
        entry = section.dynamic_endpoint_configs.add()
        entry.endpoint_config.Pack(as_envoy_holds(resource))
        _stamp(entry, updated.get(name))
    return section


def _listeners(resources: ResourceSet, updated: Mapping[str, float]) -> Any:
    section = _Shared.ListenersConfigDump(version_info=resources.version if resources else "")
    for name, resource in sorted(resources.items()):
        entry = section.dynamic_listeners.add(name=name)
        entry.active_state.version_info = resource.version
        entry.active_state.listener.CopyFrom(resource.packed)
        _stamp(entry.active_state, updated.get(name))
    return section


def _routes(resources: ResourceSet, updated: Mapping[str, float]) -> Any:
    section = _Shared.RoutesConfigDump()
    for name, resource in sorted(resources.items()):
        entry = section.dynamic_route_configs.add(version_info=resource.version)
        entry.route_config.CopyFrom(resource.packed)
        _stamp(entry, updated.get(name))
    return section


def as_envoy_holds(resource: Resource) -> endpoint_pb2.ClusterLoadAssignment:
    """A ClusterLoadAssignment as Envoy prints it: Envoy rebuilds it from the hosts it made,
    so every locality has a ``locality`` and a weight (0 when none), every endpoint a
    ``health_check_config``, a health status (``HEALTHY`` when unknown) and a weight (1 when
    none), and the policy its overprovisioning factor."""
    assignment = endpoint_pb2.ClusterLoadAssignment()
    assignment.CopyFrom(resource.message)
    if not assignment.policy.HasField("overprovisioning_factor"):
        assignment.policy.overprovisioning_factor.value = DEFAULT_OVERPROVISIONING
    for locality in assignment.endpoints:
        locality.locality.SetInParent()
        locality.load_balancing_weight.SetInParent()
        for lb_endpoint in locality.lb_endpoints:
            lb_endpoint.endpoint.health_check_config.SetInParent()
            if lb_endpoint.health_status == health_check_pb2.UNKNOWN:
                lb_endpoint.health_status = health_check_pb2.HEALTHY
            if not lb_endpoint.HasField("load_balancing_weight"):
                lb_endpoint.load_balancing_weight.value = 1
    return assignment


# Which field names each dynamic section lists, and where the resource's name is.
_SECTIONS = {
    "ClustersConfigDump": ("dynamic_active_clusters", ("cluster", "name")),
    "EndpointsConfigDump": ("dynamic_endpoint_configs", ("endpoint_config", "cluster_name")),
    "ListenersConfigDump": ("dynamic_listeners", ("name",)),
    "RoutesConfigDump": ("dynamic_route_configs", ("route_config", "name")),
}
_VOLATILE = frozenset({"last_updated", "version_info"})


def normalise(dump: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The comparable part of a ``/config_dump`` JSON, Envoy's or the bridge's: per section,
    its dynamic resources sorted by name, without ``last_updated`` and ``version_info``."""
    out: dict[str, list[Any]] = {}
    for section in dump.get("configs", []):
        kind = str(section.get("@type", "")).rsplit(".", 1)[-1]
        if kind not in _SECTIONS:
            continue
        field, path = _SECTIONS[kind]
        entries = [_without_volatile(e) for e in section.get(field, [])]
        out[kind] = sorted(entries, key=lambda entry: _name(entry, path))
    return out


def _name(entry: Any, path: tuple[str, ...]) -> str:
    for key in path:
        entry = entry.get(key, {}) if isinstance(entry, dict) else {}
    return entry if isinstance(entry, str) else ""


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value
