"""Steps of a publisher rebuild (:mod:`bridge.publisher`): keeping the served catalog, putting
config-entry chains' resources through the validation gate and the NACK rollbacks, and telling
a service with no instance left."""

from __future__ import annotations

from collections.abc import Iterable

from xds_server.resource import Resource, ResourceSet

from .catalog import Catalog, ServiceUpdate
from .gate import check_chain_resource
from .model import ServiceView
from .quarantine import Quarantine
from .rollback import Rollbacks, chain_scope


def no_instance(view: ServiceView | None) -> bool:
    """Whether a service (``view``, None: not in the catalog) has no instance left."""
    return view is None or not any(True for _ in view.all_instances())


def serve_view(served: Catalog, service: str, view: ServiceView | None) -> bool:
    """Make the ``served`` catalog show ``view`` of ``service`` (None: not served); returns
    whether it changed."""
    current = served.view(service)
    datacenters = {*(current.instances if current else ()), *(view.instances if view else ())}
    updates = [
        ServiceUpdate(service, dc, view.instances.get(dc) if view else None)
        for dc in sorted(datacenters)
    ]
    return bool(served.apply(updates))


def gate_chain(
    quarantine: Quarantine,
    rollbacks: Rollbacks,
    served: ResourceSet,
    built: Iterable[Resource],
    into: list[Resource],
) -> set[str]:
    """Put a chain's resources through the gate and the rollbacks (into ``into``); returns
    the names refused (their served version stays)."""
    refused = set()
    for resource in built:
        problem = check_chain_resource(resource, kept=resource.name in served)
        scope = chain_scope(resource.type_url, resource.name)
        quarantine.set(scope, [problem] if problem is not None else [])
        if problem is not None:
            refused.add(resource.name)
        elif rollbacks.admit(served, resource):
            into.append(resource)
    return refused
