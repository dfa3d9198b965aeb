"""How push latency is counted: per node and change, from Consul's response to the node's ACK."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from bridge.metrics import Metrics, XdsMetricsObserver
from xds_server.resource import ENDPOINT
from xds_server.tracking import ClientRegistry, StreamInfo


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def observations(metrics: Metrics) -> tuple[float, float]:
    """(count, sum) of the endpoint push-latency histogram (0, 0 before any observation)."""
    labels = {"type": "endpoint"}
    get = metrics.registry.get_sample_value
    return (
        get("consul_xds_push_latency_seconds_count", labels) or 0.0,
        get("consul_xds_push_latency_seconds_sum", labels) or 0.0,
    )


def setup() -> tuple[Clock, Metrics, ClientRegistry]:
    clock = Clock()
    metrics = Metrics(clock)
    registry = ClientRegistry()
    registry.add_observer(XdsMetricsObserver(metrics, registry))
    return clock, metrics, registry


def connected(registry: ClientRegistry) -> StreamInfo:
    """A stream that received and ACKed its initial endpoints."""
    stream = registry.open("ADS", base_pb2.Node(id="n1"), "n1", "peer")
    registry.sent(stream, ENDPOINT, "v0", "nonce-0", 1)
    registry.acked(stream, ENDPOINT, "v0", "nonce-0")
    return stream


def test_a_change_is_observed_once_when_the_node_acks_it() -> None:
    clock, metrics, registry = setup()
    stream = connected(registry)
    clock.now = 101.0
    registry.sent(stream, ENDPOINT, "v1", "nonce-1", 1, origin_times=[100.5])
    clock.now = 101.25
    registry.acked(stream, ENDPOINT, "v1", "nonce-1")
    registry.acked(stream, ENDPOINT, "v1", "nonce-1")  # a repeated ACK observes nothing more
    assert observations(metrics) == (1, 0.75)


def test_what_a_new_stream_receives_on_connect_is_not_a_push() -> None:
    _, metrics, registry = setup()
    stream = registry.open("ADS", base_pb2.Node(id="n1"), "n1", "peer")
    registry.sent(stream, ENDPOINT, "v1", "nonce-1", 1, origin_times=[50.0])  # before the stream
    registry.acked(stream, ENDPOINT, "v1", "nonce-1")
    assert observations(metrics) == (0, 0)


def test_a_node_s_first_response_of_a_type_is_not_a_push_even_if_rendered_after_it_connected() -> (
    None
):
    clock, metrics, registry = setup()
    stream = registry.open("ADS", base_pb2.Node(id="n1"), "n1", "peer")
    clock.now = 100.5  # e.g. its listeners, rendered from templates when it connected
    registry.sent(stream, ENDPOINT, "v1", "nonce-1", 1, origin_times=[100.25])
    registry.acked(stream, ENDPOINT, "v1", "nonce-1")
    assert observations(metrics) == (0, 0)


def test_a_rejected_change_is_measured_when_a_later_version_is_acked() -> None:
    clock, metrics, registry = setup()
    stream = connected(registry)
    clock.now = 101.0
    registry.sent(stream, ENDPOINT, "v1", "nonce-1", 1, origin_times=[100.5])
    registry.nacked(stream, ENDPOINT, "v1", "bad")
    registry.sent(stream, ENDPOINT, "v2", "nonce-2", 1, origin_times=[100.75])
    clock.now = 102.0
    registry.acked(stream, ENDPOINT, "v2", "nonce-2")
    assert observations(metrics) == (2, 1.5 + 1.25)
    assert metrics.registry.get_sample_value("consul_xds_nacks_total", {"type": "endpoint"}) == 1
    assert metrics.registry.get_sample_value("consul_xds_connected_clients") == 1
    registry.close(stream)
    assert metrics.registry.get_sample_value("consul_xds_connected_clients") == 0
