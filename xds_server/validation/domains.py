"""Domain uniqueness within one route configuration.

Envoy refuses a whole route configuration in which two virtual hosts (or one, twice) claim the
same domain ("Only unique values for domains are permitted"), comparing domains lower-cased:
``Web`` and ``web`` collide, and so do a service named ``*`` and the catch-all virtual host.
Virtual host *names* may repeat (Envoy accepts that), so results are by position.

The rule: virtual hosts are taken in order of precedence (by default, their order in the
configuration); each keeps all its domains unless one of them is already held by a virtual host
taken before it, or it lists one domain twice; then it is dropped as a whole and claims nothing,
so what it would have claimed stays with whoever held it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.route.v3 import route_components_pb2, route_pb2

#: Orders virtual hosts (lowest first) by their position and content.
Precedence = Callable[[int, route_components_pb2.VirtualHost], Any]


@dataclass(frozen=True, slots=True)
class DroppedHost:
    """A virtual host that must be left out of its route configuration, and why."""

    index: int  # position in the configuration
    name: str
    domain: str  # the contested domain, lower-cased
    holder: str | None  # the virtual host keeping it (None: listed twice by this one)

    @property
    def problem(self) -> str:
        if self.holder is None:
            return f"domain {self.domain!r} is listed twice"
        return f"domain {self.domain!r} is also claimed by virtual host {self.holder!r}"


def check_route_domains(
    config: route_pb2.RouteConfiguration, precedence: Precedence | None = None
) -> list[DroppedHost]:
    """The virtual hosts to drop so that no domain is claimed twice (in configuration order)."""
    hosts: Sequence[route_components_pb2.VirtualHost] = config.virtual_hosts
    order = list(range(len(hosts)))
    if precedence is not None:
        order.sort(key=lambda i: (precedence(i, hosts[i]), i))
    owner: dict[str, str] = {}
    dropped: list[DroppedHost] = []
    for index in order:
        vhost = hosts[index]
        claimed: set[str] = set()
        clash: DroppedHost | None = None
        for domain in vhost.domains:
            key = domain.lower()
            if key in owner:
                clash = DroppedHost(index, vhost.name, key, owner[key])
                break
            if key in claimed:
                clash = DroppedHost(index, vhost.name, key, None)
                break
            claimed.add(key)
        if clash is not None:
            dropped.append(clash)
            continue
        for key in claimed:
            owner[key] = vhost.name
    return sorted(dropped, key=lambda d: d.index)
