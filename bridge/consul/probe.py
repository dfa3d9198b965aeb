"""One cheap read per datacenter and second: is it reachable, did its index go backwards?

``GET /v1/health/node/<a node that does not exist>`` answers at once with an empty list and the
index of the datacenter's checks table, which moves with every registration and check change.
An index lower than the highest this probe has seen means the datacenter's state was replaced
(a snapshot restore, servers restarted without their data): :class:`~.resets.IndexResets`
restarts every watch from index 0 within about a second, instead of when their blocking queries
expire (``consul.wait``). The same read tells whether the datacenter answers at all
(``No path to datacenter`` for an unreachable failover datacenter), and a successful one ends
the backoff of the datacenter's watches (:class:`~.retry.Recovery`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .blocking import WatchContext
from .client import ConsulError, ConsulResponse

log = logging.getLogger(__name__)

PROBE_PATH = "/v1/health/node/consul-xds-bridge-probe"
INTERVAL = 1.0  # between two probes
BACKING_OFF_INTERVAL = 0.5  # while the datacenter is unreachable or its watches back off
TIMEOUT = 5.0


def went_backwards(highest: int, returned: int) -> bool:
    """An index reset: a valid index lower than the highest seen."""
    return 0 < returned < highest


@dataclass
class Reachability:
    """What the probe last learned of its datacenter (for ``/debug/consul`` and ``/readyz``)."""

    reachable: bool | None = None  # None: not probed yet
    since: float | None = None  # wall-clock time of the last change
    last_error: str | None = None
    highest_index: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "since": self.since,
            "last_error": self.last_error,
            "probe_index": self.highest_index,
        }


class DatacenterProbe:
    """Probes one datacenter until cancelled."""

    def __init__(self, context: WatchContext) -> None:
        self.context = context
        self.state = Reachability()

    async def run(self) -> None:
        while True:
            await self.probe()
            unsettled = not self.state.reachable or self.context.recovery.backing_off.is_set()
            await asyncio.sleep(BACKING_OFF_INTERVAL if unsettled else INTERVAL)

    async def probe(self) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                resp = await self.context.client.get_json(PROBE_PATH, self.context.params())
        except TimeoutError:
            self._failed(f"GET {PROBE_PATH}: no answer within {TIMEOUT:g}s")
        except ConsulError as exc:
            self._failed(str(exc))
        else:
            self._answered(resp)

    def _answered(self, resp: ConsulResponse) -> None:
        state = self.state
        if state.reachable is not True:
            if state.reachable is False:
                log.info("Consul datacenter %s answers again", self.context.datacenter)
            state.reachable, state.since = True, time.time()
        state.last_error = None
        highest, state.highest_index = state.highest_index, max(state.highest_index, resp.index)
        if went_backwards(highest, resp.index):
            state.highest_index = resp.index
            self.context.resets.went_backwards("the index probe", highest, resp.index)
        # After the reset (if any): the watches woken now already read from index 0.
        self.context.recovery.succeeded()

    def _failed(self, error: str) -> None:
        state = self.state
        state.last_error = error[:300]
        if state.reachable is not False:
            state.reachable, state.since = False, time.time()
            log.warning(
                "Consul datacenter %s cannot be read (%s); what was read from it stays served, "
                "and it is retried",
                self.context.datacenter,
                state.last_error,
            )
