"""The snapshot cache's contract with its owner and its streams, checked without any gRPC:
node keys, key observers (first stream opens a key, last one releases it), listeners, and
resource-level updates."""

from __future__ import annotations

import logging

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.cache import Snapshot, SnapshotCache, node_key_by_cluster, node_key_by_metadata
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ResourceSet


def node(node_id: str, cluster: str = "edge", **metadata: str | float) -> base_pb2.Node:
    fields = struct_pb2.Struct()
    fields.update(metadata)
    return base_pb2.Node(id=node_id, cluster=cluster, metadata=fields)


class Observer:
    """Records what the cache tells its key observer."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail = fail

    def key_opened(self, key: str, node: base_pb2.Node) -> None:
        self.events.append(("opened", f"{key}/{node.id}"))
        if self.fail:
            raise RuntimeError("observer broke")

    def key_released(self, key: str) -> None:
        self.events.append(("released", key))
        if self.fail:
            raise RuntimeError("observer broke")


def no_change(types: frozenset[str]) -> None:
    pass


def other_change(types: frozenset[str]) -> None:
    pass


def test_metadata_grouping_uses_only_string_fields_and_falls_back_otherwise() -> None:
    by_group = node_key_by_metadata("group")
    assert by_group(node("envoy-1", group="edge")) == "edge"
    assert by_group(node("envoy-2", group=7)) == "envoy-2"  # a number is not a group name
    assert by_group(node("envoy-3", other="edge")) == "envoy-3"
    by_group_or_cluster = node_key_by_metadata("group", fallback=node_key_by_cluster)
    assert by_group_or_cluster(node("envoy-4", cluster="ingress")) == "ingress"


def test_a_type_never_set_reads_as_an_empty_set_of_that_type() -> None:
    snapshot = Snapshot.of([eds_cluster("a")])
    empty = snapshot.get(LISTENER)
    assert isinstance(empty, ResourceSet)
    assert empty.type_url == LISTENER
    assert len(empty) == 0
    assert snapshot.version(LISTENER) == ResourceSet(LISTENER).version
    assert "a" in snapshot.get(CLUSTER)


def test_changed_types_names_added_removed_and_modified_types_only() -> None:
    base = Snapshot.of([eds_cluster("a"), load_assignment("a", [1])])
    assert base.changed_types(None) == {CLUSTER, ENDPOINT}
    assert base.changed_types(base) == frozenset()
    only_clusters = Snapshot.of([eds_cluster("a")])
    assert base.changed_types(only_clusters) == {ENDPOINT}
    assert only_clusters.changed_types(base) == {ENDPOINT}
    moved = Snapshot.of([eds_cluster("a"), load_assignment("a", [2])])
    assert moved.changed_types(base) == {ENDPOINT}


def test_the_first_stream_of_a_key_opens_it_and_the_last_one_releases_it() -> None:
    cache = SnapshotCache(node_key_by_cluster)
    observer = Observer()
    cache.add_key_observer(observer)

    key = cache.watch(node("envoy-1"), no_change)
    assert key == "edge"
    assert cache.watch(node("envoy-2"), other_change) == "edge"
    assert observer.events == [("opened", "edge/envoy-1")]  # the node of the first stream
    assert cache.watched() == {"edge": node("envoy-1")}
    assert cache.listener_count() == 2

    cache.unwatch("edge", no_change)
    assert observer.events == [("opened", "edge/envoy-1")]  # one stream is still open
    assert cache.watched() == {"edge": node("envoy-1")}
    cache.unwatch("edge", other_change)
    assert observer.events == [("opened", "edge/envoy-1"), ("released", "edge")]
    assert cache.watched() == {}
    assert cache.listener_count() == 0

    cache.unwatch("edge", other_change)  # a second release of a released key is ignored
    assert observer.events[-1] == ("released", "edge")
    assert len(observer.events) == 2


def test_watched_is_a_copy_the_caller_cannot_break() -> None:
    cache = SnapshotCache()
    cache.watch(node("envoy-1"), no_change)
    cache.watched().clear()
    assert list(cache.watched()) == ["envoy-1"]


def test_a_failing_key_observer_is_logged_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="xds_server")
    cache = SnapshotCache(node_key_by_cluster)
    broken, fine = Observer(fail=True), Observer()
    cache.add_key_observer(broken)
    cache.add_key_observer(fine)

    assert cache.watch(node("envoy-1"), no_change) == "edge"
    assert fine.events == [("opened", "edge/envoy-1")]
    assert cache.watched() == {"edge": node("envoy-1")}  # the stream stays registered
    cache.unwatch("edge", no_change)
    assert fine.events[-1] == ("released", "edge")

    opening, releasing = (r for r in caplog.records if r.levelno == logging.ERROR)
    assert opening.exc_info is not None
    assert "opening node key 'edge' (node 'envoy-1')" in opening.getMessage()
    assert releasing.exc_info is not None
    assert "releasing node key 'edge'" in releasing.getMessage()


def test_a_failing_listener_is_logged_and_the_other_listeners_still_hear_the_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="xds_server")
    cache = SnapshotCache()
    heard: list[frozenset[str]] = []

    def broken(types: frozenset[str]) -> None:
        raise RuntimeError("listener broke")

    cache.add_listener("envoy-1", broken)
    cache.add_listener("envoy-1", heard.append)
    cache.set_snapshot("envoy-1", Snapshot.of([eds_cluster("a")]))

    assert heard == [frozenset({CLUSTER})]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.exc_info is not None
    assert "'envoy-1'" in error.getMessage()
    assert "listener" in error.getMessage()


def test_listeners_of_other_keys_are_not_told() -> None:
    cache = SnapshotCache()
    heard: list[frozenset[str]] = []
    cache.add_listener("envoy-2", heard.append)
    changed = cache.set_snapshot("envoy-1", Snapshot.of([eds_cluster("a")]))
    assert changed == {CLUSTER}
    assert heard == []
    # The same snapshot again changes nothing and tells nobody.
    heard_1: list[frozenset[str]] = []
    cache.add_listener("envoy-1", heard_1.append)
    assert cache.set_snapshot("envoy-1", Snapshot.of([eds_cluster("a")])) == frozenset()
    assert heard_1 == []


def test_resource_updates_create_a_missing_snapshot_and_remove_by_name() -> None:
    cache = SnapshotCache()
    heard: list[frozenset[str]] = []
    cache.add_listener("envoy-1", heard.append)

    # Nothing to add still gives the key a snapshot holding that (empty) type.
    assert not cache.update_resources("envoy-1", CLUSTER)
    created = cache.get("envoy-1")
    assert created is not None
    assert CLUSTER in created.resources
    assert heard == []

    assert cache.update_resources("envoy-1", CLUSTER, [eds_cluster("a"), eds_cluster("b")])
    assert heard == [frozenset({CLUSTER})]
    assert cache.update_resources("envoy-1", CLUSTER, remove=["a"])
    current = cache.get("envoy-1")
    assert current is not None
    assert sorted(current.get(CLUSTER)) == ["b"]
    assert heard == [frozenset({CLUSTER}), frozenset({CLUSTER})]
    # Removing a name that is not there is no change.
    assert not cache.update_resources("envoy-1", CLUSTER, remove=["a"])
    assert len(heard) == 2


def test_clearing_a_key_forgets_its_snapshot_only() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("envoy-2", Snapshot.of([eds_cluster("b")]))
    cache.set_snapshot("envoy-1", Snapshot.of([eds_cluster("a")]))
    assert cache.snapshot_keys() == ["envoy-1", "envoy-2"]
    cache.clear("envoy-1")
    cache.clear("never-there")
    assert cache.get("envoy-1") is None
    assert cache.snapshot_keys() == ["envoy-2"]
