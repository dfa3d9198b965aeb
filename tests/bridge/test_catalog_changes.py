"""The catalog's failover order and its change reports: what the publisher rebuilds after each
batch of Consul updates."""

from __future__ import annotations

import time

from bridge.catalog import Catalog, ServiceUpdate
from bridge.model import Instance


def instance(service: str, number: int, datacenter: str = "dc1") -> Instance:
    return Instance(service, f"{service}-{number}", f"n{number}", datacenter, "10.0.0.1", 80)


def test_changing_the_failover_order_changes_every_service_once() -> None:
    catalog = Catalog(["dc1", "dc2"])
    catalog.apply(
        [
            ServiceUpdate("web", "dc1", (instance("web", 1),), 1.0),
            ServiceUpdate("api", "dc2", (instance("api", 1, "dc2"),), 1.0),
        ]
    )
    generation = catalog.generation
    assert catalog.set_datacenters(["dc1", "dc2", "dc1"]) == set()  # the same order again
    assert catalog.generation == generation
    assert catalog.set_datacenters(["dc2", "dc1", "dc2"]) == {"web", "api"}
    assert catalog.datacenters == ("dc2", "dc1")
    assert catalog.generation == generation + 1


def test_a_view_follows_the_failover_order_then_other_datacenters_by_name() -> None:
    catalog = Catalog(["dc2", "dc1"])
    catalog.apply(
        [
            ServiceUpdate("web", "dc1", (instance("web", 1),)),
            ServiceUpdate("web", "zz", (instance("web", 3, "zz"),)),
            ServiceUpdate("web", "aa", (instance("web", 2, "aa"),)),
        ]
    )
    view = catalog.view("web")
    assert view is not None
    assert view.datacenters == ("dc2", "dc1", "aa", "zz")
    assert view.instances["dc2"] == ()  # not in the local datacenter: no instances there
    assert [i.id for i in view.all_instances()] == ["web-1", "web-2", "web-3"]


def test_the_catalog_counts_and_lists_services_by_name() -> None:
    catalog = Catalog(["dc1"])
    assert len(catalog) == 0
    catalog.apply([ServiceUpdate(n, "dc1", (instance(n, 1),)) for n in ("web", "api", "db")])
    assert len(catalog) == 3
    assert catalog.names() == ["api", "db", "web"]
    assert [v.name for v in catalog.views()] == ["api", "db", "web"]
    assert "api" in catalog
    assert "cache" not in catalog


def test_a_service_with_no_instances_is_a_service() -> None:
    catalog = Catalog(["dc1"])
    assert catalog.apply([ServiceUpdate("web", "dc1", (), 3.0)]) == {"web": 3.0}
    assert "web" in catalog
    assert catalog.apply([ServiceUpdate("web", "dc1", (), 4.0)]) == {}


def test_a_change_without_a_response_time_is_dated_now() -> None:
    catalog = Catalog(["dc1"])
    before = time.monotonic()
    changed = catalog.apply([ServiceUpdate("web", "dc1", (instance("web", 1),))])
    after = time.monotonic()
    assert before <= changed["web"] <= after


def test_a_batch_reports_each_changed_service_with_its_earliest_change() -> None:
    catalog = Catalog(["dc1"])
    changed = catalog.apply(
        [
            ServiceUpdate("web", "dc1", (instance("web", 1),), 5.0),
            ServiceUpdate("web", "dc1", (instance("web", 2),), 4.0),
            ServiceUpdate("web", "dc1", (instance("web", 3),), 6.0),
            ServiceUpdate("api", "dc1", (instance("api", 1),), 7.0),
        ]
    )
    assert changed == {"web": 4.0, "api": 7.0}
    view = catalog.view("web")
    assert view is not None
    assert [i.id for i in view.all_instances()] == ["web-3"]  # the last update wins
    generation = catalog.generation
    assert catalog.apply([]) == {}
    assert catalog.generation == generation


def test_updates_that_change_nothing_do_not_hide_the_ones_after_them() -> None:
    catalog = Catalog(["dc1"])
    catalog.apply([ServiceUpdate("web", "dc1", (instance("web", 1),), 1.0)])
    changed = catalog.apply(
        [
            ServiceUpdate("never-there", "dc1", None, 2.0),
            ServiceUpdate("web", "dc1", (instance("web", 1),), 3.0),
            ServiceUpdate("api", "dc1", (instance("api", 1),), 4.0),
        ]
    )
    assert changed == {"api": 4.0}
