"""Checks on a whole set: every file compiles, and the rendered resources agree with each other.

Duplicate names, routes to a cluster that is neither a Consul service nor one of the set's
clusters, and an RDS name no rendered route configuration has are errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jinja2
from google.protobuf import json_format
from google.protobuf.message import Message

from .errors import TemplateError
from .sets import TemplateSet


def precheck(tset: TemplateSet) -> list[str]:
    """Syntax errors of every file of a set (rendering finds the rest)."""
    problems = []
    for file in sorted(tset.sources):
        try:
            tset.environment.get_template(file)
        except jinja2.TemplateSyntaxError as exc:
            error = TemplateError(tset.name, exc.name or file, exc.lineno, exc.message or "")
            problems.append(str(error))
    return problems


def _references(value: Any, into: dict[str, set[str]]) -> None:
    """Collect cluster names routed to and RDS route configuration names (JSON form)."""
    if isinstance(value, dict):
        route = value.get("route")
        if isinstance(route, dict):
            if isinstance(route.get("cluster"), str):
                into["clusters"].add(route["cluster"])
            weighted = route.get("weightedClusters", route.get("weighted_clusters"))
            if isinstance(weighted, dict):
                for item in weighted.get("clusters", ()):
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        into["clusters"].add(item["name"])
        rds = value.get("rds")
        if isinstance(rds, dict):
            name = rds.get("routeConfigName", rds.get("route_config_name"))
            if isinstance(name, str):
                into["routes"].add(name)
        for child in value.values():
            _references(child, into)
    elif isinstance(value, list):
        for child in value:
            _references(child, into)


def check_consistency(
    tset: TemplateSet, rendered: Mapping[str, Sequence[Message]], known_clusters: Iterable[str]
) -> None:
    """Duplicate names, routes to unknown clusters and dangling RDS names are errors."""
    files = dict((k, f) for f, k in tset.render_files)
    for kind, messages in rendered.items():
        seen: set[str] = set()
        for message in messages:
            name = str(getattr(message, "name", ""))
            if not name:
                raise TemplateError(tset.name, files[kind], None, f"a {kind} item has no name")
            if name in seen:
                raise TemplateError(tset.name, files[kind], None, f"duplicate {kind} {name!r}")
            seen.add(name)
    clusters = set(known_clusters) | {m.name for m in rendered.get("clusters", ())}  # type: ignore[attr-defined]
    routes = {m.name for m in rendered.get("routes", ())}  # type: ignore[attr-defined]
    for kind in ("listeners", "routes"):
        refs: dict[str, set[str]] = {"clusters": set(), "routes": set()}
        for message in rendered.get(kind, ()):
            _references(json_format.MessageToDict(message), refs)
        unknown_clusters = sorted(refs["clusters"] - clusters)
        if unknown_clusters:
            raise TemplateError(
                tset.name,
                files[kind],
                None,
                f"routes to clusters that are neither Consul services nor in the set's "
                f"clusters file: {', '.join(unknown_clusters)}",
            )
        unknown_routes = sorted(refs["routes"] - routes)
        if unknown_routes:
            raise TemplateError(
                tset.name,
                files[kind],
                None,
                f"RDS route configurations that no routes file renders: "
                f"{', '.join(unknown_routes)}",
            )
