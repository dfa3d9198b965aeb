"""Bounded task shutdown: every stop path ends within a known time, even if a task misbehaves.

A task that swallows its cancellation (Python 3.11's ``asyncio.wait_for`` could, when the inner
call finished at the same moment) must not hang a bridge that was asked to stop: it is reported
at ERROR with its name and stack, and left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_TIMEOUT = 5.0


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object]], timeout: float = STOP_TIMEOUT
) -> list[asyncio.Task[object]]:
    """Cancel ``tasks`` and wait up to ``timeout`` seconds for them to end.

    Returns the tasks that did not end (each logged at ERROR). Exceptions the tasks raise while
    ending are not re-raised here: they were already reported by whoever owns the task.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return []
    _, still = await asyncio.wait(pending, timeout=timeout)
    for task in still:
        stack = "".join(f"\n  {frame}" for frame in task.get_stack(limit=3))
        log.error(
            "task %s did not end within %gs of being cancelled; leaving it behind%s",
            task.get_name(),
            timeout,
            stack,
        )
    return list(still)


async def within(awaitable: Awaitable[T], timeout: float) -> T:
    """``await awaitable`` for at most ``timeout`` seconds (TimeoutError after).

    The project's replacement for ``asyncio.wait_for``, which is banned here (ruff TID251): on
    Python 3.11 it can swallow a cancellation; ``asyncio.timeout`` cannot.
    """
    async with asyncio.timeout(timeout):
        return await awaitable
