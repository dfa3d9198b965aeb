"""The fleet-wide answer to a NACK: roll a shared resource back to the version served before it.

The stream core isolates the resource a node rejected and refuses it for that node
(:mod:`xds_server.isolation`); :class:`NackReports` hears of it and asks the publisher to act
for everyone. For the clusters and endpoint assignments built from Consul (shared by every
node), :class:`Rollbacks` serves the version that was served before the rejected one, so nodes
that connect later get a version known to work instead of rejecting and isolating it again. A
NACK never removes a resource: with no earlier version, the rejected one stays served (each
node that rejects it refuses it by itself), and the quarantine entry says so. Per-node
listeners and routes are recorded under their node key while that version is served to it, not
rolled back (each node refuses what it rejected).

A rollback lasts until the resource's content changes (the operator fixed it in Consul, or
anything else changed it): the new version is tried. One hostile node can cause at most
``cap`` rollbacks per type per ``window`` seconds (:class:`NackReports`); beyond that a NACK
is logged and only refused by the node itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from xds_server.resource import CLUSTER, ENDPOINT, SHORT_NAMES, Resource, ResourceSet
from xds_server.text import clip
from xds_server.tracking import BaseObserver, StreamInfo

from .gate import NACK, Problem
from .quarantine import Quarantine

log = logging.getLogger("bridge.quarantine")

#: The types built from Consul and shared by every node: the ones a NACK can roll back.
SHARED_TYPES = (CLUSTER, ENDPOINT)


def nack_scope(type_url: str, name: str) -> str:
    return f"nack:{SHORT_NAMES.get(type_url, type_url)}:{name}"


def chain_scope(type_url: str, name: str) -> str:
    """The quarantine scope of a config entries chain's cluster or endpoint assignment."""
    return f"chain:{SHORT_NAMES.get(type_url, type_url)}:{name}"


class Rollbacks:
    """Per shared resource: the version served before the current one, and rejected versions."""

    def __init__(self, quarantine: Quarantine) -> None:
        self.quarantine = quarantine
        self._previous: dict[tuple[str, str], Resource] = {}
        self._rejected: dict[tuple[str, str], str] = {}  # -> the version a node rejected

    def admit(self, served: ResourceSet, resource: Resource) -> bool:
        """Whether a newly built ``resource`` replaces what ``served`` has: not when it is
        the very version a node rejected (the rollback stays)."""
        key = (resource.type_url, resource.name)
        rejected = self._rejected.get(key)
        if rejected == resource.version:
            return False
        if rejected is not None:  # new content: try it
            del self._rejected[key]
            self.quarantine.clear(nack_scope(*key))
        current = served.get(resource.name)
        if current is not None and current.version != resource.version:
            self._previous[key] = current
        return True

    def forget(self, type_url: str, name: str) -> None:
        """The resource is gone (its service deregistered)."""
        self._previous.pop((type_url, name), None)
        if self._rejected.pop((type_url, name), None) is not None:
            self.quarantine.clear(nack_scope(type_url, name))

    @property
    def rolled_back(self) -> dict[tuple[str, str], str]:
        """Per (type URL, name) the version rejected and not served."""
        return dict(self._rejected)

    def is_rolled_back(self, type_url: str, name: str, version: str) -> bool:
        return self._rejected.get((type_url, name)) == version

    def reject(
        self, served: ResourceSet, resource: Resource, source: str, message: str
    ) -> Resource | None:
        """A node rejected ``resource`` of ``served``; returns the version to serve instead
        (None: keep serving what is served) and files the quarantine entry."""
        current = served.get(resource.name)
        if current is None or current.version != resource.version:
            return None  # no longer served: what is served now is newer
        key = (resource.type_url, resource.name)
        previous = self._previous.get(key)
        self._rejected[key] = resource.version
        replacement = None
        if previous is not None and previous.version != resource.version:
            replacement = previous
            action = "rolled back to the version served before it, until its content changes"
        else:
            action = "still served (no earlier version); each node that rejects it refuses it"
        problem = nack_problem(resource, source, message, action)
        self.quarantine.set(nack_scope(resource.type_url, resource.name), [problem])
        return replacement


def nack_problem(resource: Resource, source: str, message: str, action: str) -> Problem:
    kind = SHORT_NAMES.get(resource.type_url, "other")
    return Problem(
        kind, resource.name, NACK, source, f"rejected by Envoy: {clip(message, 300)}", action
    )


class RejectionSink(Protocol):
    def rejected(
        self, type_url: str, resource: Resource, source: str, message: str, node_key: str
    ) -> None: ...


class NackReports(BaseObserver):
    """Hears the streams' isolated rejections and passes at most ``cap`` per type per
    ``window`` seconds on to the publisher (the rest: one log line per window)."""

    def __init__(
        self,
        sink: RejectionSink,
        cap: int = 8,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.cap = cap
        self.window = window
        self.clock = clock
        self._recent: dict[str, list[float]] = {}
        self._seen: set[tuple[str, str, str]] = set()  # bounded with the recent reports

    def resource_rejected(
        self, stream: StreamInfo, type_url: str, resource: Resource, message: str
    ) -> None:
        key = (type_url, resource.name, resource.version)
        if key in self._seen:
            return  # another node rejecting the same version: already handled
        now = self.clock()
        recent = [t for t in self._recent.get(type_url, []) if now - t < self.window]
        if len(recent) >= self.cap:
            if len(recent) == self.cap:
                log.warning(
                    "node %r rejected %s %r: %d rejections were acted on fleet-wide in the last "
                    "%gs (the cap); only the nodes that reject it refuse it",
                    stream.node_label,
                    SHORT_NAMES.get(type_url, type_url),
                    clip(resource.name),
                    self.cap,
                    self.window,
                )
                recent.append(now)  # logged once per window
            self._recent[type_url] = recent
            return
        recent.append(now)
        self._recent[type_url] = recent
        if len(self._seen) > 4 * self.cap * len(SHORT_NAMES):
            self._seen.clear()
        self._seen.add(key)
        source = f"NACK from node {stream.node_label!r}"
        self.sink.rejected(type_url, resource, source, message, stream.node_key)
