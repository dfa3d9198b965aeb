"""Resources and resource sets: versions that depend on content only, the placeholders answered
for names that do not exist, and the errors that name what is wrong."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2

from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.resource import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    Resource,
    ResourceSet,
    combined_version,
    content_hash,
    empty_resource,
    make_resource,
)

OTHER_TYPE = "type.googleapis.com/example.Unknown"


def cluster_with_metadata(keys: list[str]) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name="web")
    for key in keys:
        cluster.metadata.filter_metadata[key].update({"value": key})
    return cluster


def test_a_version_does_not_depend_on_the_order_map_entries_were_set_in() -> None:
    keys = [f"meta-{i}" for i in range(20)]
    forward = make_resource(cluster_with_metadata(keys))
    backward = make_resource(cluster_with_metadata(list(reversed(keys))))
    assert forward.version == backward.version
    assert forward.packed.value == backward.packed.value  # what every stream sends


def test_versions_are_64_bit_hex_digests() -> None:
    versions = [
        content_hash(b"payload"),
        make_resource(cluster_pb2.Cluster(name="web")).version,
        ResourceSet(CLUSTER, [eds_cluster("a")]).version,
        combined_version([("a", "1")]),
    ]
    for version in versions:
        assert len(version) == 16
        int(version, 16)  # hex, or this raises
    assert content_hash(b"payload") != content_hash(b"payload!")


def test_a_resource_keeps_the_time_of_the_change_that_produced_it() -> None:
    resource = make_resource(cluster_pb2.Cluster(name="web"), origin_time=12.5)
    assert resource.origin_time == 12.5
    assert make_resource(cluster_pb2.Cluster(name="web")).origin_time is None
    # ... which is not part of its content.
    assert resource == make_resource(cluster_pb2.Cluster(name="web"))


def test_placeholders_for_names_that_do_not_exist_are_empty_and_named() -> None:
    endpoints = empty_resource(ENDPOINT, "web")
    assert (endpoints.type_url, endpoints.name) == (ENDPOINT, "web")
    assert endpoints.message == endpoint_pb2.ClusterLoadAssignment(cluster_name="web")
    routes = empty_resource(ROUTE, "ingress")
    assert (routes.type_url, routes.name) == (ROUTE, "ingress")
    assert routes.message == route_pb2.RouteConfiguration(name="ingress")
    with pytest.raises(ValueError, match=f"no empty placeholder for {LISTENER}"):
        empty_resource(LISTENER, "ingress")


def test_a_set_refuses_a_resource_of_another_type_naming_it() -> None:
    message = f"resource 'a' is a {CLUSTER}, not a {ENDPOINT}"
    with pytest.raises(ValueError, match=message):
        ResourceSet(ENDPOINT, [eds_cluster("a")])
    with pytest.raises(ValueError, match=message):
        ResourceSet(ENDPOINT).with_changes([eds_cluster("a")])


def test_a_duplicate_of_a_type_without_a_short_name_is_named_by_its_url() -> None:
    cluster = make_resource(cluster_pb2.Cluster(name="a"))
    unknown = Resource(OTHER_TYPE, "a", cluster.message, cluster.packed, "1")
    with pytest.raises(ValueError, match=f"duplicate {OTHER_TYPE} 'a'"):
        ResourceSet(OTHER_TYPE, [unknown, unknown])


def test_a_set_reads_like_a_mapping() -> None:
    resources = ResourceSet(CLUSTER, [eds_cluster("a"), eds_cluster("b")])
    marker = object()
    assert resources.get("missing", marker) is marker
    assert resources.get("missing") is None
    assert resources.get("a") is resources["a"]
    assert "a" in resources
    assert "missing" not in resources
    assert sorted(resources) == ["a", "b"]
    assert len(resources) == 2
    assert repr(resources) == "ResourceSet(cluster, n=2)"
    assert repr(ResourceSet(OTHER_TYPE)) == f"ResourceSet({OTHER_TYPE}, n=0)"


def test_changes_remove_names_that_are_absent_without_complaint() -> None:
    resources = ResourceSet(ENDPOINT, [load_assignment("a", [1])])
    unchanged = resources.with_changes(remove=["never-there"])
    assert unchanged.version == resources.version
    assert sorted(unchanged) == ["a"]


def test_an_unchanged_resource_in_an_update_does_not_hide_the_ones_after_it() -> None:
    resources = ResourceSet(ENDPOINT, [load_assignment("a", [1]), load_assignment("b", [1])])
    updated = resources.with_changes([load_assignment("a", [1]), load_assignment("b", [2])])
    assert updated["a"] is resources["a"]  # same content: the old resource is kept
    assert updated["b"].version == load_assignment("b", [2]).version
    rebuilt = ResourceSet(ENDPOINT, [load_assignment("a", [1]), load_assignment("b", [2])])
    assert updated.version == rebuilt.version
