"""The validation gate's and the NACK rollbacks' decisions applied to the gRPC variant
(:class:`~bridge.variants.GrpcVariant`) as to the Envoy sets.

* Config-entry chains reach the gRPC variant as gated: only the chain resources the gate and
  the rollbacks let into the Envoy sets (:class:`GatedChanges`).
* A shared resource rolled back after a NACK is rolled back in the gRPC variant too wherever it
  serves the very same version under that name (an IP-addressed service's assignment is one
  ``Resource`` in both variants), also after later commits (:func:`keep_rollbacks`). A resource
  only the gRPC variant has (its own shaped form) has no earlier version known here: it is not
  rolled back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from xds_server.resource import CLUSTER, ENDPOINT, Resource, ResourceSet

from .variants import GrpcVariant


@dataclass(frozen=True, slots=True)
class GatedChanges:
    """What config-entry chains change in the sets, as the gate and the rollbacks let it."""

    clusters: Sequence[Resource]
    endpoints: Sequence[Resource]
    remove_clusters: Sequence[str]
    remove_endpoints: Sequence[str]

    @classmethod
    def of(
        cls,
        clusters: Sequence[Resource],
        endpoints: Sequence[Resource],
        remove_clusters: Sequence[str],
        remove_endpoints: Sequence[str],
        admitted: Collection[Resource],
    ) -> GatedChanges:
        """Only the upserts among ``admitted`` (the resources let into the Envoy sets)."""
        ids = {id(r) for r in admitted}
        return cls(
            [r for r in clusters if id(r) in ids],
            [r for r in endpoints if id(r) in ids],
            remove_clusters,
            remove_endpoints,
        )


def roll_back_grpc(grpc: GrpcVariant, type_url: str, version: str, replacement: Resource) -> None:
    """Where the gRPC variant serves ``replacement``'s name at the rolled back ``version``,
    serve ``replacement`` instead."""
    if type_url == CLUSTER:
        grpc.clusters = _replaced(grpc.clusters, version, replacement)
    elif type_url == ENDPOINT:
        grpc.endpoints = _replaced(grpc.endpoints, version, replacement)


def keep_rollbacks(
    grpc: GrpcVariant, rejected: Mapping[tuple[str, str], str], envoy: Mapping[str, ResourceSet]
) -> None:
    """After a commit: a gRPC resource at a version rolled back (``rejected``: per type URL and
    name, the version) is served as the Envoy set serves it instead."""
    for (type_url, name), version in rejected.items():
        instead = envoy[type_url].get(name) if type_url in envoy else None
        if instead is not None and instead.version != version:
            roll_back_grpc(grpc, type_url, version, instead)


def _replaced(served: ResourceSet, version: str, replacement: Resource) -> ResourceSet:
    current = served.get(replacement.name)
    if current is None or current.version != version:
        return served
    return served.with_changes([replacement])
