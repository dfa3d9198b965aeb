"""A service losing its last instance: its endpoints are emptied for every client before its
cluster goes.

Removing a cluster is not something every client acts on: a gRPC client started with
``server_features: ["ignore_resource_deletion"]`` (gRFC A53) keeps a cluster the server stops
sending, *with the endpoints it last had*, and goes on calling them. So when a service has no
instance left (Consul lists none, or no longer lists the service), the publisher first serves it
*emptied* — the same cluster, with an empty ``ClusterLoadAssignment`` (or, for a DNS cluster, no
inline endpoints) — in every variant. Only when the :class:`DeletionGate` says every client that
held the service took that (it ACKed or NACKed the first response carrying it, or its stream
ended), or a timeout passed, is the cluster removed. A client ignoring the deletion is left with
a cluster that has no endpoints: its calls fail fast instead of reaching the old instances.

:class:`Retirements` is the per-service state; :class:`AckGate` (:mod:`bridge.deletion_gate`)
the gate the running bridge uses. Without a gate (``render``, a publisher no server serves),
a service goes at once, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from xds_server.resource import CLUSTER, ENDPOINT

from .grpc_shaping import EDS_CHILD_SUFFIX, split_by_address
from .resources import BuiltService


class DeletionGate(Protocol):
    """Decides when a leaving service's emptied endpoints were taken by every client."""

    def begin(
        self, service: str, names: Mapping[str, frozenset[str]], done: Callable[[], None]
    ) -> None:
        """The emptied resources (``names`` per type URL) are being published now: call
        ``done`` (never from within this call) once the clients took them, or on a timeout."""
        ...

    def cancel(self, service: str) -> None:
        """The service came back: forget it (``done`` is not called)."""
        ...


def emptied(built: BuiltService) -> BuiltService:
    """``built`` with no endpoints: the same cluster and assignment names and settings."""
    if built.load_assignment is not None:
        assignment = endpoint_pb2.ClusterLoadAssignment()
        assignment.CopyFrom(built.load_assignment)
        del assignment.endpoints[:]
        return BuiltService(built.cluster, assignment)
    cluster = cluster_pb2.Cluster()
    cluster.CopyFrom(built.cluster)
    del cluster.load_assignment.endpoints[:]
    return BuiltService(cluster, None)


def emptied_names(built: BuiltService) -> dict[str, frozenset[str]]:
    """The resources (per type URL) that change when ``built`` is emptied, in the Envoy and
    the gRPC variants together: what clients must have taken before the cluster goes."""
    name = str(built.cluster.name)
    if built.load_assignment is not None:  # EDS, in both variants
        has_endpoints = any(locality.lb_endpoints for locality in built.load_assignment.endpoints)
        return {ENDPOINT: frozenset({name})} if has_endpoints else {}
    # A DNS cluster: Envoy's inline endpoints go; gRPC's aggregate loses its DNS children, and
    # its EDS child (of the IP-addressed instances) is emptied.
    names: dict[str, frozenset[str]] = {CLUSTER: frozenset({name})}
    ip_part, _ = split_by_address(built.cluster.load_assignment, name + EDS_CHILD_SUFFIX)
    if ip_part.endpoints:
        names[ENDPOINT] = frozenset({name + EDS_CHILD_SUFFIX})
    return names


class Retirements:
    """Per service: served → leaving (emptied, the gate decides) → due (it may be removed).

    The publisher reports what it serves (:meth:`served`); when a service has no instance left
    it asks for the form to serve (:meth:`emptied`) and whether it may go (:meth:`may_go`).
    ``on_due(service)`` is called when the gate lets a leaving service go.
    """

    def __init__(self, gate: DeletionGate | None, on_due: Callable[[str], None]) -> None:
        self.gate = gate
        self.on_due = on_due
        self._served: dict[str, BuiltService] = {}
        self._leaving: dict[str, BuiltService] = {}
        self._due: set[str] = set()

    def served(self, service: str, built: BuiltService) -> bool:
        """``service`` is served as ``built``; returns whether it was leaving (it came back)."""
        returned = self._leaving.pop(service, None) is not None
        if returned:
            self._due.discard(service)
            if self.gate is not None:
                self.gate.cancel(service)
        if self.gate is not None:  # without a gate nothing is ever emptied first
            self._served[service] = built
        return returned

    def emptied(self, service: str) -> BuiltService | None:
        """The form to serve while ``service`` has no instance (the gate starts the first time);
        None when nothing of it is served (or there is no gate)."""
        form = self._leaving.get(service)
        if form is not None:
            return form
        last = self._served.get(service)
        if last is None or self.gate is None:
            return None
        form = self._leaving[service] = emptied(last)
        self.gate.begin(service, emptied_names(last), lambda: self._done(service, form))
        return form

    def may_go(self, service: str) -> bool:
        """Whether ``service``, gone from the catalog, may be removed now; if so it is
        forgotten here."""
        if service in self._leaving and service not in self._due:
            return False
        self._served.pop(service, None)
        self._leaving.pop(service, None)
        self._due.discard(service)
        return True

    @property
    def leaving(self) -> frozenset[str]:
        """Services served emptied, waiting for the gate."""
        return frozenset(self._leaving.keys() - self._due)

    def _done(self, service: str, form: BuiltService) -> None:
        if self._leaving.get(service) is not form:  # came back (and maybe left again) since
            return
        self._due.add(service)
        self.on_due(service)
