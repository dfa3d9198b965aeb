"""TLS for the xDS listener and the rule binding an xDS client's node id to its certificate.

* :func:`check_xds_tls` validates the ``xds.tls_*`` settings (files readable, PEM, key matching
  the certificate, combinations that make sense) and raises :class:`ConfigError` naming the key.
  (:mod:`bridge.tls_reload` serves them, reloadable: mTLS when a client CA is set, so clients
  without a certificate signed by it are refused during the handshake.)
* :func:`authorize_node_by_san` is the optional check the discovery server applies to the first
  request of every stream (``xds.require_node_san``): the node id a client claims must be one of
  the URI or DNS subject alternative names of the certificate it presented, so an Envoy cannot
  ask for another node's configuration (:mod:`bridge.identity` binds the other fields).
* :func:`bearer_matches` is the admin listener's ``/debug/*`` check.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envoy.config.core.v3 import base_pb2

from .config import ConfigError

# Keys gRPC puts in a TLS peer's auth context (grpc >= 1.47): one value per SAN of each kind.
URI_SANS = "peer_uri"
DNS_SANS = "peer_dns"


@dataclass(frozen=True)
class XdsTls:
    """The ``xds.tls_*`` settings (file paths; empty: not set)."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    require_node_san: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


def node_id_in_sans(node_id: str, uri_sans: Sequence[str], dns_sans: Sequence[str]) -> bool:
    """Whether ``node_id`` is exactly one of the certificate's URI SANs or DNS SANs.

    URIs compare exactly (``spiffe://mesh/node/edge-1``); DNS names compare case-insensitively
    (as DNS does) but never as wildcards: a ``*.example`` certificate authorizes no node id.
    """
    if not node_id:
        return False
    if node_id in uri_sans:
        return True
    wanted = node_id.lower()
    return any(not dns.startswith("*") and dns.lower() == wanted for dns in dns_sans)


def _texts(values: Sequence[bytes] | None) -> list[str]:
    return [v.decode("utf-8", errors="replace") for v in values or ()]


def authorize_node_by_san(
    node: base_pb2.Node, auth_context: Mapping[str, Sequence[bytes]]
) -> str | None:
    """The ``xds.require_node_san`` rule: None when allowed, else why the stream is refused."""
    node_id = str(node.id)
    uris = _texts(auth_context.get(URI_SANS))
    dns = _texts(auth_context.get(DNS_SANS))
    if node_id_in_sans(node_id, uris, dns):
        return None
    sans = [f"URI:{u}" for u in uris] + [f"DNS:{d}" for d in dns]
    if not auth_context.get("x509_pem_cert"):
        presented = "the client presented no certificate"
    else:
        presented = "its SANs are " + (", ".join(sans) if sans else "none (no URI or DNS SANs)")
    return (
        f"node id {node_id!r} is not among the client certificate's SANs ({presented}); "
        "xds.require_node_san lets a client ask only for the node its certificate names"
    )


def _read(path: str, key: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {what} {path!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(key, f"{path!r} is not a PEM file ({what})")
    return data


def check_xds_tls(tls: XdsTls) -> None:
    """Raise :class:`ConfigError` naming the key when the xDS TLS settings are unusable."""
    if bool(tls.cert_file) != bool(tls.key_file):
        key = "xds.tls_key" if tls.cert_file else "xds.tls_cert"
        raise ConfigError(key, "xds.tls_cert and xds.tls_key are set together or not at all")
    if tls.client_ca_file and not tls.enabled:
        raise ConfigError("xds.tls_client_ca", "needs xds.tls_cert and xds.tls_key (TLS)")
    if tls.require_node_san and not tls.client_ca_file:
        raise ConfigError(
            "xds.require_node_san", "needs xds.tls_client_ca (clients must present certificates)"
        )
    if not tls.enabled:
        return
    _read(tls.cert_file, "xds.tls_cert", "certificate")
    _read(tls.key_file, "xds.tls_key", "private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        raise ConfigError(
            "xds.tls_key", f"{tls.key_file!r} is not the key of {tls.cert_file!r}: {exc}"
        ) from None
    if tls.client_ca_file:
        _read(tls.client_ca_file, "xds.tls_client_ca", "CA certificate")
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as exc:
            raise ConfigError(
                "xds.tls_client_ca", f"{tls.client_ca_file!r} holds no usable CA: {exc}"
            ) from None


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``: the scheme in any case
    (RFC 7235), the token compared in constant time. Any header -- empty, another scheme, bytes
    that are not ASCII -- is a plain no, never an error."""
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    # aiohttp hands undecodable header bytes over as surrogates; encode them back as they came
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given_bytes, token.encode("utf-8", "surrogateescape"))
