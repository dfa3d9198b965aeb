"""Finding the resource a node rejected, so that one NACK never freezes a type (pure, no I/O).

Envoy rejects a whole response when one resource in it is bad; sent again, every later change of
that type would be rejected with it. So when a node NACKs, the stream core (:mod:`.stream`)
isolates the offending resource among the *candidates* — the resources that response carried
that are new to the node (a different version from what it had accepted):

1. **named**: a candidate whose name Envoy's message mentions (``Error adding/updating
   cluster(s) web: ...``, ``... in route ingress_routes``; a delta NACK is answered the same
   way) — the one mentioned first, so a name quoted later in a debug dump does not count;
2. **alone**: a single candidate is the culprit;
3. **bisected**: otherwise the first half (by name) is sent again and the second half is held
   back (*deferred*) until the node answers: an ACK releases the rest (which goes out next,
   and is bisected in turn if rejected), a NACK narrows the search to the half it rejected.

A culprit is *refused* for that node: its rejected version is not sent to it again (it keeps
the version it has; a resource it never had is left out, an EDS/RDS name gets an empty
placeholder) and the rest flows. A new version of the resource is tried again. Culprits are
reported to the registry's observers (the bridge's quarantine rolls them back fleet-wide).

Bounded: per stream and type at most ``Limits.nack_isolations`` steps per
``Limits.nack_window`` seconds and ``Limits.max_refused`` refused resources. Beyond that the
stream stops isolating: the node keeps its last good state of that type until the content
changes (and the window has passed), and this is logged once per window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .limits import Limits
from .resource import Resource

#: How much of a NACK message is searched for resource names (Envoy names them first).
SEARCHED = 4096


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one NACK led to: ``culprit`` refused (or a bisection trying ``tried`` candidates
    first), and the names to send again (``retry``). ``limited``: the budget was spent, nothing
    is sent until the content changes (``retry`` then goes out with it)."""

    culprit: Resource | None
    retry: frozenset[str]
    tried: int = 0
    limited: bool = False


@dataclass(slots=True)
class Isolation:
    """One subscription's isolation state (created at its first NACK)."""

    refused: dict[str, str] = field(default_factory=dict)  # name -> rejected version
    deferred: set[str] = field(default_factory=set)  # held back until the trial is answered
    window_start: float = float("-inf")
    steps: int = 0
    reported_limit: bool = False

    def rejected(
        self, message: str, candidates: Sequence[Resource], now: float, limits: Limits
    ) -> Outcome:
        """The node rejected a response carrying ``candidates`` (new to it) with ``message``."""
        names = frozenset(r.name for r in candidates)
        allowed = limits.nack_isolations if len(self.refused) < limits.max_refused else 0
        if not self.spend(now, limits.nack_window, allowed):
            return Outcome(None, self.release() | names, limited=True)
        culprit = named_culprit(message, candidates)
        if culprit is None and len(candidates) == 1:
            culprit = candidates[0]
        if culprit is None:
            first, rest = halves(candidates)
            self.deferred.update(r.name for r in rest)
            return Outcome(None, frozenset(r.name for r in first), tried=len(first))
        self.refused[culprit.name] = culprit.version
        return Outcome(culprit, (names - {culprit.name}) | self.release())

    def release(self) -> frozenset[str]:
        """The deferred names, to be sent (the trial passed, or the culprit was found)."""
        released = frozenset(self.deferred)
        self.deferred.clear()
        return released

    def spend(self, now: float, window: float, allowed: int) -> bool:
        """Take one isolation step from the window's budget; False when it is spent."""
        if now - self.window_start >= window:
            self.window_start, self.steps, self.reported_limit = now, 0, False
        if self.steps >= allowed:
            return False
        self.steps += 1
        return True

    def holds_back(self, name: str, version: str) -> bool:
        """Whether ``version`` of ``name`` must not be sent now (a refused version, or a
        deferred name); a refused name with new content is tried again."""
        refused = self.refused.get(name)
        if refused is not None:
            if refused == version:
                return True
            del self.refused[name]
        return name in self.deferred


def named_culprit(message: str, candidates: Sequence[Resource]) -> Resource | None:
    """The candidate Envoy's message mentions first (a whole name, not part of a longer one)."""
    text = message[:SEARCHED]
    best: tuple[int, int, Resource] | None = None
    for resource in candidates:
        if not resource.name or resource.name not in text:
            continue
        pattern = rf"(?<![\w.\-]){re.escape(resource.name)}(?![\w.\-])"
        found = re.search(pattern, text)
        if found is None:
            continue
        rank = (found.start(), -len(resource.name), resource)
        if best is None or rank[:2] < best[:2]:
            best = rank
    return best[2] if best is not None else None


def halves(candidates: Sequence[Resource]) -> tuple[list[Resource], list[Resource]]:
    """The candidates by name, split in two (the first half is tried first)."""
    ordered = sorted(candidates, key=lambda r: r.name)
    middle = len(ordered) // 2
    return ordered[:middle], ordered[middle:]
