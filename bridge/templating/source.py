"""The publisher's per-node source of listeners, routes and extra clusters, rendered from sets.

A node's set is chosen by the rules; its render is cached by (set, set generation, node fields
the set reads, services, vars), so 1,000 nodes of one group render once and an endpoint-only
change renders nothing (unless the set reads ``healthy``, ``total`` or ``ports``). On an error
the node keeps its last good resources (:meth:`TemplateSource.node_resources` returns None) and
the error is kept in :attr:`TemplateSource.errors`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2

from xds_server.resource import Resource

from ..catalog import Catalog
from ..config import Config
from ..resources import BuildSettings
from .checks import precheck
from .context import ChainRoutes, NodeContext, ServiceContexts, node_context, template_context
from .errors import TemplateError
from .rendering import render_set
from .rules import Rule, parse_rules, select_set
from .sets import BUNDLED_DIR, TemplateSet, TemplateSets
from .watching import TemplateWatcher

log = logging.getLogger("bridge.templating")  # one logger for the package

_Key = tuple[Any, ...]
_Result = tuple[Resource, ...] | TemplateError


@dataclass(frozen=True, slots=True)
class RecordedError:
    """The latest template error of one node key (for the metric and the debug view)."""

    message: str
    template_set: str
    at: float  # time.time()


class TrafficViews(Protocol):
    """The compiled chains templates see (``bridge.chains.Traffic``)."""

    @property
    def views(self) -> Mapping[str, ChainRoutes]: ...
    @property
    def generation(self) -> int: ...


def node_error(problem: str, node: base_pb2.Node, key: str) -> str:
    """A template problem as reported for one node: the problem, then who hit it."""
    return f"{problem} (node {node.id!r}, cluster {node.cluster!r}, key {key!r})"


class TemplateSource:
    """Implements the publisher's ``NodeConfigSource`` with cached, hot-reloaded templates.

    :meth:`start` watches the directory: an edit that changes a set is applied within about
    0.1 s and then ``on_change`` is called (the bridge re-publishes every node).
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        default_set: str = "default",
        rules: Sequence[Rule] = (),
        variables: Mapping[str, Any] | None = None,
        build: BuildSettings | None = None,
        on_change: Callable[[], None] | None = None,
        cache_size: int = 1024,
        traffic: TrafficViews | None = None,
    ) -> None:
        """``traffic``: the compiled chains (``svc.routes`` ...); the bridge sets it when it
        builds its publisher, as it sets ``on_change``."""
        self.traffic = traffic
        self.directory = Path(directory) if directory else BUNDLED_DIR
        self.default_set = default_set
        self.rules = tuple(rules)
        self.variables = dict(variables or {})
        self.build = build or BuildSettings()
        self.on_change = on_change
        self.cache_size = cache_size
        self._sets = TemplateSets(self.directory)
        self._services = ServiceContexts(self.build)
        self._catalog_stamp: tuple[int, int, int] | None = None
        self._cache: dict[_Key, _Result] = {}
        self._watcher = TemplateWatcher(self.directory, self.reload, self._changed)
        #: Latest error per node key (cleared by its next good render).
        self.errors: dict[str, RecordedError] = {}
        #: Failed renders by template set (each cached failure counts once).
        self.render_errors_total: Counter[str] = Counter()
        #: Renders by template set (cache misses).
        self.renders_total: Counter[str] = Counter()
        self.reload()
        missing = {r.template_set for r in self.rules} | {default_set}
        missing -= set(self.sets)
        if missing:
            raise ValueError(
                f"template sets not found in {self.directory}: {', '.join(sorted(missing))}"
            )

    @property
    def sets(self) -> Mapping[str, TemplateSet]:
        """The loaded sets by name."""
        return self._sets.by_name

    # ------------------------------------------------------------ loading
    def reload(self) -> list[str]:
        """Re-read every set; sets whose files changed get a new generation. Returns them."""
        changed = self._sets.reload()
        for name in changed:
            if name in self.sets:
                for problem in precheck(self.sets[name]):
                    log.error("%s", problem)
        if changed:
            self._cache = {k: v for k, v in self._cache.items() if k[0] not in changed}
        return changed

    # ------------------------------------------------------------ NodeConfigSource
    def node_resources(
        self, key: str, node: base_pb2.Node, catalog: Catalog, services_changed: bool
    ) -> Sequence[Resource] | None:
        """Listeners/routes/clusters of ``key``; None (keep the last good ones) on error."""
        context_node = node_context(node)
        set_name = select_set(self.rules, context_node, self.default_set)
        tset = self.sets.get(set_name)
        if tset is None:
            self._record(key, set_name, f"template set {set_name!r} does not exist", node)
            return None
        self._update_services(catalog)
        cache_key = (
            set_name,
            tset.generation,
            context_node.key_part(tset.node_fields),
            self._services.token(tset.volatile),
        )
        result = self._cache.get(cache_key)
        if result is None:
            result = self._render(tset, context_node)
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[cache_key] = result
        if isinstance(result, TemplateError):
            self._record(key, set_name, str(result), node)
            return None
        self.errors.pop(key, None)
        return result

    def _update_services(self, catalog: Catalog) -> None:
        """Refresh the service contexts: O(1) when the catalog's ``generation`` is unchanged."""
        traffic = self.traffic
        stamp = (id(catalog), catalog.generation, traffic.generation if traffic else -1)
        if stamp == self._catalog_stamp:
            return
        self._catalog_stamp = stamp
        self._services.update(catalog.views(), traffic.views if traffic else None)

    def key_released(self, key: str) -> None:
        """The last stream of ``key`` went: forget its recorded error."""
        self.errors.pop(key, None)

    def _render(self, tset: TemplateSet, node: NodeContext) -> _Result:
        self.renders_total[tset.name] += 1
        services = self._services.services
        context = template_context(node, services, self.variables)
        try:
            return render_set(tset, context, (c for s in services for c in s.clusters))
        except TemplateError as exc:
            self.render_errors_total[tset.name] += 1
            return exc

    def _record(self, key: str, set_name: str, problem: str, node: base_pb2.Node) -> None:
        message = node_error(problem, node, key)
        previous = self.errors.get(key)
        if previous is None or previous.message != message:
            log.error("template error, keeping the last good listeners/routes: %s", message)
        self.errors[key] = RecordedError(message, set_name, time.time())

    # ------------------------------------------------------------ hot reload
    async def start(self) -> None:
        """Watch the templates directory: from now on, every edit is applied."""
        await self._watcher.start()

    async def stop(self) -> None:
        await self._watcher.stop()

    def _changed(self) -> None:
        # Read at call time: the bridge sets ``on_change`` after building the source.
        if self.on_change is not None:
            self.on_change()


def template_source_from_config(
    config: Config, build: BuildSettings, on_change: Callable[[], None]
) -> TemplateSource:
    """Build the source from ``templates.*`` settings; ValueError names a bad rule or set."""
    return TemplateSource(
        config["templates.dir"] or None,
        default_set=config["templates.default_set"],
        rules=parse_rules(config["templates.rules"]),
        variables=config["templates.vars"],
        build=build,
        on_change=on_change,
    )
