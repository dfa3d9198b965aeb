"""The publisher's per-node source of listeners, routes and extra clusters, rendered from sets.

A node's set is chosen by the rules; its render is cached by (set, set generation, node fields
the set reads, services, vars), so 1,000 nodes of one group render once and an endpoint-only
change renders nothing (unless the set reads ``healthy``, ``total`` or ``ports``). On an error
the node keeps its last good resources (:meth:`TemplateSource.node_resources` returns None; a
node never rendered gets no listeners, routes or clusters at all) and the error is kept in
:attr:`TemplateSource.errors`. Every set is also rendered against the sample data when it is
loaded (:attr:`TemplateSource.set_problems`): the bridge is not ready while the default set
cannot render.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2

from xds_server.resource import Resource

from ..catalog import Catalog
from ..config import Config, ConfigError
from ..resources import BuildSettings
from .context import ChainRoutes, NodeContext, ServiceContexts, node_context, template_context
from .errors import TemplateError
from .rendering import render_set
from .rules import Rule, parse_rules, select_set
from .samples import sample_problem
from .sets import BUNDLED_DIR, TemplateSet, TemplateSets
from .settling import SETTLE_SECONDS, Settle
from .watching import Reloaded

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
    """Implements the publisher's ``NodeConfigSource`` with cached templates.

    :meth:`reload` re-reads the files (the bridge's :class:`~.watching.TemplateWatcher` calls
    it on every edit); an edit that looks half-written is held for ``settle`` seconds first
    (:mod:`.settling`). Raises :class:`~bridge.config.ConfigError` (a ValueError) naming the
    setting when the sets the settings name cannot be loaded.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        default_set: str = "default",
        rules: Sequence[Rule] = (),
        variables: Mapping[str, Any] | None = None,
        build: BuildSettings | None = None,
        cache_size: int = 1024,
        settle: float = SETTLE_SECONDS,
        traffic: TrafficViews | None = None,
    ) -> None:
        """``traffic``: the compiled chains of Consul's config entries (``svc.routes`` ...); the
        bridge sets it when it builds its publisher."""
        self.traffic = traffic
        self.directory = Path(directory) if directory else BUNDLED_DIR
        self.default_set = default_set
        self.rules = tuple(rules)
        self.variables = dict(variables or {})
        self.build = build or BuildSettings()
        self.cache_size = cache_size
        self.settle = Settle(settle)
        self._sets = TemplateSets(self.directory, self.settle)
        self._services = ServiceContexts(self.build)
        self._catalog_stamp: tuple[int, int, int] | None = None
        self._cache: dict[_Key, _Result] = {}
        #: Latest error per node key (cleared by its next good render).
        self.errors: dict[str, RecordedError] = {}
        #: Sets that cannot render for the sample nodes → the first reason.
        self.set_problems: dict[str, str] = {}
        #: Failed renders by template set (each cached failure counts once).
        self.render_errors_total: Counter[str] = Counter()
        #: Renders by template set (cache misses).
        self.renders_total: Counter[str] = Counter()
        self._sets.reload()
        self._check_loaded()
        for name in self.sets:  # not logged here: serve refuses, the bridge logs at start
            self._check_sample(name, report=False)

    def _check_loaded(self) -> None:
        if self._sets.read_errors:
            name, problem = min(self._sets.read_errors.items())
            raise ConfigError("templates.dir", f"template set {name!r}: {problem}")
        if not self.sets:
            raise ConfigError("templates.dir", f"no template sets in {self.directory}")
        if self.default_set not in self.sets:
            raise ConfigError(
                "templates.default_set",
                f"template set {self.default_set!r} not found in {self.directory} "
                f"(sets there: {', '.join(sorted(self.sets))})",
            )
        missing = sorted({r.template_set for r in self.rules} - set(self.sets))
        if missing:
            raise ConfigError(
                "templates.rules",
                f"template sets not found in {self.directory}: {', '.join(missing)}",
            )

    @property
    def sets(self) -> Mapping[str, TemplateSet]:
        """The loaded sets by name."""
        return self._sets.by_name

    # ------------------------------------------------------------ loading
    def reload(self) -> Reloaded:
        """Re-read every set; sets whose files changed get a new generation and are checked
        against the sample data. Held edits are read again after ``recheck_in`` seconds."""
        previous_read_errors = dict(self._sets.read_errors)
        changed = self._sets.reload()
        for name, problem in sorted(self._sets.read_errors.items()):
            if previous_read_errors.get(name) != problem:
                log.error("template set %r keeps its previous files: %s", name, problem)
        for name in changed:
            self._check_sample(name)
        if changed:
            self._cache = {k: v for k, v in self._cache.items() if k[0] not in changed}
        return Reloaded(tuple(changed), self.settle.recheck_in())

    def _check_sample(self, name: str, report: bool = True) -> None:
        tset = self.sets.get(name)
        problem = None if tset is None else sample_problem(tset, self.rules, self.variables)
        if problem is None:
            self.set_problems.pop(name, None)
            return
        if report and self.set_problems.get(name) != problem:
            log.error("template set %r cannot render for the sample nodes: %s", name, problem)
        self.set_problems[name] = problem

    # ------------------------------------------------------------ health
    @property
    def default_problem(self) -> str | None:
        """Why the default set cannot render now (None: it can); the bridge is not ready."""
        if self.default_set not in self.sets:
            return f"template set {self.default_set!r} does not exist in {self.directory}"
        return self.set_problems.get(self.default_set)

    def failing_sets(self) -> dict[str, str]:
        """Set name → what fails: for the sample nodes, or for how many connected node keys."""
        failing = {name: f"cannot render: {problem}" for name, problem in self.set_problems.items()}
        by_set: dict[str, list[RecordedError]] = {}
        for error in self.errors.values():
            by_set.setdefault(error.template_set, []).append(error)
        for name, errors in by_set.items():
            latest = max(errors, key=lambda e: e.at)
            failing.setdefault(name, f"fails for {len(errors)} node key(s): {latest.message}")
        return dict(sorted(failing.items()))

    def held_edits(self) -> dict[str, str]:
        """Set name → why its latest edit is held (not applied yet)."""
        return {name: held.reason for name, held in sorted(self.settle.held.items())}

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
            log.error(
                "template error (the node is sent no listeners/routes from it and keeps what it "
                "has): %s",
                message,
            )
        self.errors[key] = RecordedError(message, set_name, time.time())


def template_source_from_config(config: Config, build: BuildSettings) -> TemplateSource:
    """Build the source from ``templates.*`` settings; ConfigError names a bad rule or set."""
    try:
        rules = parse_rules(config["templates.rules"])
    except ValueError as exc:
        raise ConfigError("templates.rules", str(exc), config.source("templates.rules")) from None
    return TemplateSource(
        config["templates.dir"] or None,
        default_set=config["templates.default_set"],
        rules=rules,
        variables=config["templates.vars"],
        build=build,
    )
