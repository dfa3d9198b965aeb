"""Prometheus metrics: push latency above all, then everything an operator graphs.

Every bridge owns its own :class:`~prometheus_client.CollectorRegistry` (tests run several
bridges in one process). Names follow Prometheus conventions: base units, ``_seconds``,
``_total``.

Push latency is measured from the moment the bridge received the Consul response that carried a
change (the resource's ``origin_time``) to the moment a node ACKed the first version containing
it: one observation per node, type and change. A change first sent in a version the node
rejected is carried over to the next version sent to it. What a stream receives because it just
connected (changes older than the stream) is not a push and is not observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from xds_server.resource import SHORT_NAMES
from xds_server.tracking import BaseObserver, ClientRegistry, Nack, StreamInfo

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def _type(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, "other")


@dataclass
class _InFlight:
    nonce: str = ""
    origins: set[float] = field(default_factory=set)
    carried: set[float] = field(default_factory=set)  # from responses the node rejected


class Metrics:
    """All the bridge's metrics, in one registry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.push_latency = Histogram(
            "consul_xds_push_latency_seconds",
            "Consul response carrying a change → a node ACKs the first version containing it.",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.connected_clients = Gauge(
            "consul_xds_connected_clients",
            "Distinct nodes with at least one xDS stream.",
            registry=r,
        )
        self.streams = Gauge("consul_xds_streams", "Open xDS streams by API.", ["api"], registry=r)
        self.nacks = Counter(
            "consul_xds_nacks_total", "Responses rejected by nodes.", ["type"], registry=r
        )
        self.acks = Counter(
            "consul_xds_acks_total", "Responses accepted by nodes.", ["type"], registry=r
        )
        self.responses = Counter(
            "consul_xds_responses_total", "xDS responses sent.", ["type"], registry=r
        )
        self.resources_sent = Counter(
            "consul_xds_resources_sent_total",
            "Resources sent in xDS responses.",
            ["type"],
            registry=r,
        )
        self.resources = Gauge(
            "consul_xds_resources",
            "Resources currently built from the catalog.",
            ["type"],
            registry=r,
        )
        self.consul_requests = Counter(
            "consul_xds_consul_requests_total",
            "Consul HTTP requests by outcome (ok, unchanged, error kinds).",
            ["outcome"],
            registry=r,
        )
        self.consul_connections = Gauge(
            "consul_xds_consul_connections_in_use", "Consul HTTP connections in use.", registry=r
        )
        self.consul_last_contact = Gauge(
            "consul_xds_consul_last_contact_seconds",
            "Seconds since the last successful Consul response (-1: never).",
            registry=r,
        )
        self.snapshot_build = Histogram(
            "consul_xds_snapshot_build_duration_seconds",
            "Time to rebuild resources and snapshots after a catalog change.",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.catalog_services = Gauge(
            "consul_xds_catalog_services", "Services selected from the Consul catalog.", registry=r
        )
        self._last_contact: float | None = None
        self.consul_last_contact.set_function(self._seconds_since_contact)

    def consul_contact(self) -> None:
        self._last_contact = self.clock()

    def _seconds_since_contact(self) -> float:
        if self._last_contact is None:
            return -1.0
        return self.clock() - self._last_contact


class XdsMetricsObserver(BaseObserver):
    """Feeds xDS stream events into :class:`Metrics`."""

    def __init__(self, metrics: Metrics, registry: ClientRegistry) -> None:
        self.metrics = metrics
        self.registry = registry
        self._inflight: dict[tuple[int, str], _InFlight] = {}
        self._opened: dict[int, float] = {}

    def _nodes_changed(self) -> None:
        self.metrics.connected_clients.set(len({s.node_id for s in self.registry.streams.values()}))

    def stream_opened(self, stream: StreamInfo) -> None:
        self._opened[stream.stream_id] = self.metrics.clock()
        self.metrics.streams.labels(stream.method.lower()).inc()
        self._nodes_changed()

    def stream_closed(self, stream: StreamInfo) -> None:
        self.metrics.streams.labels(stream.method.lower()).dec()
        for key in [k for k in self._inflight if k[0] == stream.stream_id]:
            del self._inflight[key]
        self._opened.pop(stream.stream_id, None)
        self._nodes_changed()

    def response_sent(
        self,
        stream: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float],
    ) -> None:
        kind = _type(type_url)
        self.metrics.responses.labels(kind).inc()
        self.metrics.resources_sent.labels(kind).inc(resources)
        entry = self._inflight.setdefault((stream.stream_id, type_url), _InFlight())
        entry.nonce = nonce
        # Changes older than the stream are its initial state, not a push: not observed.
        opened = self._opened.get(stream.stream_id, float("-inf"))
        entry.origins = {t for t in origin_times if t >= opened} | entry.carried
        entry.carried = set()

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        kind = _type(type_url)
        self.metrics.acks.labels(kind).inc()
        entry = self._inflight.get((stream.stream_id, type_url))
        if entry is None or entry.nonce != nonce:
            return
        now = self.metrics.clock()
        for origin in entry.origins:
            self.metrics.push_latency.labels(kind).observe(max(0.0, now - origin))
        entry.origins = set()

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None:
        self.metrics.nacks.labels(_type(type_url)).inc()
        entry = self._inflight.get((stream.stream_id, type_url))
        if entry is not None:
            entry.carried |= entry.origins
            entry.origins = set()


class TemplateErrorsCollector(Collector):
    """``consul_xds_template_render_errors_total``, read from the template source's counts."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "consul_xds_template_render_errors",
            "Template renders that failed (the node kept its last good config).",
            labels=["template_set"],
        )
        for template_set, count in sorted(self.counts().items()):
            family.add_metric([template_set], count)
        yield family
