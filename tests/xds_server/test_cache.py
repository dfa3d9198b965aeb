"""Snapshot cache and resource versions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.cache import (
    Snapshot,
    SnapshotCache,
    node_key_by_cluster,
    node_key_by_id,
    node_key_by_metadata,
)
from xds_server.resource import CLUSTER, ENDPOINT, ResourceSet, combined_version

VERSIONS_SCRIPT = """
from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.cache import Snapshot
s = Snapshot.of([eds_cluster("a"), eds_cluster("b"), load_assignment("a", [1, 2])])
print(s.version("type.googleapis.com/envoy.config.cluster.v3.Cluster"),
      s.version("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"),
      s.get("type.googleapis.com/envoy.config.cluster.v3.Cluster")["a"].version)
"""


def test_versions_are_content_hashes_stable_across_processes() -> None:
    here = Snapshot.of([eds_cluster("b"), load_assignment("a", [1, 2]), eds_cluster("a")])
    expected = f"{here.version(CLUSTER)} {here.version(ENDPOINT)} {here.get(CLUSTER)['a'].version}"
    for seed in ("0", "12345"):  # hash randomization must not matter
        out = subprocess.run(
            [sys.executable, "-c", VERSIONS_SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).resolve().parents[2],
        )
        assert out.stdout.split() == expected.split()


def test_type_version_depends_on_content_not_order() -> None:
    one = ResourceSet(CLUSTER, [eds_cluster("a"), eds_cluster("b")])
    two = ResourceSet(CLUSTER, [eds_cluster("b"), eds_cluster("a")])
    changed = ResourceSet(CLUSTER, [eds_cluster("a"), eds_cluster("b", connect_timeout_ms=9)])
    assert one.version == two.version
    assert one.version != changed.version
    assert one.version == combined_version((r.name, r.version) for r in one.values())


def test_incremental_update_matches_a_full_rebuild_and_shares_the_rest() -> None:
    original = ResourceSet(ENDPOINT, [load_assignment(n, [1]) for n in "abc"])
    updated = original.with_changes([load_assignment("b", [2])], remove=["c"])
    rebuilt = ResourceSet(ENDPOINT, [load_assignment("a", [1]), load_assignment("b", [2])])
    assert updated.version == rebuilt.version
    assert updated["a"] is original["a"]  # untouched resources are shared, not rebuilt
    assert sorted(original) == ["a", "b", "c"]  # the old set is unchanged


def test_update_of_one_resource_notifies_only_its_type() -> None:
    cache = SnapshotCache()
    seen: list[frozenset[str]] = []
    cache.add_listener("n1", seen.append)
    cache.set_snapshot("n1", Snapshot.of([eds_cluster("a"), load_assignment("a", [1])]))
    before = cache.get("n1")
    assert cache.update_resources("n1", ENDPOINT, [load_assignment("a", [2])])
    after = cache.get("n1")
    assert seen == [frozenset({CLUSTER, ENDPOINT}), frozenset({ENDPOINT})]
    assert before is not None
    assert after is not None
    assert after.get(CLUSTER) is before.get(CLUSTER)
    # The same content again is not a change.
    assert not cache.update_resources("n1", ENDPOINT, [load_assignment("a", [2])])
    assert len(seen) == 2


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate cluster 'a'"):
        ResourceSet(CLUSTER, [eds_cluster("a"), eds_cluster("a", connect_timeout_ms=7)])


def test_node_key_functions_group_envoys() -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"group": "edge"})
    envoy = base_pb2.Node(id="envoy-7", cluster="ingress", metadata=metadata)
    bare = base_pb2.Node(id="envoy-8", cluster="ingress")
    assert node_key_by_id(envoy) == "envoy-7"
    assert node_key_by_cluster(envoy) == node_key_by_cluster(bare) == "ingress"
    by_group = node_key_by_metadata("group")
    assert by_group(envoy) == "edge"
    assert by_group(bare) == "envoy-8"
