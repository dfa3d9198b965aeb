"""The publisher's traffic source: config entries → chains → resources, views and warnings.

:class:`Traffic` ties the pieces together. The publisher hands it each config entries table
(:meth:`Traffic.set_entries`) and asks it, in every rebuild, what changes in the shared cluster
and endpoint sets (:meth:`Traffic.rebuild`: only the services whose chains depend on what
changed are compiled again, only the target clusters whose definition or instances changed are
built again). Templates read :attr:`Traffic.views` (with :attr:`Traffic.generation` to know when
they changed), gRPC nodes :attr:`Traffic.grpc_variants`, the admin listener
:meth:`Traffic.debug_view` and the metrics :meth:`Traffic.quarantined_counts`.

Every problem is logged at WARNING once, naming the entry and the field: an entry quarantined
when read, a service whose entries no longer compile (it keeps its last good chain), and what
proxyless gRPC clients cannot do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from xds_server.resource import Resource

from ..catalog import Catalog
from ..config_entries import ConfigEntriesUpdate
from ..resources import BuildSettings
from ..traffic import Chain, EntryKey, EntryProblem, Target, TargetCluster, grpc_chain
from .clusters import ChainClusters, ClusterChanges
from .table import ChainTable, ServiceChain, State
from .views import RouteView, debug_view, route_view

log = logging.getLogger(__name__)


class Traffic:
    """Chains compiled from the config entries, and what they add to every node's resources."""

    def __init__(self, settings: BuildSettings) -> None:
        self.settings = settings
        self.table = ChainTable()
        self.clusters = ChainClusters(settings)
        #: Per service with a non-default chain: its routes for templates.
        self.views: dict[str, RouteView] = {}
        #: Bumped whenever :attr:`views` change.
        self.generation = 0
        self.index = 0  # X-Consul-Index of the entries table last taken
        self._origin = 0.0  # when the last entries change was read
        self._pending: set[EntryKey] = set()
        self._names: frozenset[str] = frozenset()
        self._grpc: dict[str, tuple[Chain, Chain, tuple[EntryProblem, ...]]] = {}
        self._logged_entries: frozenset[EntryProblem] = frozenset()
        self._logged_services: dict[str, ServiceChain] = {}

    @property
    def grpc_variants(self) -> Mapping[str, Resource]:
        return self.clusters.grpc_variants

    # ------------------------------------------------------------ inputs
    def set_entries(self, update: ConfigEntriesUpdate) -> bool:
        """Take a config entries table; whether anything in it changed."""
        keys = self.table.set_entries(update.datacenter, update.entries)
        self.index = update.index
        if not keys:
            return False
        self._pending |= keys
        self._origin = update.received_at or time.monotonic()
        self._log_entry_problems()
        return True

    def rebuild(self, changed: Mapping[str, float], catalog: Catalog) -> ClusterChanges:
        """What the chains change in the shared sets after the catalog's ``changed`` services
        (name → when) and the entries taken since the last rebuild."""
        names = frozenset(catalog.names())
        previous = self._names
        keys, self._pending = self._pending, set()
        if not keys and not self.table.chains and not self.clusters.names:
            self._names = names
            return ClusterChanges()  # no entries: nothing to add
        try:
            changes = self._rebuild(keys, names ^ previous, names, changed, catalog)
        except Exception:
            # A bug, not bad data (entries are checked when read): serve what was served, and
            # try again with the next change.
            log.exception("applying config entries failed; serving what was served before")
            self._pending |= keys
            return ClusterChanges()
        self._names = names
        return changes

    def _rebuild(
        self,
        keys: set[EntryKey],
        membership: frozenset[str],
        names: frozenset[str],
        changed: Mapping[str, float],
        catalog: Catalog,
    ) -> ClusterChanges:
        recompiled = self.table.compile(self.table.affected(keys, membership, names), names)
        if recompiled:
            self._refresh(recompiled)
        targets = {t: c for t, (_, c) in self.table.target_clusters().items()}
        # Definitions change with the entries, or with the catalog's membership.
        origin = self._origin if keys else min(changed.values(), default=time.monotonic())
        return self.clusters.update(
            targets, self._grpc_targets(), self.table.datacenter, catalog, changed, origin
        )

    # ------------------------------------------------------------ views
    def _refresh(self, services: Iterable[str]) -> None:
        views_changed = False
        for service in sorted(services):
            served = self.table.chains.get(service)
            chain = served.chain if served is not None else None
            self._log_service(service, served)
            if chain is None:
                self._grpc.pop(service, None)
                views_changed |= self.views.pop(service, None) is not None
                continue
            known = self._grpc.get(service)
            if known is None or known[0] is not chain:
                reduced, warnings = grpc_chain(chain)
                self._log_grpc(service, warnings, known[2] if known else ())
                self._grpc[service] = (chain, reduced, warnings)
            reduced = self._grpc[service][1]
            view = None if chain.default else route_view(chain, reduced, self.settings)
            if view != self.views.get(service):
                views_changed = True
                if view is None:
                    del self.views[service]
                else:
                    self.views[service] = view
        if views_changed:
            self.generation += 1

    def _grpc_targets(self) -> dict[Target, TargetCluster]:
        return {c.target: c for _, reduced, _ in self._grpc.values() for c in reduced.clusters}

    def debug_view(self) -> dict[str, Any]:
        grpc = {service: warnings for service, (_, _, warnings) in self._grpc.items()}
        return debug_view(self.table, self.settings, self.index, grpc)

    def quarantined_counts(self) -> dict[str, int]:
        """Entries kept out of use: ``invalid`` (refused when read) and ``conflict`` (usable on
        their own, but a chain that needs them does not compile)."""
        invalid = set(self.table.entries.quarantined)
        conflicting = {
            p.key for problems in self.table.problems().values() for p in problems
        } - invalid
        return {"invalid": len(invalid), "conflict": len(conflicting)}

    # ------------------------------------------------------------ warnings
    def _log_entry_problems(self) -> None:
        current = frozenset(self.table.entries.problems)
        for problem in sorted(current - self._logged_entries):
            log.warning("config entry quarantined (not used): %s", problem)
        for key in sorted({p.key for p in self._logged_entries} - {p.key for p in current}):
            if key in self.table.entries.entries:
                log.info("config entry %s %r is valid again", *key)
        self._logged_entries = current

    def _log_service(self, service: str, served: ServiceChain | None) -> None:
        before = self._logged_services.get(service)
        if served is None:
            self._logged_services.pop(service, None)
            return
        self._logged_services[service] = served
        if before is not None and before.problems == served.problems:
            return
        problems = "; ".join(str(p) for p in served.problems)
        if served.state is State.LAST_GOOD:
            log.warning("service %r keeps its last good routing: %s", service, problems)
        elif served.state is State.FALLBACK:
            left_out = ", ".join(f"{kind} {name!r}" for kind, name in served.left_out)
            log.warning(
                "service %r has no good routing from its entries yet: served without %s: %s",
                service,
                left_out,
                problems,
            )
        elif served.state is State.NONE:
            log.warning(
                "service %r has no good routing from its entries yet: served as without "
                "entries: %s",
                service,
                problems,
            )
        elif before is not None and before.problems:
            log.info("service %r: its config entries compile again", service)

    def _log_grpc(
        self,
        service: str,
        warnings: tuple[EntryProblem, ...],
        before: tuple[EntryProblem, ...],
    ) -> None:
        for warning in sorted(set(warnings) - set(before)):
            log.warning("service %r, proxyless gRPC clients: %s", service, warning)
