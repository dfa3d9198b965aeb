"""Builders for the traffic tests: config entries and catalog data in the JSON shapes Consul
returns them, and the resources the traffic package builds from them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import message

from bridge.model import Instance, ServiceView, parse_health_service
from bridge.traffic import CompileResult, ConfigEntries, compile_chain, parse_entries
from consul_double.config_schema import decode_entry, encode_entry
from consul_double.config_validate import normalize_and_validate
from xds_server.validation import check

LOCAL = "dc1"


def as_consul_returns(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` as written with ``PUT /v1/config``, then read back with ``GET``: decoded,
    normalized and validated as Consul does, encoded as its Go structs are (the project's Consul
    double implements those rules)."""
    kind, body = decode_entry(dict(entry))
    normalize_and_validate(kind, body)
    out = encode_entry(kind, body)
    out.update(Kind=kind, CreateIndex=7, ModifyIndex=7)
    return out


def entries(*raw: Mapping[str, Any], through_consul: bool = True) -> ConfigEntries:
    """Parsed entries; by default each first goes through Consul's write/read round trip."""
    bodies = [as_consul_returns(e) if through_consul else dict(e) for e in raw]
    return parse_entries(bodies)


def defaults(name: str, protocol: str = "http", **fields: Any) -> dict[str, Any]:
    return {"Kind": "service-defaults", "Name": name, "Protocol": protocol, **fields}


def resolver(name: str, **fields: Any) -> dict[str, Any]:
    return {"Kind": "service-resolver", "Name": name, **fields}


def splitter(name: str, *splits: dict[str, Any]) -> dict[str, Any]:
    return {"Kind": "service-splitter", "Name": name, "Splits": list(splits)}


def router(name: str, *routes: dict[str, Any]) -> dict[str, Any]:
    return {"Kind": "service-router", "Name": name, "Routes": list(routes)}


VERSIONED = {
    "v1": {"Filter": "Service.Meta.version == v1"},
    "v2": {"Filter": "Service.Meta.version == v2"},
}


def compiled(service: str, *raw: Mapping[str, Any], **options: Any) -> CompileResult:
    return compile_chain(service, entries(*raw), datacenter=LOCAL, **options)


def health_entry(
    instance_id: str,
    *,
    service: str = "web",
    address: str = "10.0.0.1",
    port: int = 8080,
    node: str = "node1",
    datacenter: str = LOCAL,
    tags: Iterable[str] = (),
    meta: Mapping[str, str] | None = None,
    node_meta: Mapping[str, str] | None = None,
    status: str = "passing",
    weights: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One element of ``GET /v1/health/service/<name>``."""
    return {
        "Node": {
            "Node": node,
            "Address": address,
            "Datacenter": datacenter,
            "Meta": dict(node_meta or {}),
        },
        "Service": {
            "ID": instance_id,
            "Service": service,
            "Tags": list(tags),
            "Address": address,
            "Port": port,
            "Meta": dict(meta or {}),
            "Weights": dict(weights or {"Passing": 1, "Warning": 1}),
        },
        "Checks": [
            {"CheckID": "serfHealth", "Name": "Serf Health", "Status": "passing", "ServiceID": ""},
            {
                "CheckID": f"service:{instance_id}",
                "Name": "http",
                "Status": status,
                "ServiceID": instance_id,
            },
        ],
    }


def instance(instance_id: str = "web-1", **fields: Any) -> Instance:
    parsed, problems = parse_health_service([health_entry(instance_id, **fields)])
    assert not problems
    return parsed[0]


def view(name: str, per_dc: Mapping[str, list[dict[str, Any]]]) -> ServiceView:
    """A service as the bridge sees it: instances per datacenter, in failover order."""
    return ServiceView(
        name,
        tuple(per_dc),
        {dc: parse_health_service(body, dc)[0] for dc, body in per_dc.items()},
    )


def versioned_web(dc: str = LOCAL, versions: Iterable[str] = ("v1", "v2")) -> list[dict[str, Any]]:
    """One 'web' instance per version in ``dc``, addressed 10.<dc number>.0.<n>."""
    net = dc.removeprefix("dc")
    return [
        health_entry(
            f"web-{dc}-{version}",
            address=f"10.{net}.0.{n}",
            node=f"{dc}-node{n}",
            datacenter=dc,
            meta={"version": version},
        )
        for n, version in enumerate(versions, start=1)
    ]


def addresses(cla: endpoint_pb2.ClusterLoadAssignment) -> list[tuple[int, str]]:
    """(priority, address) of every endpoint, in order."""
    return [
        (locality.priority, lb.endpoint.address.socket_address.address)
        for locality in cla.endpoints
        for lb in locality.lb_endpoints
    ]


def valid(*messages: message.Message) -> bool:
    """Every message passes the checks Envoy's proto annotations impose."""
    problems = [p for m in messages for p in check(m)]
    assert problems == [], problems
    return True
