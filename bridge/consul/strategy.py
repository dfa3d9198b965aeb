"""How the services of one datacenter are watched: the interface of the two strategies, and
the rule that picks one.

``per-service`` (:class:`~.per_service.PerServiceWatches`) while the services fit the
connection budget, ``global`` (:class:`~.global_mode.GlobalWatches`) beyond it. Both deliver
every read through the ``on_read`` callback they were built with; the datacenter
(:class:`~.datacenter.Datacenter`) tells them what the catalog watch saw.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from .client import ConsulResponse
from .retry import WatchStatus

PER_SERVICE = "per-service"
GLOBAL = "global"

#: ``on_read(service, response)`` → whether the read changed what is served.
OnRead = Callable[[str, ConsulResponse], bool]


class WatchStrategy(Protocol):
    """Watches the selected services of one datacenter."""

    @property
    def mode(self) -> str: ...

    def start(self, selected: Collection[str]) -> None:
        """Begin watching ``selected`` (a strategy is started once)."""

    def selection_changed(self, added: list[str], removed: list[str], retagged: list[str]) -> None:
        """The catalog body changed the selection."""

    def catalog_moved(self) -> None:
        """The catalog index moved (with or without a body change)."""

    def statuses(self) -> list[WatchStatus]: ...

    async def stop(self) -> None:
        """Cancel every watch and wait for them (bounded)."""


def per_service_capacity(budget: int) -> int:
    """Per-service watches that fit ``budget`` connections: one is the catalog watch, one spare."""
    return max(0, budget - 2)


def choose_mode(current: str, services: int, capacity: int) -> str:
    """``per-service`` while the services fit, ``global`` beyond; 10 % hysteresis back down."""
    if current == PER_SERVICE and services > capacity:
        return GLOBAL
    if current == GLOBAL and services <= capacity - max(1, capacity // 10):
        return PER_SERVICE
    return current
