"""The bridge's current view of Consul: service name → datacenter → instances.

Fed by the watcher's updates, read by the publisher. Applying updates reports which services
actually changed, so only those are rebuilt and re-pushed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .model import Instance, ServiceView


@dataclass(frozen=True, slots=True)
class ServiceUpdate:
    """One service's instances in one datacenter, as last read from Consul.

    ``instances`` is None when the service is gone from that datacenter's catalog (or no longer
    selected). ``received_at`` is the ``time.monotonic()`` of the Consul response carrying it.
    """

    name: str
    datacenter: str
    instances: tuple[Instance, ...] | None
    received_at: float = 0.0


class Catalog:
    """Latest instances per (service, datacenter), with change detection."""

    def __init__(self, datacenters: Sequence[str] = ()) -> None:
        self._datacenters: tuple[str, ...] = tuple(datacenters)
        self._services: dict[str, dict[str, tuple[Instance, ...]]] = {}
        #: Bumped on every change, so readers can tell "unchanged" in O(1).
        self.generation = 0

    @property
    def datacenters(self) -> tuple[str, ...]:
        """Datacenters in failover order: the local one first."""
        return self._datacenters

    def set_datacenters(self, datacenters: Sequence[str]) -> set[str]:
        """Change the failover order; returns every service (all views change)."""
        new = tuple(dict.fromkeys(datacenters))
        if new == self._datacenters:
            return set()
        self._datacenters = new
        self.generation += 1
        return set(self._services)

    def apply(self, updates: Iterable[ServiceUpdate]) -> dict[str, float]:
        """Apply updates; returns changed service name → earliest ``received_at`` of its change."""
        changed: dict[str, float] = {}
        for update in updates:
            per_dc = self._services.get(update.name)
            current = per_dc.get(update.datacenter) if per_dc is not None else None
            if update.instances is None:
                if current is None:
                    continue
                assert per_dc is not None
                del per_dc[update.datacenter]
                if not per_dc:
                    del self._services[update.name]
            else:
                if current == update.instances and per_dc is not None:
                    continue
                self._services.setdefault(update.name, {})[update.datacenter] = update.instances
            received = update.received_at or time.monotonic()
            changed[update.name] = min(changed.get(update.name, received), received)
        if changed:
            self.generation += 1
        return changed

    def names(self) -> list[str]:
        return sorted(self._services)

    def __contains__(self, name: object) -> bool:
        return name in self._services

    def __len__(self) -> int:
        return len(self._services)

    def view(self, name: str) -> ServiceView | None:
        per_dc = self._services.get(name)
        if per_dc is None:
            return None
        order = list(self._datacenters)
        order += sorted(dc for dc in per_dc if dc not in order)
        return ServiceView(
            name=name,
            datacenters=tuple(order),
            instances={dc: per_dc.get(dc, ()) for dc in order},
        )

    def views(self) -> list[ServiceView]:
        return [v for v in (self.view(n) for n in self.names()) if v is not None]
