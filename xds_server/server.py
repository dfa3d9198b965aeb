"""gRPC discovery services on ``grpc.aio``: ADS and the per-type CDS/EDS/LDS/RDS streams.

Each stream runs two coroutines: a reader that applies requests to the stream's protocol state
(:class:`~xds_server.sotw.SotwStream`) and a writer that sends whatever is due. Snapshot changes
only wake the writer; the writer always computes from the newest snapshot, so a slow client is
sent the latest state rather than a backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.endpoint.v3 import eds_pb2_grpc
from envoy.service.listener.v3 import lds_pb2_grpc
from envoy.service.route.v3 import rds_pb2_grpc
from google.protobuf.message import DecodeError

from .cache import ConfigWatcher
from .csds import add_csds
from .delta import DeltaStream
from .resource import CLUSTER, ENDPOINT, LISTENER, ROUTE
from .sotw import SotwStream
from .stream import Limits, ProtocolError, Request
from .tracking import ClientRegistry

log = logging.getLogger(__name__)

#: Decides whether a client may open a stream as ``node``, given the gRPC auth context of its
#: connection (e.g. its TLS certificate's SANs): None allows it, a message refuses the stream
#: with PERMISSION_DENIED.
Authorize: TypeAlias = Callable[[base_pb2.Node, Mapping[str, Sequence[bytes]]], str | None]


class DiscoveryServer:
    """Serves a :class:`ConfigWatcher` (the snapshot cache) to xDS clients; one instance backs
    every service."""

    def __init__(
        self,
        cache: ConfigWatcher,
        registry: ClientRegistry | None = None,
        limits: Limits | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.cache = cache
        self.registry = registry or ClientRegistry()
        self.limits = limits or Limits()
        self.authorize = authorize
        self._active: set[asyncio.Task[Any]] = set()

    @property
    def active_streams(self) -> int:
        return len(self._active)

    async def sotw(
        self,
        requests: AsyncIterator[Request],
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        fixed_type: str | None = None,
    ) -> None:
        await self._serve(SotwStream, requests, context, method, fixed_type)

    async def delta(
        self,
        requests: AsyncIterator[Request],
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        fixed_type: str | None = None,
    ) -> None:
        await self._serve(DeltaStream, requests, context, method, fixed_type)

    async def _serve(
        self,
        protocol: type[SotwStream] | type[DeltaStream],
        requests: AsyncIterator[Request],
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        fixed_type: str | None,
    ) -> None:
        if len(self._active) >= self.limits.max_streams:
            log.warning(
                "refusing a %s stream from %s: %d streams open, the limit is %d",
                method,
                context.peer(),
                len(self._active),
                self.limits.max_streams,
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this xDS server has {len(self._active)} streams open; the limit is "
                f"{self.limits.max_streams} (retry later or use another replica)",
            )
        wake = asyncio.Event()
        stream = protocol(
            self.cache, self.registry, method, context.peer(), wake.set, fixed_type, self.limits
        )
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            failure = await self._run(stream, wake, requests, context)
        except Exception:  # a bug on our side: say so, and end the stream with INTERNAL
            failure = _internal_error(method, context, stream.info.node_id if stream.info else "?")
        finally:
            self._active.discard(task)
            stream.close()
        if failure is not None:
            await context.abort(failure.code, failure.message)

    async def _run(
        self,
        stream: SotwStream | DeltaStream,
        wake: asyncio.Event,
        requests: AsyncIterator[Request],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ProtocolError | None:
        """Read requests and write what is due until the client ends the stream; returns why
        the stream must end with an error (None: it ended normally)."""
        method = stream.method
        failure: list[ProtocolError] = []

        async def read() -> None:
            node_id = "?"  # the node the client claims (the stream's, once it has opened)
            try:
                async for request in requests:
                    if stream.info is None:  # the first request: the stream learns its node
                        node_id = str(request.node.id) or "?"
                        self._authorize(request, context)
                    if stream.handle_request(request):
                        wake.set()
            except ProtocolError as exc:
                failure.append(_refused(method, context, node_id, exc))
            except DecodeError as exc:
                malformed = ProtocolError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {exc}"
                )
                failure.append(_refused(method, context, node_id, malformed))
            except Exception:
                failure.append(_internal_error(method, context, node_id))
            finally:
                wake.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                await wake.wait()
                wake.clear()
                for response in stream.next_responses():
                    await context.write(response)
                if reader.done():
                    break
        finally:
            reader.cancel()
        return failure[0] if failure else None

    def _authorize(self, request: Request, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Refuse the stream before it opens when :attr:`authorize` denies the claimed node."""
        if self.authorize is None or not request.HasField("node") or not request.node.id:
            return  # no rule, or no node: the stream refuses the request itself
        auth = {key: list(values) for key, values in context.auth_context().items()}
        denial = self.authorize(request.node, auth)
        if denial is not None:
            raise ProtocolError(grpc.StatusCode.PERMISSION_DENIED, denial)


