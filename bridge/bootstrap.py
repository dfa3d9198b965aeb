"""Envoy bootstrap generation: everything an Envoy needs to get its config from this bridge.

Like ``consul connect envoy -bootstrap``: node identity, an admin listener, the bridge as an
HTTP/2 xDS cluster (optionally over TLS / mTLS), ADS for clusters and listeners (SotW or delta).
:func:`grpc_bootstrap` is the same for proxyless gRPC clients (``GRPC_XDS_BOOTSTRAP`` JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


@dataclass(frozen=True)
class BootstrapOptions:
    node_id: str
    node_cluster: str
    xds_host: str = "127.0.0.1"
    xds_port: int = 18000
    replicas: tuple[tuple[str, int], ...] = ()  # more bridges serving the same Consul
    admin_address: str = "127.0.0.1"
    admin_port: int = 19000
    metadata: Mapping[str, str] = field(default_factory=dict)
    delta: bool = False
    locality_region: str = ""
    locality_zone: str = ""
    tls_ca_file: str = ""  # verify the bridge's certificate against this CA (enables TLS)
    tls_cert_file: str = ""  # client certificate for mTLS
    tls_key_file: str = ""
    tls_server_name: str = ""  # SNI and the name checked in the bridge's certificate
    insecure_skip_verify: bool = False  # TLS without checking who the bridge is
    connect_timeout: str = "1s"
    ignore_resource_deletion: bool = False  # gRPC only: server_features ignore_resource_deletion


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → dict; ValueError names the bad pair."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata expects KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def xds_cluster(options: BootstrapOptions) -> dict[str, Any]:
    """The static cluster of the bridge; with replicas, Envoy keeps one ADS stream to one of them
    and moves to another when it fails."""
    addresses = [(options.xds_host, options.xds_port), *options.replicas]
    cluster: dict[str, Any] = {
        "name": "consul_xds_bridge",
        "type": "STATIC" if all(_is_ip(host) for host, _ in addresses) else "STRICT_DNS",
        "connect_timeout": options.connect_timeout,
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            }
        },
        "load_assignment": {
            "cluster_name": "consul_xds_bridge",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _address(host, port)}} for host, port in addresses
                    ]
                }
            ],
        },
    }
    if uses_tls(options):
        tls: dict[str, Any] = {"@type": _TLS_CONTEXT, "common_tls_context": {}}
        common = tls["common_tls_context"]
        common["alpn_protocols"] = ["h2"]
        if options.tls_ca_file:
            validation: dict[str, Any] = {"trusted_ca": {"filename": options.tls_ca_file}}
            if options.tls_server_name:
                san_type = "IP_ADDRESS" if _is_ip(options.tls_server_name) else "DNS"
                validation["match_typed_subject_alt_names"] = [
                    {"san_type": san_type, "matcher": {"exact": options.tls_server_name}}
                ]
            common["validation_context"] = validation
        if options.tls_cert_file:
            common["tls_certificates"] = [
                {
                    "certificate_chain": {"filename": options.tls_cert_file},
                    "private_key": {"filename": options.tls_key_file},
                }
            ]
        if options.tls_server_name and not _is_ip(options.tls_server_name):
            tls["sni"] = options.tls_server_name  # SNI carries host names only (RFC 6066)
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return cluster


def uses_tls(options: BootstrapOptions) -> bool:
    return bool(options.tls_ca_file or options.tls_cert_file or options.insecure_skip_verify)


def check_tls(options: BootstrapOptions) -> None:
    """ValueError when the TLS options would make an Envoy trust a bridge it cannot verify:
    TLS needs ``--tls-ca`` (whose certificates to trust) and ``--tls-server-name`` (which of
    them is the bridge), unless ``--insecure-skip-verify`` says otherwise."""
    if options.tls_key_file and not options.tls_cert_file:
        raise ValueError("--tls-key needs --tls-cert")
    if options.tls_cert_file and not options.tls_key_file:
        raise ValueError("--tls-cert needs --tls-key")
    if not uses_tls(options) or options.insecure_skip_verify:
        return
    if not options.tls_ca_file:
        raise ValueError(
            "--tls-cert without --tls-ca: the Envoy would send its certificate to any server "
            "and accept it as the bridge; give --tls-ca (the CA of the bridge's certificate) "
            "and --tls-server-name, or --insecure-skip-verify to accept that risk"
        )
    if not options.tls_server_name:
        raise ValueError(
            "--tls-ca without --tls-server-name: any certificate that CA issued would be "
            "accepted as the bridge; give --tls-server-name (a DNS name or IP address in the "
            "bridge's certificate), or --insecure-skip-verify to accept that risk"
        )


def skip_verify_warning(options: BootstrapOptions) -> str | None:
    """What ``--insecure-skip-verify`` leaves unchecked, for stderr (None: nothing)."""
    if not options.insecure_skip_verify:
        return None
    if not options.tls_ca_file:
        return (
            "--insecure-skip-verify: this Envoy will accept ANY server certificate as the bridge "
            "(no CA, no name check): whoever can intercept its connection can send it any "
            "configuration"
            + (" and receives its client certificate" if options.tls_cert_file else "")
        )
    if not options.tls_server_name:
        return (
            "--insecure-skip-verify: this Envoy will accept any certificate issued by "
            f"{options.tls_ca_file} as the bridge (the name is not checked)"
        )
    return None


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def bootstrap(options: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap as a dict (``yaml.safe_dump`` it, or see :func:`bootstrap_yaml`)."""
    if not options.node_id:
        raise ValueError("--node-id must not be empty")
    check_tls(options)
    node: dict[str, Any] = {"id": options.node_id, "cluster": options.node_cluster}
    if options.metadata:
        node["metadata"] = dict(options.metadata)
    if options.locality_region or options.locality_zone:
        node["locality"] = {
            k: v
            for k, v in (("region", options.locality_region), ("zone", options.locality_zone))
            if v
        }
    ads: dict[str, Any] = {
        "api_type": "DELTA_GRPC" if options.delta else "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "consul_xds_bridge"}}],
        "set_node_on_first_message_only": True,
    }
    return {
        "node": node,
        "admin": {"address": _address(options.admin_address, options.admin_port)},
        "dynamic_resources": {
            "ads_config": ads,
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [xds_cluster(options)]},
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {"overload": {"global_downstream_max_connections": 50000}},
                }
            ]
        },
    }


