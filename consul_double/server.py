"""``ConsulDouble``: lifecycle of the HTTP server and the in-process API used by tests."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from .acl import Acl
from .cluster import Cluster
from .config_ops import delete_entry, put_entry, replicate_all
from .faults import FaultInjector
from .http import build_app
from .http_common import Backend
from .limits import ConnectionLimiter, Stats


class ConsulDouble:
    """A Consul agent's HTTP API, in process, on a loopback port (see the package docs)."""

    def __init__(
        self,
        datacenter: str = "dc1",
        extra_datacenters: Iterable[str] = (),
        max_conns_per_client: int = 200,
        acl_tokens: Mapping[str, Mapping[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        node_name: str = "consul-double",
    ) -> None:
        self.cluster = Cluster(datacenter, extra_datacenters, node_name)
        self.faults = FaultInjector()
        self.stats = Stats()
        self.acl = Acl(acl_tokens)
        self.host = host
        self.ssl_context = ssl_context
        self._port = port
        self._limiter = ConnectionLimiter(max_conns_per_client, self.stats)
        self._backend = Backend(self.cluster, self.acl, self.faults, self.stats)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def datacenter(self) -> str:
        return self.cluster.local

    @property
    def node_name(self) -> str:
        return self.cluster.node_name

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the double has not been started yet: its port is not chosen")
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Serve (again) on the same port: state, faults and counters are kept across restarts."""
        if self._server is not None:
            return
        runner = web.AppRunner(
            build_app(self._backend),
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,  # a client that goes away ends its blocking query
            shutdown_timeout=0.1,
        )
        await runner.setup()
        assert runner.server is not None
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                self._limiter.factory(runner.server),
                self.host,
                self._port,
                ssl=self.ssl_context,
                reuse_address=True,
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._server = runner, server
        self._port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and cut every open connection (in-flight requests get no answer)."""
        server, runner = self._server, self._runner
        self._server = self._runner = None
        if server is not None:
            server.close()
            self._limiter.abort_all()
            await asyncio.sleep(0)  # let connection_lost run: blocked handlers are cancelled
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ConsulDouble:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- in-process writes (same effects as the HTTP write endpoints) ------------------------

    def register(
        self,
        name: str,
        *,
        id: str | None = None,
        address: str = "",
        port: int = 0,
        tags: Iterable[str] | None = None,
        meta: Mapping[str, str] | None = None,
        weights: Mapping[str, int] | None = None,
        check_status: str | None = "passing",
        node: str = "node1",
        node_address: str = "127.0.0.1",
        datacenter: str | None = None,
    ) -> str:
        """Register (or re-register) an instance with one TTL check ``service:<id>`` in
        ``check_status`` (None: no check); returns the service ID."""
        return self.cluster.register(
            name,
            id=id,
            address=address,
            port=port,
            tags=tags,
            meta=meta,
            weights=weights,
            check_status=check_status,
            node=node,
            node_address=node_address,
            datacenter=datacenter,
        )

    def deregister(self, service_id: str, datacenter: str | None = None) -> None:
        self.cluster.deregister(service_id, datacenter)

    def set_check_status(
        self, check_id: str, status: str, output: str = "", datacenter: str | None = None
    ) -> None:
        self.cluster.set_check_status(check_id, status, output, datacenter)

    def set_service_maintenance(
        self, service_id: str, enable: bool, reason: str = "", datacenter: str | None = None
    ) -> None:
        self.cluster.set_service_maintenance(service_id, enable, reason, datacenter)

    def set_node_maintenance(
        self, node: str, enable: bool, reason: str = "", datacenter: str | None = None
    ) -> None:
        self.cluster.set_node_maintenance(node, enable, reason, datacenter)

    def set_node_check(self, node: str, status: str, datacenter: str | None = None) -> None:
        self.cluster.set_node_check(node, status, datacenter)

    def index(self, datacenter: str | None = None) -> int:
        """The current raft index of a datacenter."""
        return max(1, self.cluster.dc(datacenter).raft_index)

    def reset_index(self, datacenter: str | None = None) -> None:
        """A snapshot restore (or a server restarted with lower indexes): the same data, every
        index of the datacenter back to 1. As in Consul, queries held on the old state answer
        at once with what they read there (their old index and body); the next ones block on
        the restored state, whose index stays below the client's until writes push it past or
        the wait expires. Clients must notice the index going backwards themselves."""
        self.cluster.restore_low_indexes(datacenter)

    async def lose_state(self, datacenter: str | None = None) -> None:
        """Consul restarted with no data. For the agent's datacenter (the default): every
        connection is cut (in-flight requests get no answer), the catalog, config entries and
        indexes are those of a freshly booted agent (indexes restarted low), and the double
        serves again on the same port; faults, ACL tokens and counters are kept. Secondary
        datacenters replicate the now empty config entries. For another datacenter: its
        servers restarted empty (queries held on it answer with what they had read) and
        re-replicate the primary's config entries."""
        name = datacenter or self.cluster.local
        restart = name == self.cluster.local and self.running
        if restart:
            await self.stop()
        self.cluster.wipe(name)
        replicate_all(self.cluster)
        if restart:
            await self.start()

    def set_datacenter_reachable(self, datacenter: str, reachable: bool) -> None:
        """Cut (False) or restore (True) the path to a known non-local datacenter: meanwhile
        ``?dc=<it>`` answers 500 "No path to datacenter" as Consul does when no server of that
        datacenter can be reached, and queries held on it fail at once. Its state is kept and it
        stays in ``/v1/catalog/datacenters``. In-process writes to it still work."""
        self.cluster.set_reachable(datacenter, reachable)

    # -- config entries (same effects as PUT/DELETE /v1/config) ------------------------------

    def put_config_entry(self, entry: Mapping[str, Any], cas: int | None = None) -> bool:
        """Write a config entry (``Kind``, ``Name``, fields as in Consul's JSON) to the primary
        datacenter and replicate it; False when ``cas`` does not match. Raises
        :class:`ConfigEntryError` (``.status``, ``.text``) with what Consul would answer."""
        return put_entry(self.cluster, dict(entry), cas)

    def delete_config_entry(self, kind: str, name: str, cas: int | None = None) -> bool:
        """Delete a config entry (deleting a missing one is no error); False when ``cas`` does
        not match. Raises :class:`ConfigEntryError` as Consul would refuse it."""
        return delete_entry(self.cluster, kind, name, cas)

    def config_entry(
        self, kind: str, name: str, datacenter: str | None = None
    ) -> dict[str, Any] | None:
        """The entry as ``GET /v1/config/<kind>/<name>`` returns it, or None."""
        entry = self.cluster.dc(datacenter).config.get((kind, name))
        return None if entry is None else entry.to_json()
