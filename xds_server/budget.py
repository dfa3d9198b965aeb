"""Work budgets: how much of the event loop one stream, and all expensive streams together,
may take.

Every stream's request handling and response building runs on the one event loop, so a few
expensive clients (100,000-name subscriptions repeated in a tight loop) would delay everyone
else's changes. Two token buckets of loop time bound them:

* **per stream**: it refills at ``stream_share`` seconds per second up to ``stream_burst``;
  work is charged after it is done, and a stream in debt waits before its next piece of work
  (the reader does not read its next request meanwhile, so gRPC flow control slows the client);
* **the heavy lane**, shared: a stream whose last piece of work took more than
  ``heavy_threshold`` is *heavy* and takes turns (in arrival order) with the other heavy
  streams, which together get at most ``heavy_share`` of the loop. However many expensive
  clients connect, the rest of the loop stays with the cheap streams.

An ordinary Envoy's work is far below both: it is never delayed. Work is measured in loop
time, plus an estimate of decoding the request (which gRPC does before the stream sees it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .limits import Limits

#: Decoding a request, per byte (upb parses a few hundred MB/s): charged with its handling.
DECODE_SECONDS_PER_BYTE = 3e-9


class WorkBudget:
    """Loop time: ``share`` of each second, ``burst`` seconds at once."""

    def __init__(
        self, share: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.share = share
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def charge(self, seconds: float) -> float:
        """Account ``seconds`` of work; returns how long to wait before the next (0: none)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.share)
        self._updated = now
        self._tokens -= seconds
        return -self._tokens / self.share if self._tokens < 0 else 0.0


class HeavyLane:
    """The shared budget of the heavy streams, taken in turns."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = limits.heavy_threshold
        self.budget = WorkBudget(limits.heavy_share, limits.stream_burst, clock)
        self.turns = asyncio.Lock()
        self.waited = 0.0  # seconds heavy streams were held back, all told


class StreamBudget:
    """One stream's budget, and its place in the heavy lane when its work is expensive."""

    def __init__(self, limits: Limits, lane: HeavyLane) -> None:
        self.own = WorkBudget(limits.stream_share, limits.stream_burst)
        self.lane = lane
        self.heavy = False
        self.waited = 0.0  # seconds this stream was held back, all told

    async def turn(self) -> None:
        """Wait until this stream may work (at once for a cheap stream that is not in debt)."""
        wait = self.own.charge(0.0)
        if wait > 0:
            self.waited += wait
            await asyncio.sleep(wait)
        if self.heavy:
            async with self.lane.turns:
                wait = self.lane.budget.charge(0.0)
                if wait > 0:
                    self.waited += wait
                    self.lane.waited += wait
                    await asyncio.sleep(wait)

    def charge(self, seconds: float) -> None:
        """Account a piece of work that took ``seconds``."""
        self.own.charge(seconds)
        self.heavy = seconds > self.lane.threshold
        if self.heavy:
            self.lane.budget.charge(seconds)
