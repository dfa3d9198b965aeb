"""The mass-removal guard: what Consul stops showing all at once is not taken from Envoys at once.

Consul's data is untrusted, sudden emptiness included: a Consul that restarted without its data,
a snapshot restore, a mistaken bulk deregistration. One *read* -- the updates one Consul
response makes in one datacenter -- that would remove

* more than ``share`` of the services or of the endpoints the datacenter serves (what was removed
  within the last ``hold`` seconds and is still gone counts too, so a burst of one-service reads
  is judged as a whole), or
* anything, less than ``hold`` seconds after the datacenter's indexes went backwards, or
* anything, while a removal is already held,

is *held*: the instances and services it removes stay published, while the additions and
changes it carries go out at once. Held removals are published together once they have not
changed for ``hold`` seconds, or at once when the operator accepts them
(:meth:`RemovalGuard.accept`, ``POST /debug/accept-removal``). A service that Consul shows
again meanwhile is no longer held.
The trade-off: a real mass deregistration reaches Envoys ``hold`` seconds late unless accepted.

The decision itself is pure (:func:`hold_reason`); :class:`RemovalGuard` keeps the state of one
datacenter and sits between its watches and the publisher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..catalog import ServiceUpdate
from ..model import Instance

log = logging.getLogger(__name__)

EndpointKey = tuple[str, str, str]  # (service, node, instance id)
Deliver = Callable[[list[ServiceUpdate]], None]

INDEX_RESET = "Consul's index went backwards"
MASS_REMOVAL = "more than the allowed share at once"
ALREADY_HOLDING = "a removal is already held"
SHOWN = 50  # names listed in the status


@dataclass(frozen=True)
class GuardPolicy:
    """``share``: the part (0-1) of the served services or endpoints that may go at once;
    ``hold``: seconds a held removal must stay unchanged before it is published (0: no guard)."""

    share: float = 0.5
    hold: float = 180.0

    @property
    def enabled(self) -> bool:
        return self.hold > 0


@dataclass(frozen=True)
class Tally:
    services: int = 0
    endpoints: int = 0


@dataclass(frozen=True)
class Removal:
    """What an update takes away: services left without any instance, and instances."""

    services: frozenset[str] = frozenset()
    endpoints: frozenset[EndpointKey] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.services or self.endpoints)

    def __or__(self, other: Removal) -> Removal:
        return Removal(self.services | other.services, self.endpoints | other.endpoints)

    @property
    def tally(self) -> Tally:
        return Tally(len(self.services), len(self.endpoints))


def endpoint_keys(name: str, instances: Iterable[Instance] | None) -> set[EndpointKey]:
    return {(name, i.node, i.id) for i in instances or ()}


def removal_of(
    name: str, served: Sequence[Instance] | None, new: Sequence[Instance] | None
) -> Removal:
    """What replacing ``served`` by ``new`` (None: the service is gone) removes."""
    gone = endpoint_keys(name, served) - endpoint_keys(name, new)
    emptied = frozenset({name}) if served and not new else frozenset()
    return Removal(emptied, frozenset(gone))


def exceeds_share(share: float, removing: Tally, recently: Tally, served: Tally) -> bool:
    """Would ``removing`` -- after ``recently`` removed, with ``served`` left -- take more than
    ``share`` of the services or endpoints served before those removals?"""
    for now, before, left in (
        (removing.services, recently.services, served.services),
        (removing.endpoints, recently.endpoints, served.endpoints),
    ):
        if now and before + now > share * (left + before):
            return True
    return False


def hold_reason(
    policy: GuardPolicy,
    removing: Removal,
    *,
    holding: bool,
    after_reset: bool,
    recently: Tally,
    served: Tally,
) -> str | None:
    """Why a read that removes ``removing`` must be held (None: publish it)."""
    if not policy.enabled or not removing:
        return None
    if holding:
        return ALREADY_HOLDING
    if after_reset:
        return INDEX_RESET
    if exceeds_share(policy.share, removing.tally, recently, served):
        return MASS_REMOVAL
    return None


def kept_back(
    served: Sequence[Instance] | None, new: Sequence[Instance] | None
) -> tuple[Instance, ...]:
    """What to publish while the removal from ``served`` to ``new`` is held: ``new`` (its
    additions and changes) plus the served instances it drops, sorted by node and id."""
    present = {(i.node, i.id) for i in new or ()}
    kept = [i for i in served or () if (i.node, i.id) not in present]
    return tuple(sorted((*(new or ()), *kept), key=lambda i: (i.node, i.id)))


K = TypeVar("K")


def _expire(removed_at: dict[K, float], before: float) -> None:
    """Drop the entries older than ``before`` (the dict is in time order)."""
    while removed_at:
        first = next(iter(removed_at))
        if removed_at[first] > before:
            return
        del removed_at[first]


@dataclass
class _Hold:
    reason: str
    since: float  # clock time the hold began
    changed: float  # clock time the held removals last changed


class RemovalGuard:
    """One datacenter's guard: ``offer`` each read's updates; ``deliver`` gets what may go out."""

    def __init__(
        self,
        datacenter: str,
        policy: GuardPolicy,
        deliver: Deliver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.datacenter = datacenter
        self.policy = policy
        self.holds_total = 0
        self._deliver = deliver
        self._clock = clock
        self._served: dict[str, tuple[Instance, ...]] = {}
        self._tally = Tally()
        self._recent_services: dict[str, float] = {}  # removed (and still gone) → when
        self._recent_endpoints: dict[EndpointKey, float] = {}
        self._held: dict[str, ServiceUpdate] = {}  # service → the latest update from Consul
        self._hold: _Hold | None = None
        self._reset_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ inputs
    def offer(self, updates: Sequence[ServiceUpdate]) -> None:
        """One read's updates: deliver what may go out now, hold the rest."""
        if not self.policy.enabled:
            self._deliver(list(updates))
            return
        now = self._clock()
        self._forget_old_removals(now)
        removals = [removal_of(u.name, self._served.get(u.name), u.instances) for u in updates]
        removing = Removal()
        for removal in removals:
            removing = removing | removal
        reason = hold_reason(
            self.policy,
            removing,
            holding=bool(self._held),
            after_reset=self._reset_at is not None and now - self._reset_at < self.policy.hold,
            recently=Tally(len(self._recent_services), len(self._recent_endpoints)),
            served=self._tally,
        )
        out: list[ServiceUpdate] = []
        held_before = self._held_instances()
        for update, removal in zip(updates, removals, strict=True):
            if not removal or reason is None:
                self._held.pop(update.name, None)
                self._remember(removal, now)
                out.append(update)
                continue
            self._held[update.name] = update
            served = self._served.get(update.name)
            kept = kept_back(served, update.instances)
            if kept != served:
                out.append(replace(update, instances=kept))
        for update in out:
            self._serve(update)
        if self._held_instances() != held_before:
            self._held_changed(now, reason or ALREADY_HOLDING, removing)
        if out:
            self._deliver(out)

    def index_reset(self) -> None:
        """The datacenter's indexes went backwards: removals are held for a while."""
        self._reset_at = self._clock()

    def accept(self) -> dict[str, Any]:
        """The operator accepts what is held: publish it now (and end the index-reset period)."""
        summary = self._summary()
        self._reset_at = None
        if self._held:
            self._release("accepted by the operator")
        return summary

    def release_due(self) -> bool:
        """Publish the held removals if they have been unchanged for ``hold``; whether it did."""
        hold = self._hold
        if hold is None or self._clock() - hold.changed < self.policy.hold:
            return False
        self._release(f"unchanged for {self.policy.hold:g}s")
        return True

    # ------------------------------------------------------------ reading
    @property
    def holding(self) -> bool:
        return bool(self._held)

    @property
    def held_services(self) -> int:
        return len(self._held)

    def status(self) -> dict[str, Any]:
        """For ``/debug/consul`` and ``/readyz``."""
        hold, now = self._hold, self._clock()
        reset_until = None
        if self._reset_at is not None and now - self._reset_at < self.policy.hold:
            reset_until = self._wall(self._reset_at + self.policy.hold)
        return {
            "share": self.policy.share,
            "hold_seconds": self.policy.hold,
            "holding": hold is not None,
            "reason": hold.reason if hold else None,
            "since": self._wall(hold.since) if hold else None,
            "release_at": self._wall(hold.changed + self.policy.hold) if hold else None,
            "holding_after_index_reset_until": reset_until,
            "holds_total": self.holds_total,
            **self._summary(),
        }

    # ------------------------------------------------------------ internals
    def _summary(self) -> dict[str, Any]:
        endpoints = sum(
            len(removal_of(name, self._served.get(name), u.instances).endpoints)
            for name, u in self._held.items()
        )
        return {
            "services_held": len(self._held),
            "endpoints_held": endpoints,
            "services": sorted(self._held)[:SHOWN],
        }

    def _held_instances(self) -> dict[str, tuple[Instance, ...] | None]:
        return {name: update.instances for name, update in self._held.items()}

    def _wall(self, at: float) -> float:
        return time.time() - (self._clock() - at)

    def _serve(self, update: ServiceUpdate) -> None:
        name, new = update.name, update.instances
        old = self._served.get(name)
        services = self._tally.services - bool(old) + bool(new)
        endpoints = self._tally.endpoints - len(old or ()) + len(new or ())
        self._tally = Tally(services, endpoints)
        if new is None:
            self._served.pop(name, None)
        else:
            self._served[name] = new
        for key in endpoint_keys(name, new):  # back again: no longer recently removed
            self._recent_endpoints.pop(key, None)
        if new:
            self._recent_services.pop(name, None)

    def _remember(self, removal: Removal, now: float) -> None:
        for service in removal.services:
            self._recent_services.pop(service, None)
            self._recent_services[service] = now
        for key in removal.endpoints:
            self._recent_endpoints.pop(key, None)
            self._recent_endpoints[key] = now

    def _forget_old_removals(self, now: float) -> None:
        _expire(self._recent_services, now - self.policy.hold)
        _expire(self._recent_endpoints, now - self.policy.hold)

    def _held_changed(self, now: float, reason: str, removing: Removal) -> None:
        if not self._held:
            log.info(
                "dc %s: Consul shows again what was held; the removal is no longer held",
                self.datacenter,
            )
            self._end_hold()
            return
        if self._hold is None:
            self._hold = _Hold(reason, now, now)
            self.holds_total += 1
            log.warning(
                "dc %s: holding the removal of %d services and %d endpoints (%s; %d services "
                "and %d endpoints served): Envoys keep them until Consul's reads stay the same "
                "for %gs, or until an operator runs POST /debug/accept-removal",
                self.datacenter,
                len(removing.services),
                len(removing.endpoints),
                reason,
                self._tally.services,
                self._tally.endpoints,
                self.policy.hold,
            )
        self._hold.changed = now
        self._schedule()

    def _release(self, why: str) -> None:
        out = list(self._held.values())
        summary = self._summary()
        self._held.clear()
        self._end_hold()
        self._recent_services.clear()
        self._recent_endpoints.clear()
        log.warning(
            "dc %s: publishing the held removal of %d services and %d endpoints (%s)",
            self.datacenter,
            summary["services_held"],
            summary["endpoints_held"],
            why,
        )
        for update in out:
            self._serve(update)
        self._deliver(out)

    def _end_hold(self) -> None:
        self._hold = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        hold = self._hold
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (unit tests drive release_due themselves)
            return
        if hold is not None:
            delay = max(0.0, hold.changed + self.policy.hold - self._clock())
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self.release_due() and self._hold is not None:
            self._schedule()
