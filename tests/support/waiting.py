"""Bounded waiting for conditions that have no event to await (e.g. an external Envoy's state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``accept`` holds for its result; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
            if accept(last):
                return last
        except Exception as exc:  # the probe's target may not be up yet
            last_error = exc
        await asyncio.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}; last value: {last!r:.2000}"
        + (f"; last error: {last_error!r}" if last_error else "")
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll a plain (synchronous) condition until it holds."""

    async def probe() -> bool:
        return condition()

    await eventually(probe, timeout=timeout, what=what or "condition")
