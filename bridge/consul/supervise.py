"""Watch tasks that never stay dead: a crash is logged at ERROR and the task starts again.

Consul errors are retried inside a watch (:mod:`.retry`); what reaches here is a bug or an
unexpected body that slipped past validation. Leaving the task dead would freeze that part of
the catalog silently, so it is restarted after a backoff (the same doubling as for Consul
errors; the count starts over once a run outlived ``backoff_max``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ..consul_settings import ConsulSettings
from .retry import backoff_delay

log = logging.getLogger(__name__)

Run = Callable[[], Awaitable[None]]


async def supervise(name: str, run: Run, settings: ConsulSettings) -> None:
    """``await run()`` until it returns or is cancelled, restarting it after every crash."""
    crashes = 0
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except Exception:
            if time.monotonic() - started > settings.backoff_max:
                crashes = 0
            crashes += 1
            delay = backoff_delay(crashes, settings.backoff_base, settings.backoff_max)
            log.exception(
                "Consul watch task %s crashed (%d time(s) in a row); restarting in %.2fs",
                name,
                crashes,
                delay,
            )
        await asyncio.sleep(delay)


def spawn(name: str, run: Run, settings: ConsulSettings) -> asyncio.Task[None]:
    """A supervised task named ``name``."""
    return asyncio.create_task(supervise(name, run, settings), name=name)
