"""What the publisher keeps per node key: the last good listeners, routes and extra clusters the
templates rendered for it, and everything on record about them.

:meth:`NodeKeys.accept` puts a render through the validation gate (:func:`.gate.gate_render`,
computed once per render and served catalog: 1,000 keys of one group share it): an accepted
render becomes the key's last good resources; a refused one leaves them as they were and is
recorded like a template error (:attr:`NodeKeys.refused_renders`, counted by template set). The
key's quarantine scope (``key:<key>``) holds the gate's problems and the NACKs of its own
resources while the rejected version is still what the key is served.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

from xds_server.resource import CLUSTER, LISTENER, ROUTE, Resource, ResourceSet

from .gate import NACK, GatedRender, Problem, gate_render
from .quarantine import Quarantine

log = logging.getLogger("bridge.publisher")

GATED_RENDERS_KEPT = 256  # gate verdicts cached by render


@dataclass(frozen=True, slots=True)
class NodeExtras:
    """The last good per-node resources of one key."""

    clusters: tuple[Resource, ...]
    listeners: ResourceSet
    routes: ResourceSet

    def all(self) -> list[Resource]:
        return [*self.clusters, *self.listeners.values(), *self.routes.values()]

    @classmethod
    def of(cls, resources: Sequence[Resource]) -> NodeExtras:
        return cls(
            clusters=tuple(r for r in resources if r.type_url == CLUSTER),
            listeners=ResourceSet(LISTENER, [r for r in resources if r.type_url == LISTENER]),
            routes=ResourceSet(ROUTE, [r for r in resources if r.type_url == ROUTE]),
        )


@dataclass(frozen=True, slots=True)
class RefusedRender:
    """What the gate refused of a node key's render (the key keeps its last good config)."""

    message: str
    node: base_pb2.Node
    at: float  # time.time()


class NodeKeys:
    """Per open node key: last good extras, refused renders, NACKs of its own resources."""

    def __init__(
        self, quarantine: Quarantine, set_of: Callable[[base_pb2.Node], str] = lambda node: ""
    ) -> None:
        """``set_of(node)`` names the template set a node uses (refusals are counted by it)."""
        self.quarantine = quarantine
        self.set_of = set_of
        self.extras: dict[str, NodeExtras] = {}
        #: The latest render the gate refused, per key (cleared by a good one).
        self.refused_renders: dict[str, RefusedRender] = {}
        #: Refused renders by template set (each distinct refusal of a key counts once).
        self.refused_renders_total: Counter[str] = Counter()
        self._gated: dict[int, tuple[Sequence[Resource], int, GatedRender]] = {}
        self._nacks: dict[str, dict[tuple[str, str], tuple[str, Problem]]] = {}

    def accept(
        self,
        key: str,
        node: base_pb2.Node,
        rendered: Sequence[Resource],
        services: Collection[str],
        generation: int,
    ) -> NodeExtras | None:
        """Gate ``rendered`` (against the served ``services`` of catalog ``generation``); returns
        the key's extras: the new ones, or its last good ones when the render is refused."""
        gated = self._gate(rendered, services, generation)
        if gated.resources is None:
            self._refuse(key, node, gated)
        else:
            self.refused_renders.pop(key, None)
            self.extras[key] = NodeExtras.of(gated.resources)
        self._file(key, gated.problems)
        return self.extras.get(key)

    def nacked(self, key: str, resource: Resource, problem: Problem) -> None:
        """A node of ``key`` rejected one of the key's own resources (not rolled back)."""
        entry = (resource.version, problem)
        self._nacks.setdefault(key, {})[(resource.type_url, resource.name)] = entry
        self._file(key, None)

    def release(self, key: str) -> None:
        self.extras.pop(key, None)
        self.refused_renders.pop(key, None)
        self._nacks.pop(key, None)
        self.quarantine.clear(f"key:{key}")

    def _file(self, key: str, gated: Sequence[Problem] | None) -> None:
        """File what is kept from ``key``: the gate's problems with its render (None: as filed)
        and the NACKs of its own resources whose rejected version it is still served."""
        if gated is None:
            gated = [p for p in self.quarantine.of(f"key:{key}") if p.reason != NACK]
        nacked = self._nacks.get(key, {})
        extras = self.extras.get(key)
        served = {(r.type_url, r.name): r.version for r in extras.all()} if extras else {}
        for gone in [k for k, (version, _) in nacked.items() if served.get(k) != version]:
            del nacked[gone]
        self.quarantine.set(f"key:{key}", [*gated, *(p for _, p in nacked.values())])

    def _gate(
        self, rendered: Sequence[Resource], services: Collection[str], generation: int
    ) -> GatedRender:
        memo = self._gated.get(id(rendered))
        if memo is not None and memo[0] is rendered and memo[1] == generation:
            return memo[2]
        gated = gate_render(rendered, frozenset(services))
        if len(self._gated) >= GATED_RENDERS_KEPT:
            self._gated.pop(next(iter(self._gated)))
        self._gated[id(rendered)] = (rendered, generation, gated)
        return gated

    def _refuse(self, key: str, node: base_pb2.Node, gated: GatedRender) -> None:
        """Record a refused render like a template error: once per key and distinct problem."""
        message = "; ".join(p.describe() for p in gated.problems)
        previous = self.refused_renders.get(key)
        if previous is None or previous.message != message:
            self.refused_renders_total[self.set_of(node)] += 1
            log.error(
                "node key %r: the rendered listeners/routes were refused, keeping the last good "
                "ones: %s",
                key,
                message,
            )
        self.refused_renders[key] = RefusedRender(message, node, time.time())
