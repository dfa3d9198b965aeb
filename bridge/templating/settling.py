"""A file being written is not a decision: edits that look half-written wait for a settle period.

An edit to a loaded set is *unsettled* when a file that rendered resources is now empty or gone,
or when a file no longer compiles (a write cut in the middle of a tag). Such an edit is held,
the set keeps serving its previous files, and the files are read again; once they have stayed
exactly the same for ``seconds`` the edit is applied as it is (an operator who empties a file on
purpose gets what they asked for, a little later). Any other edit is applied at once. A set
read for the first time has nothing to protect and is taken as it is.

What this cannot see: a write cut at a clean boundary (a complete listener, then nothing) looks
like a smaller file. Replace files atomically (write elsewhere, then rename) to be safe there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .checks import precheck
from .sets import TemplateSet

log = logging.getLogger("bridge.templating")  # one logger for the package

#: How long an unsettled edit must stay unchanged before it is applied.
SETTLE_SECONDS = 2.0


def unsettled_reason(current: TemplateSet, fresh: TemplateSet) -> str | None:
    """Why ``fresh`` (the set's files now) looks like a write in progress; None: it does not."""
    for file, _kind in current.render_files:
        text = fresh.sources.get(file)
        if text is None:
            return f"{file} was removed"
        if not text.strip() and current.sources[file].strip():
            return f"{file} is empty"
    syntax = precheck(fresh)
    return syntax[0] if syntax else None


@dataclass(frozen=True, slots=True)
class HeldEdit:
    """An edit waiting for its files to stay the same for the settle period."""

    sources: dict[str, str]
    reason: str
    since: float  # clock time the files were first seen like this


class Settle:
    """Decides when an edit of a set is applied (the :class:`~.sets.EditGate` of the sets)."""

    def __init__(
        self, seconds: float = SETTLE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        #: Held edits by set name.
        self.held: dict[str, HeldEdit] = {}

    def admit(self, current: TemplateSet | None, fresh: TemplateSet) -> bool:
        """Whether ``fresh`` replaces ``current`` now (False: read the files again later)."""
        if current is None:
            return True
        reason = unsettled_reason(current, fresh)
        if reason is None:
            self.held.pop(fresh.name, None)
            return True
        now = self._clock()
        held = self.held.get(fresh.name)
        if held is None or held.sources != fresh.sources:
            held = self.held[fresh.name] = HeldEdit(dict(fresh.sources), reason, now)
            if self.seconds > 0:
                log.warning(
                    "template set %r: %s; holding this edit for %gs (the set keeps its previous "
                    "files; a file being written is not a decision)",
                    fresh.name,
                    reason,
                    self.seconds,
                )
        if now - held.since < self.seconds:
            return False
        del self.held[fresh.name]
        log.warning(
            "template set %r: %s, unchanged for %gs: applying the edit",
            fresh.name,
            reason,
            self.seconds,
        )
        return True

    def forget(self, name: str) -> None:
        """The set is as it was (or gone): nothing of it is held any more."""
        self.held.pop(name, None)

    def recheck_in(self) -> float | None:
        """Seconds until the earliest held edit may be applied (None: nothing is held)."""
        if not self.held:
            return None
        now = self._clock()
        return max(0.0, min(h.since + self.seconds - now for h in self.held.values()))
