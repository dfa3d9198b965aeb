"""``consul_xds_quarantined_config_entries{reason}``: config entries kept out of use."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

METRIC = "consul_xds_quarantined_config_entries"


class QuarantinedEntriesCollector(Collector):
    """Reads the counts by reason (``invalid``, ``conflict``) at scrape time."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            METRIC,
            "Config entries not used: invalid (refused when read) or conflict (a chain that "
            "needs them does not compile; the service keeps its last good routing).",
            labels=["reason"],
        )
        for reason, count in sorted(self.counts().items()):
            family.add_metric([reason], count)
        yield family
