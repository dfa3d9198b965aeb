"""Consul's config entries as last read: what the Consul watch hands to the publisher.

The watch (:mod:`bridge.consul.config_entries`) reads the discovery entry kinds of one
datacenter and delivers the whole table whenever it changed; the publisher compiles chains from
it (:mod:`bridge.chains`). Bodies are kept as Consul's JSON: parsing and validating them is
:func:`bridge.traffic.parse_entries`' job, which never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Read by the bridge, in this order (discovery chain entries; Connect-only kinds are not read).
ENTRY_KINDS: tuple[str, ...] = (
    "service-defaults",
    "proxy-defaults",
    "service-resolver",
    "service-splitter",
    "service-router",
)


@dataclass(frozen=True, slots=True)
class ConfigEntriesUpdate:
    """Every entry of the kinds read, as ``GET /v1/config/<kind>`` listed them.

    ``received_at`` is the ``time.monotonic()`` of the response that showed the change (it feeds
    push-latency measurements); ``index`` the config-entries table's ``X-Consul-Index``.
    """

    datacenter: str
    entries: tuple[Mapping[str, Any], ...]
    received_at: float = 0.0
    index: int = 0
