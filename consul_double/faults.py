"""Deterministic fault injection: errors, hangs, dropped connections, 429s.

Rules are checked in the order they were added; the first one matching a request applies and,
when it has a ``times`` budget, consumes one unit of it. By default a rule matches reads (GET)
only; ``path_prefix`` narrows it to paths starting with the prefix, ``writes=True`` extends it
to PUT/POST/DELETE as well.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["error", "hang", "drop", "429"]


@dataclass
class Fault:
    kind: Kind
    times: int | None = None  # None: until cleared
    path_prefix: str | None = None
    writes: bool = False
    status: int = 500
    body: str = ""
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if method != "GET" and not self.writes:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass
class FaultInjector:
    """``consul.faults``: add rules with :meth:`error`, :meth:`hang`, :meth:`drop`,
    :meth:`too_many_requests`; remove them all with :meth:`clear`."""

    rules: list[Fault] = field(default_factory=list)
    _release: asyncio.Event | None = None

    def _add(self, fault: Fault) -> Fault:
        self.rules.append(fault)
        return fault

    def error(
        self,
        status: int = 500,
        body: str = "No cluster leader",
        times: int | None = None,
        path_prefix: str | None = None,
        *,
        writes: bool = False,
    ) -> Fault:
        """Answer matching requests with ``status`` and a plain-text ``body``."""
        return self._add(Fault("error", times, path_prefix, writes, status, body))

    def hang(
        self, times: int | None = None, path_prefix: str | None = None, *, writes: bool = False
    ) -> Fault:
        """Never answer matching requests (until :meth:`clear`, then they are served, or until
        the server stops or the client gives up)."""
        return self._add(Fault("hang", times, path_prefix, writes))

    def drop(
        self, times: int | None = None, path_prefix: str | None = None, *, writes: bool = False
    ) -> Fault:
        """Reset the connection of matching requests without any response."""
        return self._add(Fault("drop", times, path_prefix, writes))

    def too_many_requests(
        self, times: int | None = None, path_prefix: str | None = None, *, writes: bool = False
    ) -> Fault:
        """Answer matching requests ``429 Too Many Requests`` (rate limiting) and close."""
        return self._add(Fault("429", times, path_prefix, writes, 429, "Too Many Requests"))

    def clear(self) -> None:
        """Remove every rule; hanging requests resume and are answered normally."""
        self.rules.clear()
        if self._release is not None:
            self._release.set()
            self._release = None

    def take(self, method: str, path: str) -> Fault | None:
        for fault in self.rules:
            if fault.matches(method, path):
                fault.hits += 1
                return fault
        return None

    async def wait_released(self) -> None:
        if self._release is None:
            self._release = asyncio.Event()
        await self._release.wait()
