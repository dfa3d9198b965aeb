"""The catalog: what the watcher's updates leave the bridge knowing, and what counts as a change."""

from __future__ import annotations

from bridge.catalog import Catalog, ServiceUpdate
from bridge.model import Instance


def instance(service: str, number: int, datacenter: str = "dc1", port: int = 8080) -> Instance:
    return Instance(
        service=service,
        id=f"{service}-{number}",
        node=f"node{number}",
        datacenter=datacenter,
        address=f"10.0.0.{number}",
        port=port,
    )


def present(service: str, *instances: Instance, dc: str = "dc1", at: float = 1.0) -> ServiceUpdate:
    return ServiceUpdate(service, dc, tuple(instances), at)


def gone(service: str, dc: str = "dc1", at: float = 2.0) -> ServiceUpdate:
    return ServiceUpdate(service, dc, None, at)


def test_a_removed_service_is_gone_and_reported_as_changed() -> None:
    catalog = Catalog(["dc1"])
    catalog.apply([present("web", instance("web", 1)), present("api", instance("api", 1))])
    generation = catalog.generation

    assert catalog.apply([gone("web", at=7.5)]) == {"web": 7.5}
    assert "web" not in catalog
    assert catalog.view("web") is None
    assert catalog.names() == ["api"]
    assert [v.name for v in catalog.views()] == ["api"]
    assert catalog.generation > generation
    # Removing what is not there is no change.
    generation = catalog.generation
    assert catalog.apply([gone("web"), gone("never-existed")]) == {}
    assert catalog.generation == generation


def test_a_service_gone_from_one_datacenter_keeps_the_others() -> None:
    catalog = Catalog(["dc1", "dc2"])
    catalog.apply(
        [present("web", instance("web", 1)), present("web", instance("web", 2, "dc2"), dc="dc2")]
    )

    assert catalog.apply([gone("web", dc="dc1")]) == {"web": 2.0}
    view = catalog.view("web")
    assert view is not None
    assert view.instances["dc1"] == ()
    assert [i.id for i in view.instances["dc2"]] == ["web-2"]

    assert catalog.apply([gone("web", dc="dc2")]) == {"web": 2.0}
    assert catalog.view("web") is None


def test_identical_instances_are_no_change_and_a_real_change_is() -> None:
    catalog = Catalog(["dc1"])
    assert catalog.apply([present("web", instance("web", 1))]) == {"web": 1.0}
    assert catalog.apply([present("web", instance("web", 1), at=5.0)]) == {}
    moved = instance("web", 1, port=9090)
    assert catalog.apply([present("web", moved, at=6.0)]) == {"web": 6.0}
    view = catalog.view("web")
    assert view is not None
    assert [i.port for i in view.all_instances()] == [9090]


def test_a_change_is_dated_by_the_earliest_response_carrying_it() -> None:
    catalog = Catalog(["dc1", "dc2"])
    changed = catalog.apply(
        [
            present("web", instance("web", 1), at=4.0),
            present("web", instance("web", 2, "dc2"), dc="dc2", at=3.0),
        ]
    )
    assert changed == {"web": 3.0}


def test_a_service_removed_then_added_again_in_one_batch_is_there() -> None:
    catalog = Catalog(["dc1"])
    catalog.apply([present("web", instance("web", 1))])
    catalog.apply([gone("web"), present("web", instance("web", 3), at=3.0)])
    view = catalog.view("web")
    assert view is not None
    assert [i.id for i in view.all_instances()] == ["web-3"]
