"""One blocking query: Consul's index rules, the retries, change detection.

The rules Consul documents for blocking-query clients (the "Blocking Queries" page of its HTTP
API documentation; consul-template and envoy-control follow them): the first read is
immediate (no ``index``); later ones send ``index`` and ``wait``. An index lower than the
previous one (a snapshot restore, a stale read from another server) resets to 0, so the next
read is immediate again; an index below 1 is used as 1, so a server that answers 0 cannot turn
the loop into a busy loop. An unchanged index or an unchanged body is not a change. Calls are
spaced by ``min_interval`` and errors are retried forever (:class:`~.retry.Retrier`), keeping
the last known state: an error never produces a change.

An index going backwards is a reset of the whole datacenter (:mod:`.resets`): the query reports
it, and every query of the datacenter -- this one included -- reads again without an index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..consul_settings import ConsulSettings
from .client import Client, ConsulError, ConsulResponse
from .resets import IndexResets, Interrupted
from .retry import Recovery, Retrier, WatchStatus

Validator = Callable[[Any], str | None]


def expect(kind: type) -> Validator:
    """A validator: the body must be a JSON object (``dict``) or array (``list``)."""

    def validate(body: Any) -> str | None:
        return None if isinstance(body, kind) else f"expected a JSON {kind.__name__}"

    return validate


def next_index(previous: int, returned: int) -> int:
    """The ``index`` for the next read after Consul answered ``returned`` (0: do not block)."""
    returned = max(returned, 1)
    return 0 if returned < previous else returned


@dataclass(frozen=True)
class WatchContext:
    """What every watch of one datacenter shares."""

    client: Client
    settings: ConsulSettings
    recovery: Recovery
    observe: Callable[[ConsulResponse], None]  # sees every response (header warnings)
    datacenter: str
    dc_param: str | None  # ``?dc=``; None for the local datacenter
    resets: IndexResets = field(default_factory=IndexResets)

    def params(self, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = dict(extra or {})
        if self.dc_param:
            params["dc"] = self.dc_param
        return params

    def retrier(self, path: str, mode: str) -> Retrier:
        """A retrier with its own failure state, for one watch or worker."""
        return Retrier(self.settings, WatchStatus(path, self.datacenter, mode), self.recovery)


class BlockingQuery:
    """One blocking-query watch of one Consul endpoint in one datacenter."""

    def __init__(
        self,
        context: WatchContext,
        path: str,
        mode: str,
        validate: Validator,
        extra_params: Mapping[str, str] | None = None,
    ) -> None:
        """``path`` is already percent-encoded; ``mode`` labels the watch in ``/debug/consul``."""
        self.context = context
        self.path = path
        self.validate = validate
        self.extra_params = dict(extra_params or {})
        self.retrier = context.retrier(path, mode)
        self.index = 0
        self.body: Any = None
        self.has_body = False
        self._generation = context.resets.generation

    @property
    def status(self) -> WatchStatus:
        return self.retrier.status

    def params(self) -> dict[str, Any]:
        params = self.context.params(self.extra_params)
        if self.index >= 1:
            params["index"] = self.index
            params["wait"] = self.context.settings.wait_param
        return params

    async def _once(self) -> ConsulResponse:
        resets = self.context.resets
        if self._generation != resets.generation:  # the datacenter's indexes were reset
            self._generation, self.index = resets.generation, 0
        resp = await resets.interruptible(self.context.client.get_json(self.path, self.params()))
        self.context.observe(resp)
        problem = self.validate(resp.body)
        if problem is not None:
            raise ConsulError("invalid_body", f"GET {self.path}: {problem}")
        return resp

    async def fetch(self) -> ConsulResponse:
        """One successful response (retrying errors forever); moves the index on."""
        while True:
            try:
                resp = await self.retrier.call(self._once)
            except Interrupted:  # a reset cut the read short: read again from index 0
                continue
            break
        previous, self.index = self.index, next_index(self.index, resp.index)
        self.status.index = resp.index
        if self.index == 0:
            self.context.resets.went_backwards(self.path, previous, resp.index)
        return resp

    async def next_change(self, index_bumps: bool = False) -> tuple[ConsulResponse, bool]:
        """Wait for the next change → (response, body changed).

        An unchanged index is never a change -- unless an index reset came between the two
        reads (the restored state may reuse the old number for other content). An index change
        with an unchanged body is one only when ``index_bumps`` is set (the body-changed flag
        is then False).
        """
        while True:
            previous, generation = self.index, self._generation
            resp = await self.fetch()
            same_state = generation == self._generation
            if self.has_body and previous >= 1 and resp.index == previous and same_state:
                continue
            body_changed = not self.has_body or resp.body != self.body
            self.body, self.has_body = resp.body, True
            if body_changed:
                self.status.last_change = time.time()
            if body_changed or index_bumps:
                return resp, body_changed
