"""Retrying what failed to publish: exponential backoff, and how failures are logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

log = logging.getLogger("bridge.publisher")


def log_failure(again: bool, exc: Exception, what: str, name: str) -> None:
    """The first failure with its traceback; a repeated one in one line, at every retry."""
    if again:
        log.error(what + " again, retrying: %r", name, exc)
    else:
        log.exception(what + "; it is served as it was and retried", name)


def some(names: Iterable[str], shown: int = 5) -> str:
    """``a, b, c and 7 more``: a bounded list of names for a message."""
    ordered = sorted(names)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more


class Retry:
    """Calls ``attempt`` again with exponential backoff while it reports failures."""

    FIRST = 0.1
    MAX = 10.0

    def __init__(self, attempt: Callable[[], bool]) -> None:
        self._attempt = attempt
        self._delay = self.FIRST
        self._handle: asyncio.TimerHandle | None = None
        self._running = False

    def schedule(self) -> None:
        """Try again after the current delay (no-op when already due, or when no event loop
        runs: the next publish tries again then)."""
        if self._handle is not None or self._running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._handle = loop.call_later(self._delay, self._run)

    def _run(self) -> None:
        self._handle = None
        self._running = True
        try:
            failing = self._attempt()
        finally:
            self._running = False
        if failing:
            self._delay = min(self._delay * 2, self.MAX)
            self.schedule()
        else:
            self._delay = self.FIRST
