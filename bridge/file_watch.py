"""Watch a few files (certificates, keys) and call back when any of them may have changed.

The directories holding the files are watched, not the files: renewals usually replace a file
by renaming a new one over it, and Kubernetes swaps a ``..data`` symlink in the directory. An
event for one of the files' names, or for a ``..*`` entry, calls ``on_change``; the callback
decides by content whether anything really changed. The first callback comes as soon as the
watch is in place (a renewal made while it was being set up is not missed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from .tasks import STOP_TIMEOUT, cancel_and_wait

log = logging.getLogger(__name__)


def relevant(changed: Iterable[str], names: frozenset[str]) -> bool:
    """Whether any changed path is one of the watched file names or a ``..*`` entry."""
    return any(Path(p).name in names or Path(p).name.startswith("..") for p in changed)


class FileWatch:
    """Calls ``on_change()`` (in the event loop) after events touching ``files``."""

    def __init__(self, files: Iterable[str], on_change: Callable[[], object], what: str) -> None:
        paths = [Path(f).absolute() for f in files if f]
        self.directories = sorted({p.parent for p in paths})
        self.names = frozenset(p.name for p in paths)
        self.on_change = on_change
        self.what = what
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None and self.directories:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._stop), name=f"watch {self.what}")

    async def stop(self) -> None:
        """Stop watching (bounded: a watch that does not end is cancelled and reported)."""
        if self._task is None or self._stop is None:
            return
        task, self._task = self._task, None
        self._stop.set()
        _done, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        await cancel_and_wait(pending)

    async def _run(self, stop: asyncio.Event) -> None:
        import watchfiles  # here: commands that never watch do not load it

        watching = False
        try:
            async for changes in watchfiles.awatch(
                *self.directories,
                recursive=False,  # a key in /etc must not mean watching all of /etc
                debounce=50,
                step=20,
                stop_event=stop,
                rust_timeout=200,
                yield_on_timeout=True,
            ):
                if not watching or relevant((path for _change, path in changes), self.names):
                    self._call()
                watching = True
        except (OSError, RuntimeError) as exc:  # watchfiles' errors (missing directory, ...)
            log.error(
                "watching %s for %s failed; renewed files are read on SIGHUP only: %s",
                ", ".join(map(str, self.directories)),
                self.what,
                exc,
            )

    def _call(self) -> None:
        try:
            self.on_change()
        except Exception:  # the watch must survive whatever a reload runs into
            log.exception("reloading %s failed", self.what)
