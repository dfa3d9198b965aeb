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
from typing import Protocol

from envoy.config.core.v3 import base_pb2

from .resource import Resource, ResourceSet

log = logging.getLogger(__name__)

NodeKeyFunc = Callable[[base_pb2.Node], str]
#: Called with the types whose resources changed in a key's snapshot.
Listener = Callable[[frozenset[str]], None]


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
    """An immutable mapping type URL → ResourceSet (types never set are empty).

    ``withheld`` types are not known yet for this key (e.g. its listeners could not be rendered
    yet): streams send nothing of them, so a client keeps what it holds rather than being told
    "none". Setting a type (:meth:`replace`) stops withholding it.
    """

    resources: Mapping[str, ResourceSet] = field(default_factory=dict)
    withheld: frozenset[str] = frozenset()

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
        return Snapshot(
            {**self.resources, resource_set.type_url: resource_set},
            self.withheld - {resource_set.type_url},
        )

    def changed_types(self, other: Snapshot | None) -> frozenset[str]:
        """Types whose content (or whether they are withheld) differs between the two."""
        types = set(self.resources) | set(other.resources if other else ()) | self.withheld
        if other is None:
            return frozenset(types)
        types |= other.withheld
        return frozenset(
            t
            for t in types
            if self.version(t) != other.version(t) or (t in self.withheld) != (t in other.withheld)
        )


class KeyObserver(Protocol):
    """Told when a node key gains its first stream and loses its last one (the owner of the
    snapshots creates a key's snapshot, or forgets what it kept for the key)."""

    def key_opened(self, key: str, node: base_pb2.Node) -> None: ...

    def key_released(self, key: str) -> None: ...


class ConfigWatcher(Protocol):
    """What a stream needs of the cache (go-control-plane's ``ConfigWatcher``, in small)."""

    def node_key(self, node: base_pb2.Node) -> str: ...

    def get(self, key: str) -> Snapshot | None: ...

    def watch(self, node: base_pb2.Node, listener: Listener) -> str: ...

    def unwatch(self, key: str, listener: Listener) -> None: ...


class SnapshotCache:
    """Holds a snapshot per node key and notifies the streams of that key on change."""

    def __init__(self, node_key: NodeKeyFunc = node_key_by_id) -> None:
        self._node_key = node_key
        self._snapshots: dict[str, Snapshot] = {}
        self._listeners: dict[str, set[Listener]] = {}
        self._nodes: dict[str, base_pb2.Node] = {}  # watched key -> the node of its first stream
        self._key_observers: list[KeyObserver] = []

    def node_key(self, node: base_pb2.Node) -> str:
        """The key whose snapshot ``node`` is served."""
        return self._node_key(node)

    # ------------------------------------------------------------ snapshots
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

    def update_resources(
        self,
        key: str,
        type_url: str,
        upsert: Iterable[Resource] = (),
        remove: Iterable[str] = (),
    ) -> bool:
        """Add/replace/remove individual resources of one type without rebuilding the rest.
        Returns whether anything changed."""
        current = self._snapshots.get(key, Snapshot())
        resource_set = current.get(type_url).with_changes(upsert, remove)
        if current.version(type_url) == resource_set.version:
            if type_url not in current.resources:
                self._snapshots[key] = current.replace(resource_set)
            return False
        self._snapshots[key] = current.replace(resource_set)
        self._notify(key, frozenset({type_url}))
        return True

    def clear(self, key: str) -> None:
        """Forget ``key``'s snapshot (connected streams keep what they were sent)."""
        self._snapshots.pop(key, None)

    # ------------------------------------------------------------ streams
    def add_key_observer(self, observer: KeyObserver) -> None:
        """Tell ``observer`` when a key gains its first stream and loses its last one."""
        self._key_observers.append(observer)

    def watch(self, node: base_pb2.Node, listener: Listener) -> str:
        """Register a stream of ``node``; returns its key. The first stream of a key makes the
        key observers create the key's snapshot."""
        key = self.node_key(node)
        first = key not in self._nodes
        self.add_listener(key, listener)
        if first:
            self._nodes[key] = node
            for observer in self._key_observers:
                try:
                    observer.key_opened(key, node)
                except Exception:  # the observer retries what it owns; the stream stays up
                    log.exception("opening node key %r (node %r) failed", key, node.id)
        return key

    def unwatch(self, key: str, listener: Listener) -> None:
        """Unregister a stream; after the last one, the key observers may drop the key."""
        listeners = self._listeners.get(key)
        if listeners is not None:
            listeners.discard(listener)
            if listeners:
                return
            del self._listeners[key]
        if self._nodes.pop(key, None) is None:
            return
        for observer in self._key_observers:
            try:
                observer.key_released(key)
            except Exception:
                log.exception("releasing node key %r failed", key)

    def watched(self) -> dict[str, base_pb2.Node]:
        """Keys with at least one connected stream, and the node of the first one."""
        return dict(self._nodes)

    def add_listener(self, key: str, listener: Listener) -> None:
        """Call ``listener(changed_types)`` whenever ``key``'s snapshot changes."""
        self._listeners.setdefault(key, set()).add(listener)

    def listener_count(self) -> int:
        return sum(len(listeners) for listeners in self._listeners.values())

    def _notify(self, key: str, changed: frozenset[str]) -> None:
        for listener in list(self._listeners.get(key, ())):
            try:
                listener(changed)
            except Exception:  # a broken listener must not stop the others
                log.exception("snapshot listener for %r failed", key)


__all__ = [
    "ConfigWatcher",
    "KeyObserver",
    "Listener",
    "NodeKeyFunc",
    "Snapshot",
    "SnapshotCache",
    "node_key_by_cluster",
    "node_key_by_id",
    "node_key_by_metadata",
]
