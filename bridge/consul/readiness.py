"""What ``/readyz`` says about the datacenters (pure: status dicts in, sentences out).

The bridge is ready once its local datacenter was read; these sentences name what an operator
should still know: failover datacenters not read yet or not answering, and removals held by the
mass-removal guard (with how to publish them at once).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

ACCEPT_HINT = "POST /debug/accept-removal publishes it now"


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def reachability_problem(name: str, status: Mapping[str, Any]) -> str | None:
    """A sentence about a datacenter that was not read yet or does not answer (None: fine)."""
    error = status.get("last_error")
    unreachable = status.get("reachable") is False
    if not status.get("read"):
        cause = f": it cannot be reached ({error})" if unreachable else ""
        return f"datacenter {name} not read yet{cause}; retrying"
    if unreachable:
        return (
            f"datacenter {name} cannot be reached ({error}); what was read from it stays "
            "served; retrying"
        )
    return None


def hold_problem(name: str, guard: Mapping[str, Any]) -> str | None:
    """A sentence about a held removal (None: nothing held)."""
    if not guard.get("holding"):
        return None
    release = guard.get("release_at")
    until = "" if release is None else f" until {_when(release)} if Consul's reads stay the same"
    return (
        f"datacenter {name}: holding the removal of {guard['services_held']} services and "
        f"{guard['endpoints_held']} endpoints ({guard['reason']}){until}; {ACCEPT_HINT}"
    )


def datacenter_problems(statuses: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every datacenter's sentences, in failover order (each status carries its ``name``)."""
    problems: list[str] = []
    for status in statuses:
        name = str(status["name"])
        for problem in (
            reachability_problem(name, status),
            hold_problem(name, status.get("removal_guard") or {}),
        ):
            if problem is not None:
                problems.append(problem)
    return problems
