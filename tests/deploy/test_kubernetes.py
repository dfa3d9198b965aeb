"""The Kubernetes manifests in deploy/kubernetes validate offline against the API schemas and
say what the bridge needs: two spread replicas, probes on the admin port, non-root, requests."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.cli import _parser
from bridge.config import SETTINGS
from bridge.tasks import within

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
#: Oldest Kubernetes release the manifests target (and one recent one).
VERSIONS = ("1.30.0", "1.37.0")


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    docs = documents()
    assert {d["kind"] for d in docs} == {
        "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
    }  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == files


def container() -> dict[str, Any]:
    (deployment,) = by_kind("Deployment")
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(found)


def env_of(found: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in found["env"]}


def test_the_deployment_runs_two_spread_non_root_replicas_with_requests() -> None:
    (deployment,) = by_kind("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    labels = spec["selector"]["matchLabels"]
    assert labels.items() <= spec["template"]["metadata"]["labels"].items()
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == labels
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    found = container()
    assert found["securityContext"]["allowPrivilegeEscalation"] is False
    assert found["securityContext"]["readOnlyRootFilesystem"] is True
    assert found["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(found["resources"]["requests"]) == {"cpu", "memory"}
    # A SIGTERM ends the bridge within its 15 s shutdown bound: the grace period covers it.
    assert pod["terminationGracePeriodSeconds"] > 15

    (budget,) = by_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert budget["spec"]["minAvailable"] == 1


def test_probes_and_services_use_the_ports_the_bridge_listens_on() -> None:
    found = container()
    env = env_of(found)
    ports = {p["name"]: p["containerPort"] for p in found["ports"]}
    assert env["CONSUL_XDS_BRIDGE_XDS_LISTEN"] == f"0.0.0.0:{ports['grpc-xds']}"
    assert env["CONSUL_XDS_BRIDGE_ADMIN_LISTEN"] == f"0.0.0.0:{ports['http-admin']}"
    assert found["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-admin"}
    assert found["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-admin"}
    # The admin port is reachable from the pod network, so /debug/* requires a token.
    assert "secretKeyRef" in env["CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN"]

    (deployment,) = by_kind("Deployment")
    labels = deployment["spec"]["selector"]["matchLabels"]
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind("Service")}
    assert set(services) == {"consul-xds-bridge", "consul-xds-bridge-metrics"}
    for spec in services.values():
        assert spec["selector"] == labels
        assert {p["targetPort"] for p in spec["ports"]} <= set(ports)
    assert services["consul-xds-bridge"]["ports"][0]["targetPort"] == "grpc-xds"
    assert services["consul-xds-bridge-metrics"]["clusterIP"] == "None"  # every replica


def test_the_container_s_arguments_and_variables_are_ones_the_bridge_reads() -> None:
    found = container()
    args = _parser().parse_args(found["args"])
    assert args.command == "serve"
    known = {name for s in SETTINGS for name in s.env_names}
    for name in env_of(found):
        assert name in known, f"{name} is not a setting's environment variable"


async def test_the_template_configmap_renders(tmp_path: Path) -> None:
    (configmap,) = by_kind("ConfigMap")
    target = tmp_path / "templates" / "default"
    target.mkdir(parents=True)
    for name, text in configmap["data"].items():
        (target / name).write_text(text)
    (deployment,) = by_kind("Deployment")
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (volume,) = [
        v for v in volumes if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]
    ]
    assert (
        mounts[volume["name"]]
        == env_of(container())["CONSUL_XDS_BRIDGE_TEMPLATES_DIR"] + "/default"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "check-templates", "--templates", str(target.parent),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await within(process.communicate(), 120)
    assert process.returncode == 0, out.decode()
