"""The quarantine registry: what is kept from the nodes right now, why, and since when.

The publisher files :class:`~bridge.gate.Problem` s under a *scope* — a service
(``service:<name>``), a node key (``key:<key>``: what its templates rendered) or a NACK
(``nack:<type>:<name>``) — and replaces a scope's problems whenever it re-checks it; an empty
list lifts them. A problem shared by many scopes (1,000 node keys rendering the same colliding
virtual host) is one entry, with the scopes listed.

Each problem is logged once at WARNING when it appears (naming the resource, the source of the
bad value and the rule) and once at INFO when it is lifted. :meth:`Quarantine.counts` feeds
the ``consul_xds_quarantined_resources{type,reason}`` gauge and :meth:`Quarantine.view` the
``/debug/quarantine`` endpoint.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .gate import Problem

log = logging.getLogger("bridge.quarantine")

SCOPES_SHOWN = 20  # per entry in the debug view


@dataclass(slots=True)
class _Entry:
    since: float
    scopes: set[str] = field(default_factory=set)


class Quarantine:
    """Problems by scope; every method is cheap and never raises on odd input."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_scope: dict[str, frozenset[Problem]] = {}
        self._entries: dict[Problem, _Entry] = {}

    def set(self, scope: str, problems: Iterable[Problem]) -> list[Problem]:
        """Replace ``scope``'s problems; returns the ones that are new to it."""
        new = frozenset(problems)
        old = self._by_scope.get(scope, frozenset())
        if new == old:
            return []
        if new:
            self._by_scope[scope] = new
        else:
            self._by_scope.pop(scope, None)
        for problem in old - new:
            entry = self._entries.get(problem)
            if entry is None:
                continue
            entry.scopes.discard(scope)
            if not entry.scopes:
                del self._entries[problem]
                log.info(
                    "quarantine lifted: %s %r (%s)", problem.type, problem.name, problem.reason
                )
        added = sorted(new - old, key=lambda p: (p.type, p.name, p.reason))
        for problem in added:
            entry = self._entries.get(problem)
            if entry is None:
                entry = self._entries[problem] = _Entry(self._clock())
                log.warning("quarantined %s", problem.describe())
            entry.scopes.add(scope)
        return added

    def clear(self, scope: str) -> None:
        self.set(scope, ())

    def clear_prefix(self, prefix: str) -> None:
        """Lift every scope starting with ``prefix`` (e.g. all NACKs of one resource)."""
        for scope in [s for s in self._by_scope if s.startswith(prefix)]:
            self.clear(scope)

    def of(self, scope: str) -> frozenset[Problem]:
        return self._by_scope.get(scope, frozenset())

    def __len__(self) -> int:
        return len(self._entries)

    def counts(self) -> collections.Counter[tuple[str, str]]:
        """Quarantined resources by (type, reason): one per distinct resource and problem."""
        return collections.Counter((p.type, p.reason) for p in self._entries)

    def view(self, scopes: Callable[[str], bool] = lambda scope: True) -> list[dict[str, Any]]:
        """The entries (those with a scope ``scopes`` accepts), for the debug views."""
        out = []
        for problem, entry in sorted(
            self._entries.items(), key=lambda item: (item[0].type, item[0].name, item[0].reason)
        ):
            matching = sorted(s for s in entry.scopes if scopes(s))
            if not matching:
                continue
            out.append(
                {
                    "type": problem.type,
                    "name": problem.name,
                    "reason": problem.reason,
                    "service": problem.service,
                    "source": problem.source,
                    "rule": problem.rule,
                    "action": problem.action,
                    "since": entry.since,
                    "scopes": matching[:SCOPES_SHOWN],
                    "scope_count": len(matching),
                }
            )
        return out
