"""Consul's /v1/health/service JSON → instances: what is kept, what is refused (and said so),
and how checks add up to an instance's health."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.model import (
    Check,
    Health,
    Instance,
    ServiceView,
    parse_health_service,
    parse_instance,
)


def raw(
    service: dict[str, Any] | None = None,
    node: dict[str, Any] | None = None,
    checks: list[Any] | None = None,
) -> dict[str, Any]:
    """One /v1/health/service element; ``service``/``node`` override single fields."""
    return {
        "Node": {"Node": "node1", "Address": "10.9.9.9", "Datacenter": "dc9", **(node or {})},
        "Service": {"ID": "web-1", "Service": "web", "Address": "10.0.0.1", "Port": 8080}
        | (service or {}),
        "Checks": checks if checks is not None else [],
    }


def check(check_id: str, status: str) -> Check:
    return Check(check_id=check_id, name="", status=status, service_id="")


def test_check_statuses_map_to_health_and_unknown_ones_to_critical() -> None:
    assert check("service:web-1", "passing").health == Health.PASSING
    assert check("service:web-1", "warning").health == Health.WARNING
    assert check("service:web-1", "critical").health == Health.CRITICAL
    assert check("service:web-1", "maintenance").health == Health.CRITICAL
    assert check("service:web-1", "").health == Health.CRITICAL


def test_maintenance_checks_mean_maintenance_whatever_their_status() -> None:
    assert check("_node_maintenance", "passing").health == Health.MAINTENANCE
    assert check("_service_maintenance:web-1", "passing").health == Health.MAINTENANCE
    assert check("node_maintenance", "passing").health == Health.PASSING  # not the reserved id
    assert check("x_service_maintenance:web-1", "passing").health == Health.PASSING


def test_the_worst_check_decides_and_no_check_means_passing() -> None:
    def instance(*checks: Check) -> Instance:
        return Instance("web", "web-1", "node1", "dc1", "10.0.0.1", 80, checks=checks)

    assert instance().health == Health.PASSING
    assert instance(check("a", "passing"), check("b", "warning")).health == Health.WARNING
    assert (
        instance(check("a", "critical"), check("b", "warning"), check("c", "passing")).health
        == Health.CRITICAL
    )
    assert instance(check("a", "critical"), check("_node_maintenance", "passing")).health == (
        Health.MAINTENANCE
    )


def test_an_entry_becomes_an_instance_with_every_field() -> None:
    entry = raw(
        service={
            "Tags": ["v1", "canary"],
            "Meta": {"zone": "a", "empty": None, "version": 2},
            "Weights": {"Passing": 10, "Warning": 3},
        },
        checks=[
            {
                "CheckID": "service:web-1",
                "Name": "HTTP",
                "Status": "warning",
                "ServiceID": "web-1",
                "Output": "slow",
            },
            {"CheckID": "serfHealth", "Status": "passing", "ServiceID": None, "Output": None},
            "not a check",
        ],
    )
    instance = parse_instance(entry, "dc1")
    assert instance == Instance(
        service="web",
        id="web-1",
        node="node1",
        datacenter="dc1",
        address="10.0.0.1",
        port=8080,
        tags=("v1", "canary"),
        meta=(("empty", ""), ("version", "2"), ("zone", "a")),
        weight_passing=10,
        weight_warning=3,
        checks=(
            Check("service:web-1", "HTTP", "warning", "web-1", "slow"),
            Check("serfHealth", "", "passing", "", ""),
        ),
    )
    assert instance.meta_dict == {"empty": "", "version": "2", "zone": "a"}
    assert instance.health == Health.WARNING


def test_missing_optional_fields_get_their_defaults() -> None:
    entry = raw()
    del entry["Checks"]
    del entry["Service"]["ID"]
    del entry["Service"]["Port"]
    del entry["Node"]["Node"]
    instance = parse_instance(entry)
    assert instance.id == "web"  # Consul's ID defaults to the service name
    assert instance.port == 0
    assert instance.node == ""
    assert instance.datacenter == "dc9"  # from the node when the caller does not say
    assert (instance.tags, instance.meta, instance.checks) == ((), (), ())
    assert (instance.weight_passing, instance.weight_warning) == (1, 1)
    del entry["Node"]["Datacenter"]
    assert parse_instance(entry).datacenter == ""


def test_weights_and_tags_of_the_wrong_type_fall_back() -> None:
    weights: Any
    for weights in (None, [], {"Passing": "5", "Warning": True}, {"Warning": 2.5}):
        instance = parse_instance(raw(service={"Weights": weights}))
        assert (instance.weight_passing, instance.weight_warning) == (1, 1)
    assert parse_instance(raw(service={"Weights": {"Warning": 0}})).weight_warning == 0
    assert parse_instance(raw(service={"Tags": 7})).tags == ()
    assert parse_instance(raw(service={"Tags": None})).tags == ()
    assert parse_instance(raw(service={"Meta": ["a"]})).meta == ()


def test_the_service_address_wins_and_the_node_address_is_the_fallback() -> None:
    assert parse_instance(raw()).address == "10.0.0.1"
    assert parse_instance(raw(service={"Address": ""})).address == "10.9.9.9"
    assert parse_instance(raw(service={"Address": None})).address == "10.9.9.9"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"Node": ["node1"], "Service": {}}, "health entry without Node/Service objects"),
        ({"Node": {}, "Service": "web"}, "health entry without Node/Service objects"),
        (raw(service={"Service": ""}), "health entry without Service.Service"),
        (raw(service={"Service": 5}), "health entry without Service.Service"),
        (raw(service={"Address": ""}, node={"Address": ""}), "'web-1' of 'web' has no address"),
        (raw(service={"Address": 7}), "instance 'web-1' of 'web' has no address"),
        (raw(service={"Port": 70000}), "instance 'web-1' of 'web' has invalid port 70000"),
        (raw(service={"Port": -1}), "instance 'web-1' of 'web' has invalid port -1"),
        (raw(service={"Port": "80"}), "instance 'web-1' of 'web' has invalid port '80'"),
        (raw(service={"Port": True}), "instance 'web-1' of 'web' has invalid port True"),
    ],
)
def test_an_unusable_entry_is_refused_naming_the_problem(
    entry: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_instance(entry)


def test_the_edges_of_the_port_range_are_valid() -> None:
    assert parse_instance(raw(service={"Port": 65535})).port == 65535
    with pytest.raises(ValueError, match="invalid port 65536"):
        parse_instance(raw(service={"Port": 65536}))
    assert parse_instance(raw(service={"Port": None})).port == 0


def test_a_body_keeps_what_it_can_use_sorted_and_says_what_it_skipped() -> None:
    body = [
        raw(service={"ID": "web-2"}, node={"Node": "node2"}),
        "garbage",
        raw(service={"Port": 99999}),
        raw(service={"ID": "web-9"}, node={"Node": "node1"}),
        raw(service={"ID": "web-1"}, node={"Node": "node1"}),
    ]
    instances, problems = parse_health_service(body, "dc1")
    assert [(i.node, i.id) for i in instances] == [
        ("node1", "web-1"),
        ("node1", "web-9"),
        ("node2", "web-2"),
    ]
    assert {i.datacenter for i in instances} == {"dc1"}
    assert problems == [
        "skipped a non-object entry: 'garbage'",
        "skipped an instance: instance 'web-1' of 'web' has invalid port 99999",
    ]


def test_a_body_that_is_not_a_list_is_one_problem() -> None:
    assert parse_health_service({"web": []}) == ((), ["expected a JSON array, got dict"])
    assert parse_health_service(None) == ((), ["expected a JSON array, got NoneType"])


def test_a_view_lists_instances_in_failover_order_and_every_tag_once() -> None:
    local = Instance("web", "web-1", "n1", "dc1", "10.0.0.1", 80, tags=("v2", "a"))
    remote = Instance("web", "web-2", "n2", "dc2", "10.0.0.2", 80, tags=("v1", "a"))
    view = ServiceView("web", ("dc1", "dc2", "dc3"), {"dc2": (remote,), "dc1": (local,)})
    assert list(view.all_instances()) == [local, remote]
    assert view.tags == ("a", "v1", "v2")
    assert ServiceView("web", ("dc1",)).tags == ()


def test_a_check_missing_its_fields_keeps_empty_ones_and_counts_as_critical() -> None:
    instance = parse_instance(raw(checks=[{"Status": "passing"}, {"CheckID": "disk"}]))
    assert instance.checks == (
        Check("", "", "passing", "", ""),
        Check("disk", "", "", "", ""),
    )
    assert instance.health == Health.CRITICAL  # a check without a status is not passing
