"""The mass-removal guard: the pure decision, and one datacenter's guard driven by a fake clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.catalog import ServiceUpdate
from bridge.consul.guard import (
    ALREADY_HOLDING,
    INDEX_RESET,
    MASS_REMOVAL,
    GuardPolicy,
    Removal,
    RemovalGuard,
    Tally,
    exceeds_share,
    hold_reason,
    kept_back,
    removal_of,
)
from bridge.model import Instance
from bridge.tasks import within

POLICY = GuardPolicy(share=0.5, hold=180.0)


def inst(service: str, number: int, port: int = 8080) -> Instance:
    return Instance(service, f"{service}-{number}", f"node{number}", "dc1", "10.0.0.1", port)


def update(service: str, *numbers: int, gone: bool = False) -> ServiceUpdate:
    instances = None if gone else tuple(inst(service, n) for n in numbers)
    return ServiceUpdate(service, "dc1", instances, 1.0)


# ------------------------------------------------------------ the pure decision


def test_removal_counts_instances_gone_and_services_left_empty() -> None:
    served = (inst("web", 1), inst("web", 2))
    assert not removal_of("web", served, served)
    assert not removal_of("web", served, (*served, inst("web", 3)))  # an addition
    assert not removal_of("web", served, (inst("web", 1, port=9), inst("web", 2)))  # a change
    assert removal_of("web", served, (inst("web", 1),)).tally == Tally(0, 1)
    assert removal_of("web", served, ()).tally == Tally(1, 2)
    assert removal_of("web", served, None).tally == Tally(1, 2)
    assert not removal_of("web", (), None)  # already empty: nothing left to remove
    assert not removal_of("web", None, None)


@pytest.mark.parametrize(
    ("removing", "recently", "served", "held"),
    [
        (Tally(0, 1), Tally(), Tally(1, 2), False),  # half the endpoints: not more than half
        (Tally(0, 2), Tally(), Tally(1, 3), True),  # two of three
        (Tally(1, 1), Tally(), Tally(2, 10), False),  # one of two services
        (Tally(2, 2), Tally(), Tally(3, 10), True),  # two of three services
        (Tally(0, 1), Tally(0, 1), Tally(1, 2), True),  # with the one just removed: 2 of 3
        (Tally(0, 1), Tally(0, 1), Tally(1, 3), False),  # 2 of 4
        (Tally(0, 0), Tally(5, 5), Tally(1, 1), False),  # removes nothing
    ],
)
def test_share_counts_what_was_removed_recently(
    removing: Tally, recently: Tally, served: Tally, held: bool
) -> None:
    assert exceeds_share(0.5, removing, recently, served) is held


def test_share_bounds() -> None:
    assert not exceeds_share(1.0, Tally(10, 10), Tally(), Tally(10, 10))  # everything may go
    assert exceeds_share(0.0, Tally(0, 1), Tally(), Tally(1000, 1000))  # nothing may go


def test_hold_reasons_in_order() -> None:
    one = Removal(endpoints=frozenset({("web", "node1", "web-1")}))
    many = Removal(frozenset({"web"}), frozenset({("web", "node1", "web-1")}))
    small = {"recently": Tally(), "served": Tally(10, 10)}
    alone = {"recently": Tally(), "served": Tally(1, 1)}
    assert hold_reason(POLICY, one, holding=False, after_reset=False, **small) is None
    assert hold_reason(POLICY, Removal(), holding=True, after_reset=True, **small) is None
    assert hold_reason(POLICY, one, holding=True, after_reset=True, **small) == ALREADY_HOLDING
    assert hold_reason(POLICY, one, holding=False, after_reset=True, **small) == INDEX_RESET
    assert hold_reason(POLICY, many, holding=False, after_reset=False, **alone) == MASS_REMOVAL
    off = GuardPolicy(share=0.5, hold=0.0)
    assert hold_reason(off, many, holding=True, after_reset=True, **alone) is None


def test_kept_back_publishes_additions_and_changes_but_not_removals() -> None:
    served = (inst("web", 1), inst("web", 2))
    new = (inst("web", 2, port=9), inst("web", 3))
    assert kept_back(served, new) == (inst("web", 1), inst("web", 2, port=9), inst("web", 3))
    assert kept_back(served, None) == served
    assert kept_back(None, new) == new


# ------------------------------------------------------------ one datacenter's guard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    """What the guard delivered: every batch, and the resulting state per service."""

    def __init__(self) -> None:
        self.batches: list[list[ServiceUpdate]] = []
        self.state: dict[str, set[str] | None] = {}
        self.delivered = asyncio.Event()

    def __call__(self, updates: list[ServiceUpdate]) -> None:
        self.batches.append(updates)
        for u in updates:
            self.state[u.name] = None if u.instances is None else {i.id for i in u.instances}
        self.delivered.set()


def served_fleet(policy: GuardPolicy = POLICY) -> tuple[RemovalGuard, Sink, Clock]:
    """A guard serving web (2 instances), api and db (1 each)."""
    sink, clock = Sink(), Clock()
    guard = RemovalGuard("dc1", policy, sink, clock)
    guard.offer([update("web", 1, 2), update("api", 1), update("db", 1)])
    return guard, sink, clock


def test_small_removals_pass_at_once() -> None:
    guard, sink, _ = served_fleet()
    guard.offer([update("web", 1)])
    assert sink.state["web"] == {"web-1"}
    guard.offer([update("db", gone=True)])  # 2 of 4 endpoints within the window: half
    assert sink.state["db"] is None
    assert not guard.holding


def test_a_read_emptying_the_catalog_is_held_until_stable_or_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard, sink, clock = served_fleet()
    with caplog.at_level(logging.WARNING, logger="bridge.consul.guard"):
        guard.offer([update(n, gone=True) for n in ("web", "api", "db")])
    assert sink.state == {"web": {"web-1", "web-2"}, "api": {"api-1"}, "db": {"db-1"}}
    assert "holding the removal of 3 services and 4 endpoints" in caplog.text
    status = guard.status()
    assert status["holding"]
    assert status["reason"] == MASS_REMOVAL
    assert (status["services_held"], status["endpoints_held"]) == (3, 4)
    assert status["services"] == ["api", "db", "web"]
    assert guard.holds_total == 1
    clock.now += 179
    assert not guard.release_due()
    clock.now += 1
    assert guard.release_due()
    assert sink.state == {"web": None, "api": None, "db": None}
    assert not guard.holding
    assert guard.status()["services_held"] == 0


def test_a_burst_of_one_service_reads_is_judged_as_a_whole() -> None:
    guard, sink, _ = served_fleet()
    guard.offer([update("api", gone=True)])  # 1 of 4 endpoints, 1 of 3 services: passes
    guard.offer([update("db", gone=True)])  # 2 of 4, 2 of 3 services: held
    guard.offer([update("web", 2)])  # while holding, every removal joins
    assert sink.state == {"web": {"web-1", "web-2"}, "api": None, "db": {"db-1"}}
    assert guard.status()["services"] == ["db", "web"]


def test_additions_and_changes_flow_while_a_removal_is_held() -> None:
    guard, sink, _ = served_fleet()
    guard.offer([update("web", gone=True), update("api", gone=True)])
    assert guard.holding
    guard.offer([update("cache", 1)])  # a new service
    guard.offer([update("web", 1, 3)])  # web-3 added, web-2 still held back
    assert sink.state["cache"] == {"cache-1"}
    assert sink.state["web"] == {"web-1", "web-2", "web-3"}
    assert guard.status()["services"] == ["api", "web"]
    guard.accept()
    assert sink.state["web"] == {"web-1", "web-3"}
    assert sink.state["api"] is None


def test_what_comes_back_is_no_longer_held_and_resets_the_wait() -> None:
    guard, sink, clock = served_fleet()
    guard.offer([update("web", gone=True), update("api", gone=True)])
    clock.now += 100
    guard.offer([update("web", 1, 2)])  # web re-registered as it was
    assert guard.status()["services"] == ["api"]
    clock.now += 100  # 200 s after the hold began, 100 s after it last changed
    assert not guard.release_due()
    clock.now += 80
    assert guard.release_due()
    assert sink.state == {"web": {"web-1", "web-2"}, "api": None, "db": {"db-1"}}
    guard.offer([update("api", 1)])
    guard.offer([update("db", gone=True)])  # after a release the served state is the base
    assert sink.state["db"] is None


def test_everything_coming_back_ends_the_hold() -> None:
    guard, sink, _ = served_fleet()
    guard.offer([update("web", gone=True), update("api", gone=True)])
    guard.offer([update("web", 1, 2)])
    guard.offer([update("api", 1)])
    assert not guard.holding
    assert guard.status()["reason"] is None
    assert guard.holds_total == 1
    assert sink.state == {"web": {"web-1", "web-2"}, "api": {"api-1"}, "db": {"db-1"}}


def test_after_an_index_reset_every_removal_is_held_for_the_hold_time() -> None:
    guard, sink, clock = served_fleet()
    guard.index_reset()
    guard.offer([update("web", 1)])  # a single instance, normally fine
    assert sink.state["web"] == {"web-1", "web-2"}
    assert guard.status()["reason"] == INDEX_RESET
    guard.accept()  # the operator ends the hold and the reset period
    assert sink.state["web"] == {"web-1"}
    guard.offer([update("api", gone=True)])
    assert sink.state["api"] is None
    guard.index_reset()
    clock.now += 181  # a removal long after the reset is judged normally
    guard.offer([update("db", gone=True)])
    assert sink.state["db"] is None


def test_accept_with_nothing_held_changes_nothing() -> None:
    guard, sink, _ = served_fleet()
    batches = len(sink.batches)
    assert guard.accept()["services_held"] == 0
    assert len(sink.batches) == batches


def test_a_zero_hold_turns_the_guard_off() -> None:
    guard, sink, _ = served_fleet(GuardPolicy(share=0.5, hold=0.0))
    guard.index_reset()
    guard.offer([update(n, gone=True) for n in ("web", "api", "db")])
    assert sink.state == {"web": None, "api": None, "db": None}


def test_a_zero_share_holds_every_removal() -> None:
    guard, sink, _ = served_fleet(GuardPolicy(share=0.0, hold=60.0))
    guard.offer([update("web", 1)])
    assert sink.state["web"] == {"web-1", "web-2"}
    assert guard.holding


async def test_the_hold_ends_by_itself_once_stable() -> None:
    """With an event loop, the guard's own timer publishes the held removal."""
    sink = Sink()
    guard = RemovalGuard("dc1", GuardPolicy(share=0.5, hold=0.05), sink)
    guard.offer([update("web", 1, 2), update("api", 1)])
    guard.offer([update("web", gone=True), update("api", gone=True)])
    assert guard.holding
    sink.delivered.clear()
    await within(sink.delivered.wait(), 10)
    assert sink.state == {"web": None, "api": None}
    assert not guard.holding