def bootstrap_yaml(options: BootstrapOptions) -> str:
    return yaml.safe_dump(bootstrap(options), sort_keys=False)


# ---------------------------------------------------------------- proxyless gRPC clients
def _server_uri(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _grpc_channel_creds(options: BootstrapOptions) -> list[dict[str, Any]]:
    """gRFC A27 ``insecure``, or A65 ``tls`` with the CA and (for mTLS) a client certificate."""
    if not (options.tls_ca_file or options.tls_cert_file):
        return [{"type": "insecure"}]
    if options.tls_server_name:
        raise ValueError(
            "--tls-server-name has no gRPC bootstrap equivalent: use an --xds-address whose "
            "host name is in the bridge's certificate"
        )
    config: dict[str, Any] = {}
    if options.tls_ca_file:
        config["ca_certificate_file"] = options.tls_ca_file
    if options.tls_cert_file:
        config["certificate_file"] = options.tls_cert_file
        config["private_key_file"] = options.tls_key_file
    return [{"type": "tls", "config": config}]


def grpc_bootstrap(options: BootstrapOptions) -> dict[str, Any]:
    """A ``GRPC_XDS_BOOTSTRAP`` document for proxyless gRPC clients (gRFC A27).

    Every address (the bridge, then its replicas) is an ``xds_servers`` entry: clients use the
    first and, where they implement gRFC A71, fall back to the next. ``server_features`` has
    ``xds_v3`` and, with ``options.ignore_resource_deletion``, ``ignore_resource_deletion``
    (gRFC A53: a client keeps a resource the server stops sending). With TLS options the channel
    credentials are gRFC A65 ``tls`` (grpc-js-xds 1.14 implements only ``insecure`` and
    ``google_default``, and rejects such a bootstrap).
    """
    if not options.node_id:
        raise ValueError("--node-id must not be empty")
    if options.tls_cert_file and not options.tls_key_file:
        raise ValueError("--tls-cert needs --tls-key")
    if options.insecure_skip_verify:
        raise ValueError("--insecure-skip-verify has no gRPC bootstrap equivalent (A65 verifies)")
    features = ["xds_v3"]
    if options.ignore_resource_deletion:
        features.append("ignore_resource_deletion")
    creds = _grpc_channel_creds(options)
    node: dict[str, Any] = {"id": options.node_id, "cluster": options.node_cluster}
    if options.metadata:
        node["metadata"] = dict(options.metadata)
    # Always present: grpc-js-xds 1.14 rejects a node without "locality" (and then only
    # fails its calls, with nothing logged).
    node["locality"] = {
        key: value
        for key, value in (("region", options.locality_region), ("zone", options.locality_zone))
        if value
    }
    addresses = [(options.xds_host, options.xds_port), *options.replicas]
    return {
        "xds_servers": [
            {
                "server_uri": _server_uri(host, port),
                "channel_creds": creds,
                "server_features": list(features),
            }
            for host, port in addresses
        ],
        "node": node,
    }


def grpc_bootstrap_json(options: BootstrapOptions) -> str:
    return json.dumps(grpc_bootstrap(options), indent=2) + "\n"
