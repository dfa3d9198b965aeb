"""Security metrics, registered in the bridge's own Prometheus registry.

What gRPC Python lets us see: it asks the dynamic credentials for the certificate before every
new connection's TLS handshake (counted as ``consul_xds_tls_handshakes_total``), but it reports
neither the outcome of a handshake nor its failures -- a client refused for a bad certificate
never reaches Python. Streams refused after the handshake by the identity rule are counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.core.v3 import base_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge

from xds_server import Authorize

from .tls_reload import ServerTlsFiles


class SecurityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.certificate_expiry = Gauge(
            "consul_xds_tls_certificate_expiry_timestamp_seconds",
            "notAfter (Unix time) of the certificate the xDS listener serves to new connections.",
            registry=registry,
        )
        self.handshakes = Counter(
            "consul_xds_tls_handshakes_total",
            "TLS handshakes started on the xDS listener (gRPC does not report their outcome).",
            registry=registry,
        )
        self.streams_denied = Counter(
            "consul_xds_streams_denied_total",
            "xDS streams refused with PERMISSION_DENIED, by reason.",
            ["reason"],
            registry=registry,
        )

    def served(self, files: ServerTlsFiles) -> None:
        self.certificate_expiry.set(files.not_after)

    def handshake(self) -> None:
        self.handshakes.inc()

    def counted(self, authorize: Authorize, reason: str = "identity") -> Authorize:
        """``authorize``, counting each refusal under ``reason``."""

        def check(node: base_pb2.Node, auth: Mapping[str, Sequence[bytes]]) -> str | None:
            denial = authorize(node, auth)
            if denial is not None:
                self.streams_denied.labels(reason).inc()
            return denial

        return check
