"""Work budgets: a stream that uses more than its share of the loop waits; cheap streams never
do; expensive streams share one lane however many there are (a fake clock, no waiting)."""

from __future__ import annotations

import pytest

from xds_server.budget import HeavyLane, StreamBudget, WorkBudget
from xds_server.limits import Limits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_work_within_the_share_never_waits() -> None:
    clock = Clock()
    budget = WorkBudget(share=0.1, burst=0.25, clock=clock)
    for _ in range(1000):  # 1 ms of work every 100 ms: 1 % of the loop
        assert budget.charge(0.001) == 0.0
        clock.now += 0.1


def test_work_beyond_the_burst_waits_for_its_share() -> None:
    clock = Clock()
    budget = WorkBudget(share=0.1, burst=0.25, clock=clock)
    assert budget.charge(0.2) == 0.0  # within the burst
    assert budget.charge(0.1) == pytest.approx(0.5)  # 50 ms over: 0.5 s at 10 % a second
    clock.now += 0.5
    assert budget.charge(0.0) == pytest.approx(0.0)  # paid


def test_expensive_streams_share_one_lane() -> None:
    limits = Limits(heavy_threshold=0.002, heavy_share=0.25, stream_share=1.0)
    lane = HeavyLane(limits, clock=Clock())
    streams = [StreamBudget(limits, lane) for _ in range(8)]
    for stream in streams:
        stream.charge(0.05)  # 50 ms each: heavy
    assert all(s.heavy for s in streams)
    # 400 ms of work against a 250 ms burst: 150 ms over, paid at 25 % of each second
    assert lane.budget.charge(0.0) == pytest.approx(0.6)
    cheap = StreamBudget(limits, lane)
    cheap.charge(0.0005)
    assert not cheap.heavy  # a cheap stream never queues in the lane