def _refused(
    method: str, context: grpc.aio.ServicerContext[Any, Any], node_id: str, exc: ProtocolError
) -> ProtocolError:
    log.warning("closing %s stream from %s (node %s): %s", method, context.peer(), node_id, exc)
    return exc


def _internal_error(
    method: str, context: grpc.aio.ServicerContext[Any, Any], node_id: str
) -> ProtocolError:
    """Log the exception being handled at ERROR, with the node; the stream ends INTERNAL."""
    log.exception(
        "%s stream from %s (node %s) failed; closing it with INTERNAL",
        method,
        context.peer(),
        node_id,
    )
    return ProtocolError(
        grpc.StatusCode.INTERNAL, "the xDS server failed on this stream (see its log)"
    )


class _Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, requests: AsyncIterator[Request], context: Any
    ) -> None:
        await self._server.sotw(requests, context, "ADS")

    async def DeltaAggregatedResources(
        self, requests: AsyncIterator[Request], context: Any
    ) -> None:
        await self._server.delta(requests, context, "Delta ADS")


class _Cds(cds_pb2_grpc.ClusterDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server

    async def StreamClusters(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.sotw(requests, context, "CDS", CLUSTER)

    async def DeltaClusters(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.delta(requests, context, "Delta CDS", CLUSTER)


class _Eds(eds_pb2_grpc.EndpointDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server

    async def StreamEndpoints(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.sotw(requests, context, "EDS", ENDPOINT)

    async def DeltaEndpoints(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.delta(requests, context, "Delta EDS", ENDPOINT)


class _Lds(lds_pb2_grpc.ListenerDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server

    async def StreamListeners(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.sotw(requests, context, "LDS", LISTENER)

    async def DeltaListeners(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.delta(requests, context, "Delta LDS", LISTENER)


class _Rds(rds_pb2_grpc.RouteDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server

    async def StreamRoutes(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.sotw(requests, context, "RDS", ROUTE)

    async def DeltaRoutes(self, requests: AsyncIterator[Request], context: Any) -> None:
        await self._server.delta(requests, context, "Delta RDS", ROUTE)


def add_to_server(discovery: DiscoveryServer, server: grpc.aio.Server) -> None:
    """Register ADS, the per-type discovery services and CSDS of ``discovery`` on ``server``."""
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Ads(discovery), server)
    cds_pb2_grpc.add_ClusterDiscoveryServiceServicer_to_server(_Cds(discovery), server)
    eds_pb2_grpc.add_EndpointDiscoveryServiceServicer_to_server(_Eds(discovery), server)
    lds_pb2_grpc.add_ListenerDiscoveryServiceServicer_to_server(_Lds(discovery), server)
    rds_pb2_grpc.add_RouteDiscoveryServiceServicer_to_server(_Rds(discovery), server)
    add_csds(discovery.registry, discovery.cache, server)


DEFAULT_OPTIONS: Sequence[tuple[str, Any]] = (
    # A port in use is an error, not shared: with SO_REUSEPORT (gRPC's default on Linux) a
    # second server on the port would silently take half of the new connections.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # gRPC refuses new calls beyond 1,000 not yet picked up by the server (3,000 at most); a
    # fleet reconnecting at once after a restart is such a burst. Each xDS stream is cheap.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
)


async def start_server(
    discovery: DiscoveryServer,
    address: str,
    credentials: grpc.ServerCredentials | None = None,
    options: Sequence[tuple[str, Any]] = DEFAULT_OPTIONS,
) -> tuple[grpc.aio.Server, int]:
    """Start a gRPC server for ``discovery`` on ``address``; returns it and the bound port."""
    server = grpc.aio.server(options=list(options))
    add_to_server(discovery, server)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen for xDS on {address}")
    await server.start()
    log.info("xDS server listening on %s (port %d)", address, port)
    return server, port
