"""``check-templates``: render every template set against sample data, and validate the result
with ``envoy --mode validate`` when an Envoy binary is available. Problems are printed, not logged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from xds_server.resource import Resource

from ..catalog import Catalog, ServiceUpdate
from ..model import Check, Instance
from ..resources import BuildSettings, build_service
from ..templating import (
    BUNDLED_DIR,
    Rule,
    ServiceContexts,
    TemplateError,
    TemplateSet,
    TemplateSets,
    node_context,
    node_error,
    precheck,
    render_set,
    template_context,
)


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


def _sample_nodes_for_set(rules: Sequence[Rule], set_name: str) -> list[base_pb2.Node]:
    """Sample nodes, with the identity of a rule's literal patterns where that is possible."""
    nodes = sample_nodes()
    for rule in rules:
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
    tset: TemplateSet, catalog: Catalog, envoy: str | None, rules: Sequence[Rule] = ()
) -> list[str]:
    """Problems of one set against the sample catalog (empty: the set is good). ``rules`` give
    the sample nodes the identity a rule choosing this set matches, where that is possible."""
    problems = precheck(tset)
    if problems:
        return problems
    services = ServiceContexts(BuildSettings())
    services.update(catalog.views())
    for node in _sample_nodes_for_set(rules, tset.name):
        context = template_context(node_context(node), services.services, {})
        try:
            resources = render_set(tset, context, (s.cluster for s in services.services))
        except TemplateError as exc:
            problems.append(node_error(str(exc), node, f"check:{node.id}"))
            continue
        if envoy is not None and node.user_agent_name == "envoy":
            complaint = validate_with_envoy(envoy, _static_bootstrap(resources, catalog))
            if complaint:
                problems.append(f"template set {tset.name!r} (node {node.id!r}): {complaint}")
    return problems


def main_check_templates(directory: str | None) -> int:
    """``check-templates``: check every set of ``directory`` (default: the bundled sets);
    0 when all are good."""
    root = Path(directory) if directory else BUNDLED_DIR
    sets = TemplateSets(root)
    sets.reload()
    if not sets.by_name:
        print(f"no template sets in {root}", file=sys.stderr)
        return 1
    envoy = envoy_binary()
    if envoy is None:
        print("note: no envoy binary found; skipping envoy --mode validate")
    catalog = sample_catalog()
    failed = False
    for name, tset in sorted(sets.by_name.items()):
        problems = check_set(tset, catalog, envoy)
        if problems:
            failed = True
            print(f"{name}: FAILED")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{name}: OK" + (" (envoy --mode validate passed)" if envoy else ""))
    return 1 if failed else 0
