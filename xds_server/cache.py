"""The snapshot cache: what each node group is served, and who to tell when it changes.

A *node key* groups Envoys that share one configuration. It is computed from the Envoy ``Node``
by a node-hash function (by default the node id; see :func:`node_key_by_cluster` and
:func:`node_key_by_metadata` for grouping). Each key holds a :class:`Snapshot`: one immutable
:class:`ResourceSet` per type. Updating one resource creates a new snapshot that shares every
other resource (and every other type) with the previous one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2

from .resource import ADS_ORDER, Resource, ResourceSet

log = logging.getLogger(__name__)

NodeKeyFunc = Callable[[base_pb2.Node], str]
Listener = Callable[[frozenset[str]], None]
#: Called when a stream opens for a key: may ``set_snapshot`` for it (e.g. render its templates).
KeyOpened = Callable[[str, base_pb2.Node], None]
#: Called when the last stream of a key ends: the owner may drop per-key state.
KeyReleased = Callable[[str], None]


def node_key_by_id(node: base_pb2.Node) -> str:
    """Every Envoy gets its own snapshot (the default)."""
    return str(node.id)


def node_key_by_cluster(node: base_pb2.Node) -> str:
    """All Envoys of one ``--service-cluster`` share a snapshot."""
    return str(node.cluster)


def node_key_by_metadata(field_name: str, fallback: NodeKeyFunc = node_key_by_id) -> NodeKeyFunc:
    """Group by one node metadata field; nodes without it fall back to ``fallback``."""

    def key(node: base_pb2.Node) -> str:
        fields = node.metadata.fields
        if field_name in fields and fields[field_name].WhichOneof("kind") == "string_value":
            return str(fields[field_name].string_value)
        return fallback(node)

    return key


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable mapping type URL → ResourceSet (types never set are empty)."""

    resources: Mapping[str, ResourceSet] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Snapshot:
        by_type: dict[str, list[Resource]] = {}
        for resource in resources:
            by_type.setdefault(resource.type_url, []).append(resource)
        return cls({t: ResourceSet(t, items) for t, items in by_type.items()})

    def get(self, type_url: str) -> ResourceSet:
        found = self.resources.get(type_url)
        return found if found is not None else ResourceSet(type_url)

    def version(self, type_url: str) -> str:
        return self.get(type_url).version

    def replace(self, resource_set: ResourceSet) -> Snapshot:
        return Snapshot({**self.resources, resource_set.type_url: resource_set})

    def changed_types(self, other: Snapshot | None) -> frozenset[str]:
        """Types whose content differs between ``self`` and ``other``."""
        types = set(self.resources) | set(other.resources if other else ())
        if other is None:
            return frozenset(types)
        return frozenset(t for t in types if self.version(t) != other.version(t))


class SnapshotCache:
    """Holds a snapshot per node key and notifies the streams of that key on change."""

    def __init__(self, node_key: NodeKeyFunc = node_key_by_id) -> None:
        self.node_key = node_key
        self._snapshots: dict[str, Snapshot] = {}
        self._listeners: dict[str, set[Listener]] = {}
        self.key_opened: KeyOpened | None = None
        self.key_released: KeyReleased | None = None

    def snapshot_keys(self) -> list[str]:
        return sorted(self._snapshots)

    def get(self, key: str) -> Snapshot | None:
        return self._snapshots.get(key)

    def set_snapshot(self, key: str, snapshot: Snapshot) -> frozenset[str]:
        """Replace the snapshot of ``key``; returns (and announces) the types that changed."""
        changed = snapshot.changed_types(self._snapshots.get(key))
        self._snapshots[key] = snapshot
        if changed:
            self._notify(key, changed)
        return changed

    def set_resources(self, key: str, resource_set: ResourceSet) -> bool:
        """Replace one type of ``key``'s snapshot. Returns whether anything changed."""
        current = self._snapshots.get(key, Snapshot())
        if current.version(resource_set.type_url) == resource_set.version:
            if resource_set.type_url not in current.resources:
                self._snapshots[key] = current.replace(resource_set)
            return False
        self._snapshots[key] = current.replace(resource_set)
        self._notify(key, frozenset({resource_set.type_url}))
        return True

    def update_resources(
        self,
        key: str,
        type_url: str,
        upsert: Iterable[Resource] = (),
        remove: Iterable[str] = (),
    ) -> bool:
        """Add/replace/remove individual resources of one type without rebuilding the rest."""
        current = self._snapshots.get(key, Snapshot())
        return self.set_resources(key, current.get(type_url).with_changes(upsert, remove))

    def clear(self, key: str) -> None:
        """Forget ``key``'s snapshot (connected streams keep what they were sent)."""
        self._snapshots.pop(key, None)

    def watch(self, node: base_pb2.Node, listener: Listener) -> str:
        """Register a stream of ``node``; returns its key. The first stream of a key may make
        the owner (``key_opened``) create the key's snapshot."""
        key = self.node_key(node)
        first = key not in self._listeners
        self.add_listener(key, listener)
        if first and self.key_opened is not None:
            try:
                self.key_opened(key, node)
            except Exception:
                log.exception("creating the snapshot of node key %r failed", key)
        return key

    def unwatch(self, key: str, listener: Listener) -> None:
        """Unregister a stream; after the last one, ``key_released`` may drop the key."""
        self.remove_listener(key, listener)
        if key not in self._listeners and self.key_released is not None:
            try:
                self.key_released(key)
            except Exception:
                log.exception("releasing node key %r failed", key)

    def watched_keys(self) -> list[str]:
        """Keys with at least one connected stream."""
        return sorted(self._listeners)

    def add_listener(self, key: str, listener: Listener) -> None:
        """Call ``listener(changed_types)`` whenever ``key``'s snapshot changes."""
        self._listeners.setdefault(key, set()).add(listener)

    def remove_listener(self, key: str, listener: Listener) -> None:
        listeners = self._listeners.get(key)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self._listeners[key]

    def listener_count(self) -> int:
        return sum(len(listeners) for listeners in self._listeners.values())

    def _notify(self, key: str, changed: frozenset[str]) -> None:
        for listener in list(self._listeners.get(key, ())):
            try:
                listener(changed)
            except Exception:  # a broken listener must not stop the others
                log.exception("snapshot listener for %r failed", key)


__all__ = [
    "ADS_ORDER",
    "NodeKeyFunc",
    "Snapshot",
    "SnapshotCache",
    "node_key_by_cluster",
    "node_key_by_id",
    "node_key_by_metadata",
]
