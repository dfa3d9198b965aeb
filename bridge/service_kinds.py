"""Consul service kinds that are not ordinary backends: sidecar proxies and gateways.

Consul registers Connect sidecars (``connect-proxy``) and gateways (``mesh-gateway``,
``terminating-gateway``, ``ingress-gateway``, ``api-gateway``) as service instances with a
``Kind``. Their ports speak mTLS to the mesh (or are a gateway's public listener), not the
service's plain protocol, so an edge Envoy sending plain requests there would fail. By default
their instances are left out before they reach the catalog; a service made only of them is not
served at all. ``services.include_mesh_kinds`` serves them as ordinary backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .catalog import ServiceUpdate

MESH_KINDS = frozenset(
    {"connect-proxy", "mesh-gateway", "terminating-gateway", "ingress-gateway", "api-gateway"}
)


def served_update(update: ServiceUpdate) -> ServiceUpdate:
    """``update`` without instances of a mesh kind; None instances (the service is not served in
    that datacenter) when every instance it had was of a mesh kind."""
    instances = update.instances
    if not instances:
        return update
    kept = tuple(i for i in instances if i.kind not in MESH_KINDS)
    if len(kept) == len(instances):
        return update
    return replace(update, instances=kept or None)


def without_mesh_kinds(
    on_update: Callable[[list[ServiceUpdate]], None],
) -> Callable[[list[ServiceUpdate]], None]:
    """Wrap a watcher's ``on_update`` so that mesh-kind instances never reach it."""

    def deliver(updates: list[ServiceUpdate]) -> None:
        on_update([served_update(u) for u in updates])

    return deliver
