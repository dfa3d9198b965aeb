"""Index resets of one datacenter: every watch starts again from index 0, at once.

Consul's indexes go backwards after a snapshot restore or when its servers restarted without
their data. A blocking query sent with the old, higher index is then held by Consul until writes
push the new index past it or the wait (a minute by default) expires, so changes stop flowing
meanwhile. When a reset is seen -- by the datacenter's probe (:mod:`.probe`) or by any watch
whose own index went backwards -- :meth:`IndexResets.reset` starts a new *generation*: every
blocking read in flight is cut short (:class:`Interrupted`) and every watch reads again without
an index, then blocks on the new, low one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``on_reset(what)``: the datacenter's indexes went backwards (``what`` says where it was seen).
OnReset = Callable[[str], None]


class Interrupted(Exception):
    """A read cut short because the datacenter's indexes were reset: send it again."""


class IndexResets:
    """The reset generation of one datacenter and the blocking reads to cut short on a reset."""

    def __init__(self, datacenter: str = "", on_reset: OnReset | None = None) -> None:
        self.datacenter = datacenter
        self.on_reset = on_reset
        self.generation = 0
        self.count = 0
        self.last: float | None = None  # wall-clock time of the last reset
        self._scopes: set[asyncio.Timeout] = set()

    def went_backwards(self, what: str, previous: int, returned: int) -> None:
        """``what`` answered ``returned`` after ``previous``: reset the datacenter's watches."""
        log.warning(
            "Consul's index went backwards in dc %s (%s: %d → %d): a snapshot restore or a "
            "Consul that lost its state; every watch reads again from index 0 and removals "
            "are held",
            self.datacenter,
            what,
            previous,
            returned,
        )
        self.reset(f"{what}: index {previous} → {returned}")

    def reset(self, what: str) -> None:
        """Start a new generation: blocking reads in flight end with :class:`Interrupted`."""
        self.generation += 1
        self.count += 1
        self.last = time.time()
        scopes, self._scopes = self._scopes, set()
        if scopes:
            now = asyncio.get_running_loop().time()
            for scope in scopes:
                scope.reschedule(now)
        if self.on_reset is not None:
            self.on_reset(what)

    async def interruptible(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, raising :class:`Interrupted` if a reset happens meanwhile."""
        scope = asyncio.timeout(None)
        try:
            async with scope:
                self._scopes.add(scope)
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise Interrupted() from None
            raise
        finally:
            self._scopes.discard(scope)
