"""Per-node listeners, routes and extra clusters rendered from Jinja2 template sets.

A template *set* is a directory under the templates directory (default: the bundled
``templates/`` next to the ``bridge`` package) holding ``listeners.yaml.j2``, ``routes.yaml.j2``
and optionally ``clusters.yaml.j2`` (``.json.j2`` works too). Each renders a YAML (or JSON) list
of ``Listener`` / ``RouteConfiguration`` / ``Cluster`` objects in protobuf's JSON mapping (typed
``Any`` via ``"@type"``). Other files (``_macros.j2``…) can be included or imported.

Rendering is sandboxed (``ImmutableSandboxedEnvironment``, ``StrictUndefined``) and strict:
unknown fields, wrong types, duplicate names, a route to a cluster that is neither a Consul
service nor one of the set's clusters, and an RDS name no rendered route configuration has are
errors. An error names the set, file, line and node; the node keeps its last good resources
(:meth:`node_resources` returns None) and the error is kept in :attr:`TemplateSource.errors`.

Results are cached by (set, set generation, node fields the set reads, services, vars), so 1,000
nodes of one group render once and an endpoint-only change renders nothing (unless the set reads
``healthy``, ``total`` or ``ports``; see :mod:`bridge.template_context`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from xds_server.resource import Resource, make_resource

from .catalog import Catalog, ServiceUpdate
from .config import Config
from .model import Check, Instance
from .resources import BuildSettings, build_service
from .template_context import (
    NodeContext,
    Rule,
    ServiceContexts,
    node_context,
    node_fields_read,
    parse_rules,
    select_set,
    volatile_fields_read,
)

log = logging.getLogger(__name__)


def _bundled_dir() -> Path:
    """``templates/`` at the top of the source tree (a checkout or an editable install), else
    ``<prefix>/share/consul-xds-bridge/templates`` (where a wheel's data files would put it)."""
    in_tree = Path(__file__).resolve().parent.parent / "templates"
    installed = Path(sys.prefix) / "share" / "consul-xds-bridge" / "templates"
    return in_tree if in_tree.is_dir() or not installed.is_dir() else installed


#: The bundled template sets.
BUNDLED_DIR = _bundled_dir()

#: File stem → the message each item of its list is parsed into.
KINDS: Mapping[str, type[Message]] = {
    "listeners": listener_pb2.Listener,
    "routes": route_pb2.RouteConfiguration,
    "clusters": cluster_pb2.Cluster,
}
_SUFFIXES = (".yaml.j2", ".yml.j2", ".json.j2")

#: Extensions whose messages may appear as typed ``Any`` in templates (imported for ParseDict).
_EXTENSION_MODULES = (
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.http.cors.v3.cors_pb2",
    "envoy.extensions.filters.http.fault.v3.fault_pb2",
    "envoy.extensions.filters.http.health_check.v3.health_check_pb2",
    "envoy.extensions.filters.http.local_ratelimit.v3.local_rate_limit_pb2",
    "envoy.extensions.filters.http.grpc_web.v3.grpc_web_pb2",
    "envoy.extensions.filters.http.buffer.v3.buffer_pb2",
    "envoy.extensions.filters.http.lua.v3.lua_pb2",
    "envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.access_loggers.stream.v3.stream_pb2",
    "envoy.extensions.access_loggers.file.v3.file_pb2",
    "envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2",
)
for _module in _EXTENSION_MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(_module)


#: libyaml's safe loader when PyYAML was built with it (about 10x faster), else the Python one.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TemplateError(Exception):
    """A set that cannot be rendered; ``str()`` names set, file and line."""

    def __init__(self, template_set: str, file: str, line: int | None, problem: str) -> None:
        where = f"{file}, line {line}" if line else file
        super().__init__(f"template set {template_set!r}, {where}: {problem}")
        self.template_set = template_set
        self.file = file
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class RecordedError:
    """The latest template error of one node key (for the metric and the debug view)."""

    message: str
    template_set: str
    at: float  # time.time()


# ---------------------------------------------------------------- loading sets
def _kind_of(filename: str) -> str | None:
    for suffix in _SUFFIXES:
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            return stem if stem in KINDS else None
    return None


@dataclass(slots=True)
class TemplateSet:
    """One set's files, compiled lazily by its own sandboxed environment."""

    name: str
    directory: Path
    sources: dict[str, str]  # file name → text (every file of the set)
    environment: jinja2.sandbox.SandboxedEnvironment
    generation: int
    node_fields: tuple[str, ...] = ()
    volatile: tuple[str, ...] = ()

    @property
    def render_files(self) -> list[tuple[str, str]]:
        """(file, kind) of the files rendered into resources, in kind order."""
        found = [(f, _kind_of(f)) for f in sorted(self.sources)]
        order = list(KINDS)
        return sorted(
            ((f, k) for f, k in found if k is not None), key=lambda fk: order.index(fk[1])
        )


def _environment(directory: Path) -> jinja2.sandbox.SandboxedEnvironment:
    # Immutable: templates cannot change lists/dicts they are given (shared between renders).
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(directory.resolve())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    environment.filters["tojson"] = _tojson
    environment.globals["fail"] = _fail
    return environment


def _fail(message: str) -> None:
    """``{{ fail("why") }}``: reject the render with a message (reported with file and line)."""
    raise jinja2.TemplateRuntimeError(str(message))


def _tojson(value: Any) -> str:
    """JSON without HTML escaping (Jinja's own ``tojson`` escapes ``<>&'`` for HTML)."""
    return json.dumps(value, sort_keys=True)


def read_set(name: str, directory: Path, generation: int) -> TemplateSet:
    sources = {
        path.relative_to(directory).as_posix(): path.read_text()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }
    return TemplateSet(
        name=name,
        directory=directory,
        sources=sources,
        environment=_environment(directory),
        generation=generation,
        node_fields=node_fields_read(sources.values()),
        volatile=volatile_fields_read(sources.values()),
    )


def set_directories(root: Path) -> dict[str, Path]:
    """Template set name → directory: the subdirectories with at least one rendered file."""
    if not root.is_dir():
        return {}
    return {
        child.name: child
        for child in sorted(root.iterdir())
        if child.is_dir()
        and not child.name.startswith((".", "_"))
        and any(_kind_of(f.name) for f in child.iterdir())
    }


# ---------------------------------------------------------------- rendering
def _rendered_line(text: str, index: int) -> int | None:
    """The line (1-based, in the rendered output) where top-level list item ``index`` starts."""
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if isinstance(document, yaml.SequenceNode) and index < len(document.value):
        return int(document.value[index].start_mark.line) + 1
    return None


def _excerpt(text: str, line: int | None) -> str:
    if not line:
        return ""
    lines = text.splitlines()
    if 0 < line <= len(lines) and lines[line - 1].strip():
        return f" (rendered line {line}: {lines[line - 1].strip()[:120]!r})"
    return f" (rendered line {line})"


def render_file(
    tset: TemplateSet, file: str, kind: str, context: Mapping[str, Any]
) -> list[Message]:
    """Render one file and parse its list; TemplateError names the file and line."""
    try:
        text = tset.environment.get_template(file).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(tset.name, exc.name or file, exc.lineno, exc.message or "") from None
    except jinja2.TemplateError as exc:  # UndefinedError, SecurityError, …
        raise TemplateError(tset.name, *_template_location(exc, tset, file), str(exc)) from None
    except Exception as exc:  # a filter or test raising on bad input (e.g. int overflow)
        raise TemplateError(tset.name, *_template_location(exc, tset, file), repr(exc)) from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = f"rendered output is not valid YAML: {getattr(exc, 'problem', exc)}"
        raise TemplateError(tset.name, file, None, problem + _excerpt(text, line)) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise TemplateError(
            tset.name, file, None, f"must render a list of {kind}, got {type(data).__name__}"
        )
    messages = []
    message_class = KINDS[kind]
    for index, item in enumerate(data):
        message = message_class()
        try:
            if not isinstance(item, dict):
                raise json_format.ParseError(f"expected a mapping, got {type(item).__name__}")
            json_format.ParseDict(item, message)
        except json_format.ParseError as exc:
            line = _rendered_line(text, index)
            name = item.get("name") if isinstance(item, dict) else None
            what = f"{kind} item {index}" + (f" ({name!r})" if name else "")
            raise TemplateError(
                tset.name, file, None, f"{what}: {exc}{_excerpt(text, line)}"
            ) from None
        messages.append(message)
    return messages


def _template_location(exc: BaseException, tset: TemplateSet, file: str) -> tuple[str, int | None]:
    """(file, line) of a render-time error: the innermost template frame of the traceback
    (Jinja rewrites it to template file names and lines), which may be an imported file."""
    location: tuple[str, int | None] = (file, None)
    directory = str(tset.directory.resolve())
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(directory + os.sep):
            location = (Path(filename).relative_to(directory).as_posix(), tb.tb_lineno)
        tb = tb.tb_next
    return location


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


def render_set(
    tset: TemplateSet, context: Mapping[str, Any], known_clusters: Iterable[str]
) -> tuple[Resource, ...]:
    """Render every file of ``tset`` into checked resources (TemplateError otherwise)."""
    rendered: dict[str, list[Message]] = {}
    for file, kind in tset.render_files:
        rendered.setdefault(kind, []).extend(render_file(tset, file, kind, context))
    check_consistency(tset, rendered, known_clusters)
    now = time.monotonic()
    return tuple(make_resource(m, now) for kind in KINDS for m in rendered.get(kind, ()))


def template_context(
    node: NodeContext, services: Sequence[Any], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """The names a template sees: ``node``, ``services``, ``service_names`` and ``vars``."""
    return {
        "node": node,
        "services": list(services),
        "service_names": [s.name for s in services],
        "vars": dict(variables),
    }


# ---------------------------------------------------------------- the node config source
_Key = tuple[Any, ...]
_Result = tuple[Resource, ...] | TemplateError


class TemplateSource:
    """Implements the publisher's ``NodeConfigSource`` with cached, hot-reloaded templates."""

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
    ) -> None:
        self.directory = Path(directory) if directory else BUNDLED_DIR
        self.default_set = default_set
        self.rules = tuple(rules)
        self.variables = dict(variables or {})
        self.build = build or BuildSettings()
        self.on_change = on_change
        self.cache_size = cache_size
        self.sets: dict[str, TemplateSet] = {}
        self._generation = 0
        self._services = ServiceContexts(self.build)
        self._catalog_stamp: tuple[int, int] | None = None
        self._cache: dict[_Key, _Result] = {}
        #: Latest error per node key (cleared by its next good render).
        self.errors: dict[str, RecordedError] = {}
        #: Failed renders by template set (each cached failure counts once).
        self.render_errors_total: Counter[str] = Counter()
        #: Renders by template set (cache misses), for tests and metrics.
        self.renders_total: Counter[str] = Counter()
        self.reloads_total = 0
        self.watching = asyncio.Event()
        self._stop_watch: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._reload_event: asyncio.Event | None = None
        self.reload()
        missing = {r.template_set for r in self.rules} | {default_set}
        missing -= set(self.sets)
        if missing:
            raise ValueError(
                f"template sets not found in {self.directory}: {', '.join(sorted(missing))}"
            )

    # ------------------------------------------------------------ loading
    def reload(self) -> list[str]:
        """Re-read every set; sets whose files changed get a new generation. Returns them."""
        changed = []
        found = set_directories(self.directory)
        for name in list(self.sets):
            if name not in found:
                del self.sets[name]
                changed.append(name)
        for name, directory in found.items():
            try:
                current = self.sets.get(name)
                fresh = read_set(name, directory, self._generation + 1)
            except (OSError, UnicodeDecodeError) as exc:
                log.error("template set %r: cannot read %s: %s", name, directory, exc)
                continue
            if current is not None and current.sources == fresh.sources:
                continue
            self._generation += 1
            self.sets[name] = fresh
            changed.append(name)
            for problem in precheck(fresh):
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
        stamp = (id(catalog), catalog.generation)
        if stamp == self._catalog_stamp:
            return
        self._catalog_stamp = stamp
        self._services.update(catalog.views())

    def key_released(self, key: str) -> None:
        """The last stream of ``key`` went: forget its recorded error."""
        self.errors.pop(key, None)

    def _render(self, tset: TemplateSet, node: NodeContext) -> _Result:
        self.renders_total[tset.name] += 1
        services = self._services.services
        context = template_context(node, services, self.variables)
        try:
            return render_set(tset, context, (s.cluster for s in services))
        except TemplateError as exc:
            self.render_errors_total[tset.name] += 1
            return exc

    def _record(self, key: str, set_name: str, problem: str, node: base_pb2.Node) -> None:
        message = f"{problem} (node {node.id!r}, cluster {node.cluster!r}, key {key!r})"
        previous = self.errors.get(key)
        if previous is None or previous.message != message:
            log.error("template error, keeping the last good listeners/routes: %s", message)
        self.errors[key] = RecordedError(message, set_name, time.time())

    def set_for(self, node: base_pb2.Node) -> str:
        return select_set(self.rules, node_context(node), self.default_set)

    # ------------------------------------------------------------ hot reload
    async def start(self) -> None:
        """Start watching the templates directory (changes apply within ~0.1 s)."""
        if self._task is None:
            self._stop_watch = asyncio.Event()
            self._task = asyncio.create_task(self.run(), name="template-watcher")

    async def stop(self) -> None:
        if self._task is None:
            return
        assert self._stop_watch is not None
        self._stop_watch.set()
        task, self._task = self._task, None
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.watching.clear()

    async def run(self) -> None:
        """Watch the directory until :meth:`stop`; reload and call ``on_change`` on edits."""
        import watchfiles

        stop = self._stop_watch or asyncio.Event()
        async for changes in watchfiles.awatch(
            self.directory,
            debounce=50,
            step=20,
            stop_event=stop,
            rust_timeout=200,
            yield_on_timeout=True,
        ):
            self.watching.set()  # the first yield (changes or a timeout): the OS watch is set up
            if changes:
                self._apply_changes()

    def _apply_changes(self) -> None:
        try:
            changed = self.reload()
            if not changed:
                return
            self.reloads_total += 1
            log.info("template sets changed: %s", ", ".join(sorted(changed)))
            if self.on_change is not None:
                self.on_change()
        except Exception:  # the watcher must survive whatever a reload runs into
            log.exception("applying a template change failed")
        finally:
            if self._reload_event is not None:
                self._reload_event.set()
                self._reload_event = None

    async def wait_reload(self, after: int) -> int:
        """Wait until more than ``after`` changes were applied; returns :attr:`reloads_total`."""
        while self.reloads_total <= after:
            if self._reload_event is None:
                self._reload_event = asyncio.Event()
            await self._reload_event.wait()
        return self.reloads_total


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


# ---------------------------------------------------------------- check-templates
def _instance(service: str, n: int, dc: str, port: int, **meta: str) -> Instance:
    return Instance(
        service=service,
        id=f"{service}-{n}",
        node=f"node{n}",
        datacenter=dc,
        address=f"10.0.0.{n}",
        port=port,
        meta=tuple(sorted(meta.items())),
        checks=(Check("serfHealth", "Serf", "passing", ""),),
    )


def sample_catalog() -> Catalog:
    """A small catalog: an HTTP service in two datacenters and a gRPC service."""
    catalog = Catalog(["dc1", "dc2"])
    catalog.apply(
        [
            ServiceUpdate(
                "web", "dc1", (_instance("web", 1, "dc1", 8080), _instance("web", 2, "dc1", 8080))
            ),
            ServiceUpdate("web", "dc2", (_instance("web", 3, "dc2", 8080),)),
            ServiceUpdate(
                "greeter",
                "dc1",
                (_instance("greeter", 4, "dc1", 50051, **{"xds-protocol": "grpc"}),),
            ),
        ]
    )
    return catalog


def sample_nodes() -> list[base_pb2.Node]:
    envoy = base_pb2.Node(id="sample-envoy", cluster="sample", user_agent_name="envoy")
    grpc_client = base_pb2.Node(id="sample-grpc", cluster="sample", user_agent_name="gRPC Python")
    return [envoy, grpc_client]


def _sample_node_for_set(source: TemplateSource, set_name: str) -> list[base_pb2.Node]:
    """Sample nodes, with the identity of a rule's literal patterns where that is possible."""
    nodes = sample_nodes()
    for rule in source.rules:
        if rule.template_set != set_name:
            continue
        for node in nodes:
            for key, pattern in rule.conditions:
                literal = pattern.text.replace("*", "x").replace("?", "x")
                if pattern.text.startswith("re:") or not pattern.matches(literal):
                    continue
                if key == "node_id":
                    node.id = literal
                elif key == "node_cluster":
                    node.cluster = literal
                else:
                    node.metadata.fields[key[len("metadata.") :]].string_value = literal
        break
    return nodes


def _static_bootstrap(resources: Sequence[Resource], catalog: Catalog) -> dict[str, Any]:
    """A bootstrap with the rendered listeners (RDS replaced by the rendered routes inline) and
    the sample services as static clusters, for ``envoy --mode validate``."""
    routes = {
        r.name: json_format.MessageToDict(r.message)
        for r in resources
        if r.type_url.endswith("RouteConfiguration")
    }

    def inline_rds(value: Any) -> Any:
        if isinstance(value, dict):
            rds = value.get("rds")
            if isinstance(rds, dict) and rds.get("routeConfigName") in routes:
                value = {k: v for k, v in value.items() if k != "rds"}
                value["routeConfig"] = routes[rds["routeConfigName"]]
            return {k: inline_rds(v) for k, v in value.items()}
        if isinstance(value, list):
            return [inline_rds(v) for v in value]
        return value

    listeners = [
        inline_rds(json_format.MessageToDict(r.message))
        for r in resources
        if r.type_url.endswith("Listener") and not r.message.HasField("api_listener")
    ]
    clusters = [
        json_format.MessageToDict(r.message) for r in resources if r.type_url.endswith("Cluster")
    ]
    settings = BuildSettings()
    for view in catalog.views():
        built = build_service(view, settings)
        cluster = built.cluster
        if built.load_assignment is not None:
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.STATIC
            cluster.load_assignment.CopyFrom(built.load_assignment)
        clusters.append(json_format.MessageToDict(cluster))
    return {"static_resources": {"listeners": listeners, "clusters": clusters}}


def envoy_binary() -> str | None:
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("envoy")


def validate_with_envoy(envoy: str, bootstrap: Mapping[str, Any]) -> str | None:
    """None when ``envoy --mode validate`` accepts the bootstrap, else its complaint."""
    with tempfile.TemporaryDirectory(prefix="check-templates-") as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_text(json.dumps(bootstrap))
        try:
            done = subprocess.run(
                [envoy, "--mode", "validate", "-c", str(path), "-l", "error"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"could not run {envoy}: {exc}"
    if done.returncode == 0:
        return None
    output = (done.stderr or done.stdout).strip().splitlines()
    return "envoy --mode validate: " + " | ".join(output[-5:])


def check_set(
    source: TemplateSource, set_name: str, catalog: Catalog, envoy: str | None
) -> list[str]:
    """Problems of one set against the sample catalog (empty: the set is good)."""
    problems = precheck(source.sets[set_name])
    if problems:
        return problems
    original_rules = source.rules
    for node in _sample_node_for_set(source, set_name):
        source.rules = (Rule((), set_name),)  # force the set whatever the node looks like
        try:
            resources = source.node_resources(f"check:{node.id}", node, catalog, True)
        finally:
            source.rules = original_rules
        if resources is None:
            problems.append(source.errors[f"check:{node.id}"].message)
            continue
        if envoy is not None and node.user_agent_name == "envoy":
            complaint = validate_with_envoy(envoy, _static_bootstrap(resources, catalog))
            if complaint:
                problems.append(f"template set {set_name!r} (node {node.id!r}): {complaint}")
    return problems


def main_check_templates(directory: str | None) -> int:
    """``check-templates``: render every set against sample data; 0 when all are good."""
    disabled, log.disabled = log.disabled, True  # problems are printed below, not logged too
    try:
        return _check_templates(directory)
    finally:
        log.disabled = disabled


def _check_templates(directory: str | None) -> int:
    try:
        source = TemplateSource(directory or None, default_set="default")
    except ValueError:
        source = None
    if source is None or not source.sets:
        # No default set is fine for a custom directory: check whatever sets it has.
        root = Path(directory) if directory else BUNDLED_DIR
        names = list(set_directories(root))
        if not names:
            print(f"no template sets in {root}", file=sys.stderr)
            return 1
        source = TemplateSource(root, default_set=names[0])
    envoy = envoy_binary()
    if envoy is None:
        print("note: no envoy binary found; skipping envoy --mode validate")
    catalog = sample_catalog()
    failed = False
    for name in sorted(source.sets):
        problems = check_set(source, name, catalog, envoy)
        if problems:
            failed = True
            print(f"{name}: FAILED")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{name}: OK" + (" (envoy --mode validate passed)" if envoy else ""))
    return 1 if failed else 0


__all__ = [
    "BUNDLED_DIR",
    "RecordedError",
    "TemplateError",
    "TemplateSet",
    "TemplateSource",
    "main_check_templates",
    "render_set",
    "template_source_from_config",
]
