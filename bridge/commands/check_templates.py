"""``check-templates``: render every template set against sample data (with the settings
``serve`` would use: ``templates.vars``, ``templates.rules``, ``templates.default_set``), and
validate the result with ``envoy --mode validate`` when an Envoy binary is available. Problems
are printed, not logged.
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
from google.protobuf import json_format

from xds_server.resource import Resource

from ..catalog import Catalog
from ..config import Config
from ..resources import BuildSettings, build_service
from ..templating import (
    BUNDLED_DIR,
    Rule,
    TemplateError,
    TemplateSet,
    TemplateSets,
    node_error,
    parse_rules,
    precheck,
    sample_catalog,
    sample_renders,
)


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
    tset: TemplateSet,
    catalog: Catalog,
    envoy: str | None,
    rules: Sequence[Rule] = (),
    variables: Mapping[str, Any] | None = None,
) -> list[str]:
    """Problems of one set against the sample catalog (empty: the set is good). ``rules`` give
    the sample nodes the identity a rule choosing this set matches, where that is possible;
    ``variables`` are the templates' ``vars`` (``templates.vars``)."""
    problems = precheck(tset)
    if problems:
        return problems
    for node, result in sample_renders(tset, catalog, rules, variables):
        if isinstance(result, TemplateError):
            problems.append(node_error(str(result), node, f"check:{node.id}"))
            continue
        if envoy is not None and node.user_agent_name == "envoy":
            complaint = validate_with_envoy(envoy, _static_bootstrap(result, catalog))
            if complaint:
                problems.append(f"template set {tset.name!r} (node {node.id!r}): {complaint}")
    return problems


def _selection_problems(config: Config, sets: Mapping[str, TemplateSet]) -> list[str]:
    """The default set and the sets rules choose must exist."""
    problems = []
    default = config["templates.default_set"]
    if default not in sets:
        problems.append(f"templates.default_set: template set {default!r} does not exist")
    for rule in parse_rules(config["templates.rules"]):
        if rule.template_set not in sets:
            problems.append(f"templates.rules: template set {rule.template_set!r} does not exist")
    return sorted(set(problems))


def main_check_templates(config: Config) -> int:
    """``check-templates``: check every set of ``templates.dir`` (default: the bundled sets)
    with the settings ``serve`` would use (rules, vars, default set); 0 when all are good,
    1 when a set fails, 2 when the settings themselves are wrong."""
    try:
        rules = parse_rules(config["templates.rules"])
    except ValueError as exc:
        print(f"config error: templates.rules: {exc}", file=sys.stderr)
        return 2
    root = Path(config["templates.dir"]) if config["templates.dir"] else BUNDLED_DIR
    sets = TemplateSets(root)
    sets.reload()
    if not sets.by_name and not sets.read_errors:
        print(f"no template sets in {root}", file=sys.stderr)
        return 1
    envoy = envoy_binary()
    if envoy is None:
        print("note: no envoy binary found; skipping envoy --mode validate")
    catalog = sample_catalog()
    failed = False
    for name, problem in sorted(sets.read_errors.items()):
        failed = True
        print(f"{name}: FAILED\n  {problem}")
    for name, tset in sorted(sets.by_name.items()):
        problems = check_set(tset, catalog, envoy, rules, config["templates.vars"])
        if problems:
            failed = True
            print(f"{name}: FAILED")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{name}: OK" + (" (envoy --mode validate passed)" if envoy else ""))
    for problem in _selection_problems(config, sets.by_name):
        failed = True
        print(problem)
    return 1 if failed else 0
