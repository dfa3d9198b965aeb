"""The validation gate together with template safety and config entries chains: a render the gate
refuses for a node key that never had a good one withholds CDS/LDS/RDS like a failed render;
chains see the served catalog; a chain's cluster that breaks a rule keeps its served version;
``/debug/quarantine`` also lists the config entries kept out of use."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2

from bridge import debug
from bridge.catalog import Catalog
from bridge.config_entries import ConfigEntriesUpdate
from bridge.model import ServiceView
from bridge.publisher import Publisher
from tests.bridge.test_quarantine import NODE, BadPort, gauge, published, watched
from tests.chains.test_publishing import started
from tests.templates.support import envoy_node, instance, updates
from tests.traffic.helpers import VERSIONED, defaults, resolver
from xds_server import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, SnapshotCache
from xds_server.resource import make_resource


async def test_a_refused_first_render_withholds_cds_lds_rds_like_a_failed_render() -> None:
    renders = BadPort()
    renders.port = 70000  # Envoy would reject it: the gate refuses the render
    publisher, cache = watched(renders)
    published(publisher, updates(instance("web", 1)))
    publisher.mark_ready()
    snapshot = cache.get(NODE)
    assert snapshot is not None
    assert snapshot.withheld == {CLUSTER, LISTENER, ROUTE}  # not an empty LDS
    assert list(snapshot.get(ENDPOINT)) == ["web"]  # endpoints still flow
    assert NODE in publisher.refused_renders

    renders.port = 10001
    publisher.republish()
    snapshot = cache.get(NODE)
    assert snapshot is not None
    assert snapshot.withheld == frozenset()
    assert list(snapshot.get(LISTENER)) == ["ingress"]
    assert list(snapshot.get(CLUSTER)) == ["web"]
    assert NODE not in publisher.refused_renders


@dataclass(frozen=True)
class Changes:
    clusters: Sequence[Resource] = ()
    endpoints: Sequence[Resource] = ()
    remove_clusters: Sequence[str] = ()
    remove_endpoints: Sequence[str] = ()
    names_changed: bool = False


class FakeTraffic:
    """A traffic source adding ``clusters`` to the shared set; remembers the catalogs seen."""

    def __init__(self) -> None:
        self.clusters: list[Resource] = []
        self.seen: list[ServiceView | None] = []

    def set_entries(self, update: ConfigEntriesUpdate) -> bool:
        return True

    def rebuild(self, changed: Mapping[str, float], catalog: Catalog) -> Changes:
        self.seen.append(catalog.view("web"))
        return Changes(clusters=tuple(self.clusters), names_changed=bool(self.clusters))


def chain_cluster(name: str, timeout_seconds: int) -> Resource:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.connect_timeout.seconds = timeout_seconds
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    return make_resource(cluster)


def with_traffic() -> tuple[Publisher, SnapshotCache, FakeTraffic]:
    traffic = FakeTraffic()
    cache = SnapshotCache()
    publisher = Publisher(cache, debounce=0, traffic=traffic)
    cache.watch(envoy_node(NODE), lambda types: None)
    publisher.set_datacenters(["dc1"])
    return publisher, cache, traffic


def timeout_of(publisher: Publisher, name: str) -> int:
    message = publisher.clusters[name].message
    assert isinstance(message, cluster_pb2.Cluster)
    return int(message.connect_timeout.seconds)


async def test_a_chain_cluster_breaking_a_rule_keeps_its_served_version() -> None:
    publisher, _cache, traffic = with_traffic()
    traffic.clusters = [chain_cluster("web~v1", 5), chain_cluster("web", 7)]
    published(publisher, updates(instance("web", 1)))
    publisher.mark_ready()
    assert (timeout_of(publisher, "web~v1"), timeout_of(publisher, "web")) == (5, 7)

    traffic.clusters = [chain_cluster("web~v1", -1), chain_cluster("web", -1)]
    published(publisher, updates(instance("web", 1), instance("web", 2)))
    # The served versions stay: not the bad chain version, nor the plain one built before it.
    assert (timeout_of(publisher, "web~v1"), timeout_of(publisher, "web")) == (5, 7)
    assert gauge(publisher.quarantine) == {("cluster", "invalid"): 2}
    view = debug.quarantine_view(publisher.quarantine)
    scopes = {e["scopes"][0] for e in view["entries"]}
    assert scopes == {"chain:cluster:web~v1", "chain:cluster:web"}
    assert all("connect_timeout" in e["rule"] for e in view["entries"])

    traffic.clusters = [chain_cluster("web~v1", 3), chain_cluster("web", 5)]  # fixed
    published(publisher, updates(instance("web", 1)))
    assert (timeout_of(publisher, "web~v1"), timeout_of(publisher, "web")) == (3, 5)
    assert len(publisher.quarantine) == 0


async def test_chains_see_the_served_catalog_not_a_quarantined_service() -> None:
    publisher, _cache, traffic = with_traffic()
    published(publisher, updates(instance("web", 1)))
    publisher.mark_ready()
    heavy = [dataclasses.replace(instance("web", n), weight_passing=2**31) for n in (1, 2)]
    published(publisher, updates(*heavy))  # the gate quarantines web: its last good is served
    assert gauge(publisher.quarantine) == {("endpoint", "invalid"): 1}
    assert traffic.seen[-1] == publisher.served.view("web") != publisher.catalog.view("web")


async def test_debug_quarantine_lists_the_config_entries_kept_out_of_use() -> None:
    h = await started()
    missing = {"Weight": 100, "ServiceSubset": "v9"}
    splitter = {"Kind": "service-splitter", "Name": "web", "Splits": [missing]}
    h.entries(defaults("web"), resolver("web", Subsets=VERSIONED), splitter)
    view = debug.quarantine_view(h.publisher.quarantine, None, h.traffic.quarantined_view())
    (problem,) = view["config_entries"]["conflict"]["web"]
    assert (problem["kind"], problem["field"]) == ("service-splitter", "Splits[0]")
    assert view["config_entries"]["invalid"] == []
    assert h.traffic.quarantined_counts() == {"invalid": 0, "conflict": 1}
