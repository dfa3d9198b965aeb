"""A node that keeps rejecting while changes keep coming holds a bounded number of them."""

from __future__ import annotations

import pytest

from bridge.metrics import MAX_CARRIED
from tests.bridge_ops.test_push_latency import connected, observations, setup
from xds_server import ENDPOINT


def test_changes_carried_over_rejections_are_capped_keeping_the_longest_waits() -> None:
    clock, metrics, registry = setup()
    stream = connected(registry)
    changes = [100.0 + n / 1000 for n in range(3 * MAX_CARRIED)]
    for number, origin in enumerate(changes):
        registry.sent(stream, ENDPOINT, f"v{number}", f"nonce-{number}", 1, origin_times=[origin])
        registry.nacked(stream, ENDPOINT, f"v{number}", "rejected")
    registry.sent(stream, ENDPOINT, "good", "nonce-good", 1, origin_times=[110.0])
    clock.now = 111.0
    registry.acked(stream, ENDPOINT, "good", "nonce-good")

    count, total = observations(metrics)
    assert count == MAX_CARRIED + 1
    oldest = changes[:MAX_CARRIED]
    assert total == pytest.approx(sum(111.0 - t for t in oldest) + 1.0)
