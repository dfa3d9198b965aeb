"""Prometheus metrics: push latency above all, then everything an operator graphs.

Every bridge owns its own :class:`~prometheus_client.CollectorRegistry` (tests run several
bridges in one process). Names follow Prometheus conventions: base units, ``_seconds``,
``_total``.

Push latency is measured from the moment the bridge received the Consul response that carried a
change (the resource's ``origin_time``) to the moment a node ACKed the first version containing
it: one observation per node, type and change. A change first sent in a version the node
rejected is carried over to the next version sent to it. What a stream receives because it just
connected is not a push and is not observed: changes older than the stream, and everything in
its first response of each type (its initial state, including listeners and routes rendered
for it when it connected).

Conventions: no ``_created`` series; ``consul_xds_build_info`` and the standard process, GC and
platform collectors; a Consul contact that never happened is an absent sample, never -1.
"""

from __future__ import annotations

import collections
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from xds_server.resource import SHORT_NAMES
from xds_server.tracking import BaseObserver, ClientRegistry, Nack, StreamInfo

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def _type(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, "other")


#: Changes carried over per stream and type while a node keeps rejecting (the oldest are kept:
#: they are the longest waits).
MAX_CARRIED = 1024


@dataclass
class _InFlight:
    nonce: str = ""
    origins: set[float] = field(default_factory=set)
    carried: set[float] = field(default_factory=set)  # from responses the node rejected

    def carry(self) -> None:
        """The node rejected the response in flight: its changes wait for the next one."""
        carried = self.carried | self.origins
        if len(carried) > MAX_CARRIED:
            carried = set(sorted(carried)[:MAX_CARRIED])
        self.carried = carried
        self.origins = set()


def package_version() -> str:
    """The installed package's version (``0+unknown`` when running from a bare source tree)."""
    try:
        return metadata.version("consul-xds-bridge")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Metrics:
    """All the bridge's metrics, in one registry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, version: str = "") -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide: no _created
        self.clock = clock
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        Info(
            "consul_xds_build", "Version of the bridge and of the Python running it.", registry=r
        ).info({"version": version or "unknown", "python": platform.python_version()})
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
            "Consul HTTP requests by datacenter and outcome (ok, unchanged, error kinds).",
            ["dc", "outcome"],
            registry=r,
        )
        self.consul_connections = Gauge(
            "consul_xds_consul_connections_in_use", "Consul HTTP connections in use.", registry=r
        )
        self.catalog_update_errors = Counter(
            "consul_xds_catalog_update_errors_total",
            "Consul updates the publisher failed to take (what is served may be stale).",
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
        r.register(_LastContactCollector(self))

    def consul_request(self, outcome: str, dc: str = "") -> None:
        """One Consul request to datacenter ``dc`` ("": the local one, labelled ``local``)
        ended with ``outcome`` (``ok`` also counts as contact)."""
        self.consul_requests.labels(dc or "local", outcome).inc()
        if outcome == "ok":
            self.consul_contact()

    def consul_contact(self) -> None:
        self._last_contact = self.clock()

    def seconds_since_contact(self) -> float | None:
        """None until Consul first answered."""
        if self._last_contact is None:
            return None
        return self.clock() - self._last_contact


class _LastContactCollector(Collector):
    """``consul_xds_consul_last_contact_seconds``: no sample until Consul first answered."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "consul_xds_consul_last_contact_seconds",
            "Seconds since the last successful Consul response (absent: never).",
        )
        seconds = self.metrics.seconds_since_contact()
        if seconds is not None:
            family.add_metric([], seconds)
        yield family


class XdsMetricsObserver(BaseObserver):
    """Feeds xDS stream events into :class:`Metrics`.

    Every hook is O(1) in the number of streams: a fleet connecting or a change fanned out to
    thousands of streams must not cost the square of the fleet.
    """

    def __init__(self, metrics: Metrics, registry: ClientRegistry) -> None:
        self.metrics = metrics
        self.registry = registry
        self._inflight: dict[int, dict[str, _InFlight]] = {}  # stream id → type → in flight
        self._opened: dict[int, float] = {}
        self._streams_per_node: collections.Counter[str] = collections.Counter()
        self._by_type: dict[str, tuple[Counter, Counter, Counter, Counter, Histogram]] = {}
        for kind in SHORT_NAMES.values():
            self._children(kind)

    def _children(self, kind: str) -> tuple[Counter, Counter, Counter, Counter, Histogram]:
        """The labelled children of one type (looked up once, not on every event)."""
        found = self._by_type.get(kind)
        if found is None:
            m = self.metrics
            found = self._by_type[kind] = (
                m.responses.labels(kind),
                m.resources_sent.labels(kind),
                m.acks.labels(kind),
                m.nacks.labels(kind),
                m.push_latency.labels(kind),
            )
        return found

    def stream_opened(self, stream: StreamInfo) -> None:
        self._opened[stream.stream_id] = self.metrics.clock()
        self._inflight[stream.stream_id] = {}
        self.metrics.streams.labels(stream.method.lower()).inc()
        self._streams_per_node[stream.node_id] += 1
        self.metrics.connected_clients.set(len(self._streams_per_node))

    def stream_closed(self, stream: StreamInfo) -> None:
        self.metrics.streams.labels(stream.method.lower()).dec()
        self._inflight.pop(stream.stream_id, None)
        self._opened.pop(stream.stream_id, None)
        node_id = stream.node_id
        self._streams_per_node[node_id] -= 1
        if self._streams_per_node[node_id] <= 0:
            del self._streams_per_node[node_id]
        self.metrics.connected_clients.set(len(self._streams_per_node))

    def response_sent(
        self,
        stream: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float],
    ) -> None:
        responses, resources_sent, _, _, _ = self._children(_type(type_url))
        responses.inc()
        resources_sent.inc(resources)
        per_type = self._inflight.setdefault(stream.stream_id, {})
        entry = per_type.get(type_url)
        if entry is None:  # the stream's first response of this type: its initial state
            per_type[type_url] = _InFlight(nonce)
            return
        entry.nonce = nonce
        # Changes older than the stream are its initial state, not a push: not observed.
        opened = self._opened.get(stream.stream_id, float("-inf"))
        entry.origins = {t for t in origin_times if t >= opened} | entry.carried
        entry.carried = set()

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        _, _, acks, _, latency = self._children(_type(type_url))
        acks.inc()
        entry = self._inflight.get(stream.stream_id, {}).get(type_url)
        if entry is None or entry.nonce != nonce:
            return
        now = self.metrics.clock()
        for origin in entry.origins:
            latency.observe(max(0.0, now - origin))
        entry.origins = set()

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None:
        self._children(_type(type_url))[3].inc()
        entry = self._inflight.get(stream.stream_id, {}).get(type_url)
        if entry is not None:
            entry.carry()


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
