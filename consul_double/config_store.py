"""Config entries in a datacenter's state store, and their writes as a Consul server makes them.

Sources: ``agent/consul/state/config_entry.go`` (the ``config-entries`` table, its one index
for every kind, ``EnsureConfigEntry``/``EnsureConfigEntryCAS``/``DeleteConfigEntryCAS``),
``agent/consul/config_endpoint.go`` (``Apply``/``Delete``: every write goes to the primary
datacenter; Normalize and Validate before the raft apply) and
``agent/consul/config_replication.go`` (secondary datacenters copy the primary's entries, each
with its own raft indexes).

* Every upsert is a write, even of an identical entry: ``ModifyIndex`` and the table index move,
  ``CreateIndex`` is kept from the entry it replaces.
* ``?cas=0`` writes only an absent entry; ``?cas=N`` only over an entry whose ``ModifyIndex`` is
  N; a lost CAS is ``false``, not an error. ``DELETE ?cas=0`` never deletes.
* Deleting a missing entry writes nothing and still succeeds.
* Graph validation (:mod:`consul_double.config_graph`) runs after the CAS check, on writes and
  on deletes.
* The double's local datacenter is the primary; replication to the others is immediate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config_graph import check_change
from .config_schema import encode_entry

if TYPE_CHECKING:
    from .state import Datacenter

TABLE = "config-entries"
JSON = dict[str, Any]


@dataclass(frozen=True)
class ConfigEntry:
    kind: str
    name: str
    body: JSON  # decoded and normalized fields (canonical names), without Kind
    create_index: int
    modify_index: int

    def to_json(self) -> JSON:
        out = encode_entry(self.kind, {**self.body, "Kind": self.kind, "Name": self.name})
        out["CreateIndex"] = self.create_index
        out["ModifyIndex"] = self.modify_index
        return out


def table_index(dc: Datacenter) -> int:
    """``maxIndexTxn(tx, "config-entries")``: the index of every config entry read."""
    return dc.table_index(TABLE)


def entries_of(dc: Datacenter, kind: str) -> list[ConfigEntry]:
    return sorted((e for (k, _), e in dc.config.items() if k == kind), key=lambda e: e.name)


def upsert(dc: Datacenter, kind: str, name: str, body: JSON, cas: int | None) -> bool:
    """Store an entry (already normalized and validated); False when the CAS check fails."""
    key = (kind, name)
    existing = dc.config.get(key)
    if cas is not None:
        if cas == 0 and existing is not None:
            return False
        if cas != 0 and (existing is None or existing.modify_index != cas):
            return False
    check_change(_bodies(dc), kind, name, body)
    with dc.write() as txn:
        created = existing.create_index if existing is not None else txn.idx
        dc.config[key] = ConfigEntry(kind, name, body, created, txn.idx)
        txn.bump(TABLE)
    return True


def delete(dc: Datacenter, kind: str, name: str, cas: int | None) -> bool:
    """Remove an entry; False when the CAS check fails (a missing entry is not an error)."""
    key = (kind, name)
    existing = dc.config.get(key)
    if cas is not None and (cas == 0 or existing is None or existing.modify_index != cas):
        return False
    if existing is None:
        return True
    check_change(_bodies(dc), kind, name, None)
    with dc.write() as txn:
        del dc.config[key]
        txn.bump(TABLE)
    return True


def replicate(primary: Datacenter, secondary: Datacenter) -> None:
    """Make ``secondary``'s entries those of ``primary`` (config replication's diff): one write
    per changed entry, with the secondary's own indexes."""
    for key in sorted(set(secondary.config) - set(primary.config)):
        with secondary.write() as txn:
            del secondary.config[key]
            txn.bump(TABLE)
    for key, entry in sorted(primary.config.items()):
        mine = secondary.config.get(key)
        if mine is not None and mine.body == entry.body:
            continue
        with secondary.write() as txn:
            created = mine.create_index if mine is not None else txn.idx
            secondary.config[key] = ConfigEntry(
                entry.kind, entry.name, entry.body, created, txn.idx
            )
            txn.bump(TABLE)


def _bodies(dc: Datacenter) -> dict[tuple[str, str], JSON]:
    return {key: entry.body for key, entry in dc.config.items()}
