"""Calling Consul until it answers: the backoff, the shared early end of backoffs, and the
failure state of one watch.

The policy (as consul-template and envoy-control): every :class:`ConsulError` (5xx, 429, 403,
timeouts, resets, invalid JSON or shapes) is retried forever, ``backoff_base`` doubling per
consecutive failure up to ``backoff_max``, with "equal jitter"; calls of one watch are spaced by
``min_interval``. Each :class:`Retrier` -- one per watch or worker -- keeps its own failure
state in its :class:`WatchStatus`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..consul_settings import ConsulSettings
from .client import ConsulError

log = logging.getLogger(__name__)

T = TypeVar("T")

RECOVERY_PROBE_INTERVAL = 0.5  # how often Consul is asked whether it is back
RECOVERY_SPREAD = 0.2  # woken retries start within this many seconds of each other


@dataclass
class WatchStatus:
    """One watch (or worker) as ``/debug/consul`` shows it, with its failure state."""

    path: str
    datacenter: str
    mode: str
    index: int = 0
    last_change: float | None = None  # wall-clock time of the last change
    last_error: str | None = None
    error_count: int = 0
    failing: int = 0  # consecutive failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dc": self.datacenter,
            "mode": self.mode,
            "index": self.index,
            "last_change": self.last_change,
            "last_error": self.last_error,
            "error_count": self.error_count,
            "failing": self.failing,
        }


def combined(path: str, datacenter: str, mode: str, parts: list[WatchStatus]) -> WatchStatus:
    """Several workers shown as one watch: the sums, the worst streak, the latest values."""
    last_changes = [p.last_change for p in parts if p.last_change is not None]
    errors = [p.last_error for p in parts if p.last_error is not None]
    return WatchStatus(
        path,
        datacenter,
        mode,
        index=max((p.index for p in parts), default=0),
        last_change=max(last_changes, default=None),
        last_error=errors[-1] if errors else None,
        error_count=sum(p.error_count for p in parts),
        failing=max((p.failing for p in parts), default=0),
    )


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """The wait after ``failures`` consecutive failures: ``base`` doubling per failure up to
    ``cap``, "equal jitter" (uniform between half the ceiling and the ceiling)."""
    ceiling = min(cap, base * 2 ** min(max(failures, 1) - 1, 30))
    return random.uniform(ceiling / 2, ceiling)


class Recovery:
    """Ends every watch's backoff as soon as Consul answers again.

    Backoff grows to ``backoff_max`` (a minute) during a long outage; without this, changes made
    just after Consul came back would wait that long. Any successful call, or a prober (the
    watcher's ``/v1/status/leader`` read every ``RECOVERY_PROBE_INTERVAL`` while anything is
    backing off, and each datacenter's :mod:`.probe`), wakes every sleeping retry; they retry
    within ``RECOVERY_SPREAD`` seconds of each other rather than all at once. The agent and the
    local datacenter share one; each failover datacenter has its own, so that the local one
    answering does not end the backoff of a datacenter that cannot be reached.
    """

    def __init__(self) -> None:
        self._recovered = asyncio.Event()
        self.backing_off = asyncio.Event()  # set while at least one retry sleeps
        self.sleepers = 0

    def succeeded(self) -> None:
        if self.sleepers:
            recovered, self._recovered = self._recovered, asyncio.Event()
            recovered.set()

    async def sleep(self, delay: float) -> None:
        recovered = self._recovered
        self.sleepers += 1
        self.backing_off.set()
        try:
            async with asyncio.timeout(delay):
                await recovered.wait()
        except TimeoutError:
            return
        finally:
            self.sleepers -= 1
            if not self.sleepers:
                self.backing_off.clear()
        await asyncio.sleep(random.uniform(0, RECOVERY_SPREAD))


class Retrier:
    """Calls Consul until it answers, for one watch: spacing, backoff, logs, failure state."""

    def __init__(self, settings: ConsulSettings, status: WatchStatus, recovery: Recovery) -> None:
        self.settings = settings
        self.status = status
        self.recovery = recovery
        self._last_call = -1e9

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` until it does not raise :class:`ConsulError`."""
        while True:
            try:
                result = await self._spaced(fn)
            except ConsulError as exc:
                delay = backoff_delay(
                    self.status.failing + 1, self.settings.backoff_base, self.settings.backoff_max
                )
                self._failed(exc, delay)
                await self.recovery.sleep(delay)
                continue
            if self.status.failing:
                log.info(
                    "Consul %s (dc %s) recovered after %d failed attempts",
                    self.status.path,
                    self.status.datacenter,
                    self.status.failing,
                )
                self.status.failing = 0
            self.recovery.succeeded()
            return result

    async def _spaced(self, fn: Callable[[], Awaitable[T]]) -> T:
        delay = self._last_call + self.settings.min_interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._last_call = time.monotonic()
        return await fn()

    def _failed(self, exc: ConsulError, delay: float) -> None:
        status = self.status
        status.error_count += 1
        status.failing += 1
        status.last_error = f"{exc}"[:300]
        # First failure, then every power of two: an outage does not flood the log.
        level = logging.WARNING if status.failing & (status.failing - 1) == 0 else logging.DEBUG
        if exc.kind == "acl_denied":
            log.log(
                level,
                "Consul denied %s (dc %s) with HTTP 403: the ACL token is missing, unknown or "
                "lacks read permission (service:read, node:read): %s; retrying in %.2fs",
                status.path,
                status.datacenter,
                exc,
                delay,
            )
            return
        log.log(
            level,
            "Consul request %s (dc %s) failed (%s attempt(s)): %s; retrying in %.2fs",
            status.path,
            status.datacenter,
            status.failing,
            exc,
            delay,
        )
