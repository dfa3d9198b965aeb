"""What the publisher reads besides the catalog: the per-node resources (the templates) and the
clusters Consul's config entries add (the chains)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from envoy.config.core.v3 import base_pb2

from xds_server.resource import Resource

from .catalog import Catalog
from .config_entries import ConfigEntriesUpdate


class NodeConfigSource(Protocol):
    """Per-node listeners, routes and extra clusters (implemented by the templates)."""

    def node_resources(
        self, key: str, node: base_pb2.Node, catalog: Catalog, services_changed: bool
    ) -> Sequence[Resource] | None:
        """Resources for ``key``; None keeps what the key has (e.g. after a template error)."""
        ...

    def key_released(self, key: str) -> None:
        """The last stream of ``key`` went: forget what is kept for it."""
        ...


class SetChanges(Protocol):
    """Changes to a pair of cluster and endpoint sets (removals applied first)."""

    @property
    def clusters(self) -> Sequence[Resource]: ...
    @property
    def endpoints(self) -> Sequence[Resource]: ...
    @property
    def remove_clusters(self) -> Sequence[str]: ...
    @property
    def remove_endpoints(self) -> Sequence[str]: ...


class ResourceChanges(SetChanges, Protocol):
    """Changes to the shared sets, and whether the set of cluster names changed."""

    @property
    def names_changed(self) -> bool: ...


class TrafficSource(Protocol):
    """Consul's config entries → clusters and endpoints added to (or replacing plain ones in)
    the shared sets (implemented by :class:`bridge.chains.Traffic`)."""

    def set_entries(self, update: ConfigEntriesUpdate) -> bool:
        """Take a config entries table; whether anything changed."""
        ...

    def rebuild(self, changed: Mapping[str, float], catalog: Catalog) -> ResourceChanges:
        """The changes after the catalog's ``changed`` services and the entries taken."""
        ...
