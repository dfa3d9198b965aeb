"""Prometheus metrics of the datacenters, read from the watcher when scraped.

* ``consul_xds_datacenter_reachable{dc}``: 1 while the datacenter answers the bridge's probe.
* ``consul_xds_mass_removal_held{dc}``: services whose removal the guard holds (0: none).
* ``consul_xds_mass_removal_holds_total{dc}``: removals the guard began to hold.
* ``consul_xds_consul_index_resets_total{dc}``: times the datacenter's index went backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .watcher import Watched


class DatacenterCollector(Collector):
    """The metrics above for every watched datacenter (none before the agent was read)."""

    def __init__(self, watched: Callable[[], Sequence[Watched]]) -> None:
        self.watched = watched

    def collect(self) -> Iterator[Metric]:
        reachable = GaugeMetricFamily(
            "consul_xds_datacenter_reachable",
            "1 while the datacenter answers the bridge's probe; 0 when it cannot be read "
            "(what was read from it stays served).",
            labels=["dc"],
        )
        held = GaugeMetricFamily(
            "consul_xds_mass_removal_held",
            "Services whose removal the mass-removal guard holds back (0: none).",
            labels=["dc"],
        )
        holds = CounterMetricFamily(
            "consul_xds_mass_removal_holds",
            "Removals the mass-removal guard began to hold.",
            labels=["dc"],
        )
        resets = CounterMetricFamily(
            "consul_xds_consul_index_resets",
            "Times the datacenter's Consul index went backwards (restore, lost state).",
            labels=["dc"],
        )
        for watched in self.watched():
            labels = [watched.name]
            reachable.add_metric(labels, 1.0 if watched.probe.state.reachable else 0.0)
            held.add_metric(labels, watched.guard.held_services)
            holds.add_metric(labels, watched.guard.holds_total)
            resets.add_metric(labels, watched.resets.count)
        yield from (reachable, held, holds, resets)
