"""The metrics follow Prometheus conventions: build info, process and GC collectors, no
``_created`` series, a datacenter label on Consul requests, no -1 for "never"."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_build_info_and_the_process_gc_and_platform_collectors_are_exposed() -> None:
    metrics = Metrics(version="1.2.3")
    text = exposition(metrics)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (build,) = families["consul_xds_build_info"].samples
    assert build.name == "consul_xds_build_info"
    assert build.value == 1
    assert build.labels["version"] == "1.2.3"
    assert build.labels["python"]
    for name in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "python_gc_collections",
        "python_info",
    ):
        assert name in families, name


def test_no_series_has_a_created_twin() -> None:
    metrics = Metrics()
    metrics.consul_request("ok", "dc1")
    metrics.nacks.labels("cluster").inc()
    metrics.push_latency.labels("endpoint").observe(0.01)
    assert "_created" not in exposition(metrics)


def test_consul_requests_are_counted_per_datacenter_and_outcome() -> None:
    metrics = Metrics()
    metrics.consul_request("ok", "dc1")
    metrics.consul_request("timeout", "dc2")
    get = metrics.registry.get_sample_value
    assert get("consul_xds_consul_requests_total", {"dc": "dc1", "outcome": "ok"}) == 1
    assert get("consul_xds_consul_requests_total", {"dc": "dc2", "outcome": "timeout"}) == 1


def test_last_contact_is_absent_until_consul_answers_then_counts_seconds() -> None:
    clock = Clock()
    metrics = Metrics(clock)
    name = "consul_xds_consul_last_contact_seconds"
    assert metrics.registry.get_sample_value(name) is None
    assert f"# TYPE {name} gauge" in exposition(metrics)  # the family is there, without a sample
    metrics.consul_request("timeout", "dc1")
    assert metrics.registry.get_sample_value(name) is None
    metrics.consul_request("ok", "dc1")
    clock.now = 102.5
    assert metrics.registry.get_sample_value(name) == 2.5
