"""What was last read of each selected service in one datacenter, and the selection itself."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..catalog import ServiceUpdate
from ..consul_settings import ConsulSettings
from ..model import Instance, parse_health_service
from .client import ConsulResponse

log = logging.getLogger(__name__)

Selection = dict[str, tuple[str, ...]]  # service name → its tags, sorted


def catalog_selection(body: Mapping[str, Any], settings: ConsulSettings) -> Selection:
    """A ``/v1/catalog/services`` body → the services the settings select."""
    selected: Selection = {}
    for name, raw_tags in body.items():
        tags = tuple(sorted({str(t) for t in raw_tags or ()}))
        if settings.matches(str(name), tags):
            selected[str(name)] = tags
    return selected


class ServiceTable:
    """The instances last read per service, the index of each read, and which nodes carry
    which services (a node-level check touches every service on its node)."""

    def __init__(self, datacenter: str) -> None:
        self.datacenter = datacenter
        self.instances: dict[str, tuple[Instance, ...]] = {}
        self.unread: set[str] = set()  # selected but not read once yet
        self._read_index: dict[str, int] = {}
        self._by_node: dict[str, set[str]] = {}

    def expect(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """The selection changed: ``added`` must be read before the datacenter is complete."""
        self.unread.difference_update(removed)
        self.unread.update(added)

    @property
    def complete(self) -> bool:
        return not self.unread

    def known_index(self, name: str) -> int:
        """The ``X-Consul-Index`` of the last read of ``name`` (0: none)."""
        return self._read_index.get(name, 0) if name in self.instances else 0

    def forget_indexes(self) -> None:
        """After an index reset the known indexes mean nothing: the next reads are decoded."""
        self._read_index.clear()

    def services_on_node(self, node: str) -> set[str]:
        return self._by_node.get(node, set())

    def read(self, name: str, resp: ConsulResponse) -> ServiceUpdate | None:
        """A ``/v1/health/service/<name>`` response → the update it makes, if any."""
        instances, problems = parse_health_service(resp.body, self.datacenter)
        for problem in problems:
            log.warning("dc %s, service %s: %s", self.datacenter, name, problem)
        self.unread.discard(name)
        self._read_index[name] = resp.index
        known = self.instances.get(name)
        if not instances and known and resp.filtered_by_acls:
            # Every instance hidden by ACLs: a token that lost node:read/service:read looks
            # exactly like this. Dropping them would cut the service's traffic on a guess.
            log.warning(
                "dc %s, service %s: Consul's ACLs hide every instance "
                "(X-Consul-Results-Filtered-By-ACLs); keeping the %d last known - check the "
                "token's service:read and node:read",
                self.datacenter,
                name,
                len(known),
            )
            return None
        if known == instances and name in self.instances:
            return None
        self._index_nodes(name, known or (), instances)
        self.instances[name] = instances
        return ServiceUpdate(name, self.datacenter, instances, resp.received_at)

    def forget(self, name: str, received_at: float) -> ServiceUpdate | None:
        """``name`` is no longer selected: the update removing it, if it was ever read."""
        self._read_index.pop(name, None)
        if name not in self.instances:
            return None
        self._index_nodes(name, self.instances.pop(name), ())
        return ServiceUpdate(name, self.datacenter, None, received_at)

    def _index_nodes(self, name: str, old: Iterable[Instance], new: Iterable[Instance]) -> None:
        for instance in old:
            services = self._by_node.get(instance.node)
            if services is not None:
                services.discard(name)
                if not services:
                    del self._by_node[instance.node]
        for instance in new:
            self._by_node.setdefault(instance.node, set()).add(name)
