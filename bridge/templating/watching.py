"""Hot reload: watch a templates directory and apply edits within about 0.1 s.

An edit held for its settle period (:mod:`.settling`) is read again when the period is over,
without waiting for another file event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..tasks import STOP_TIMEOUT, cancel_and_wait

log = logging.getLogger("bridge.templating")  # one logger for the package


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did: the sets it changed, and when to read the files again (held edits)."""

    changed: tuple[str, ...] = ()
    recheck_in: float | None = None  # seconds; None: only on the next file event


class TemplateWatcher:
    """Calls ``reload`` after file events under ``directory`` (and when a held edit is due),
    then ``on_change`` when ``reload`` reports changed sets (touching a file without changing
    it changes nothing)."""

    def __init__(
        self,
        directory: Path,
        reload: Callable[[], Reloaded],
        on_change: Callable[[], None],
    ) -> None:
        self.directory = directory
        self._reload = reload
        self._on_change = on_change
        self._recheck_at: float | None = None  # loop time
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start watching. Every edit from now on is applied: one made before the watch is in
        place is picked up by a reload as soon as it is."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._stop), name="template-watcher")

    async def stop(self) -> None:
        """Stop watching (bounded: a watch that does not end is cancelled and reported)."""
        if self._task is None or self._stop is None:
            return
        task, self._task = self._task, None
        self._stop.set()  # noticed by the watch thread within one step (20 ms)
        _done, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        await cancel_and_wait(pending)

    async def _run(self, stop: asyncio.Event) -> None:
        import watchfiles  # here: commands that never watch do not load it

        loop = asyncio.get_running_loop()
        watching = False
        try:
            async for changes in watchfiles.awatch(
                self.directory,
                debounce=50,
                step=20,
                stop_event=stop,
                rust_timeout=200,
                yield_on_timeout=True,
            ):
                # The first yield (changes or a timeout) means the watch is in place: catch up
                # with edits made before it was. Timeouts (every 0.2 s) also re-read held edits.
                due = self._recheck_at is not None and loop.time() >= self._recheck_at
                if changes or not watching or due:
                    self._apply(loop.time())
                watching = True
        except (OSError, RuntimeError) as exc:  # watchfiles' errors (missing directory, ...)
            log.error(
                "watching %s for template edits failed, edits are not applied: %s",
                self.directory,
                exc,
            )

    def _apply(self, now: float) -> None:
        self._recheck_at = None
        try:
            reloaded = self._reload()
            if reloaded.recheck_in is not None:
                self._recheck_at = now + reloaded.recheck_in
            if not reloaded.changed:
                return
            log.info("template sets changed: %s", ", ".join(sorted(reloaded.changed)))
            self._on_change()
        except Exception:  # the watcher must survive whatever a reload runs into
            log.exception("applying a template change failed")
