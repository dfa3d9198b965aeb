"""Config entry operations of the cluster, shared by ``/v1/config`` and the test helpers.

A write is decoded (400 on failure), normalized and validated (500), then applied to the
primary datacenter (the double's local one) whatever ``?dc`` says, and replicated to the others
(``ConfigEntry.Apply``/``Delete`` in ``agent/consul/config_endpoint.go``).
"""

from __future__ import annotations

from typing import Any

from . import config_store
from .cluster import Cluster
from .config_kinds import KINDS, known_kind
from .config_schema import ConfigEntryError, DecodeError, decode_entry
from .config_validate import normalize_and_validate, normalize_name
from .state import Datacenter


def put_entry(cluster: Cluster, raw: Any, cas: int | None = None) -> bool:
    """Upsert an entry (``PUT /v1/config``); False when ``cas`` does not match."""
    try:
        kind, body = decode_entry(raw)
    except DecodeError as exc:
        raise ConfigEntryError(400, f"Request decoding failed: {exc}") from None
    normalize_and_validate(kind, body)
    primary = cluster.dc()
    written = config_store.upsert(primary, kind, str(body.get("Name", "")), body, cas)
    _replicate(cluster, primary)
    return written


def delete_entry(cluster: Cluster, kind: str, name: str, cas: int | None = None) -> bool:
    """Delete an entry (``DELETE /v1/config/<kind>/<name>``); False when ``cas`` does not match."""
    check_kind(kind, status=400)
    name = normalize_name(kind, name)
    primary = cluster.dc()
    deleted = config_store.delete(primary, kind, name, cas)
    _replicate(cluster, primary)
    return deleted


def check_kind(kind: str, status: int = 500) -> None:
    """``MakeConfigEntry``'s refusal of a kind Consul does not know."""
    if not known_kind(kind):
        raise ConfigEntryError(status, f"invalid config entry kind: {kind}")


def modelled(kind: str) -> bool:
    return kind in KINDS


def replicate_all(cluster: Cluster) -> None:
    """Bring every secondary datacenter's entries in line with the primary's."""
    _replicate(cluster, cluster.dc())


def _replicate(cluster: Cluster, primary: Datacenter) -> None:
    for dc in cluster.dcs.values():
        if dc is not primary:
            config_store.replicate(primary, dc)
