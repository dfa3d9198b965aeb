"""A faithful in-process double of the Consul agent HTTP API, for tests and demos.

Run it with ``async with ConsulDouble() as consul:`` (or ``await consul.start()`` /
``await consul.stop()``) and point any Consul client at ``consul.url``; or from a shell with
``python -m consul_double --port 8500``.

Faithful to Consul (``website/content/api-docs`` and the state store in
``agent/consul/state/catalog.go``):

* Endpoints: ``/v1/agent/self``, ``/v1/status/leader``, ``/v1/catalog/datacenters``,
  ``/v1/catalog/services``, ``/v1/catalog/nodes``, ``/v1/catalog/service/<name>``,
  ``/v1/health/service/<name>``, ``/v1/health/state/<state>``, ``/v1/health/checks/<name>``,
  ``/v1/health/node/<node>``; writes ``/v1/agent/service/register|deregister``,
  ``/v1/agent/check/pass|warn|fail|update``, ``/v1/agent/service/maintenance``,
  ``/v1/agent/maintenance``, ``/v1/catalog/register|deregister``; config entries
  ``PUT /v1/config``, ``GET /v1/config/<kind>[/<name>]``, ``DELETE /v1/config/<kind>/<name>``
  for service-defaults, proxy-defaults, service-router, -splitter and -resolver (see
  :mod:`consul_double.http_config`: one index for the whole table, ``?cas``, Consul's decode
  (400), validate and discovery-chain (500) errors). JSON shapes use Consul's
  PascalCase keys; ``Service.Port`` is omitted when 0; ``Service.Address`` stays empty when not
  registered; weights default to 1/1; request bodies match keys case-insensitively.
* Health: checks of an instance include its node's checks (``serfHealth``,
  ``_node_maintenance``); maintenance is a critical check ``_service_maintenance:<id>`` or
  ``_node_maintenance``; ``?passing`` drops instances with any non-passing check; ``?tag``
  (repeatable, case-insensitive) requires all tags. A check registered without status starts
  critical; auto check IDs are ``service:<id>`` or ``service:<id>:<n>``.
* Blocking queries: ``?index``/``?wait`` (Go durations, default 5m, max 10m, jitter up to
  wait/16), 400 "Invalid wait time" / "Invalid index", same index on expiry. Indexes follow the
  state store: a global raft index per datacenter; ``/v1/health/service/<name>`` reports
  ``service.<name>`` (bumped by its instances, their checks and their nodes), a missing service
  the last-extinction index; ``/v1/catalog/services`` the services table; ``/v1/health/*``
  lists the checks table. A write to one service never wakes queries blocked on another. An
  identical check update is not a write. ``X-Consul-Index`` is never 0.
* Paths are percent-decoded once, as Go's ``net/http`` does before Consul's handlers see them:
  ``/v1/health/service/a%20b`` is service ``a b``, ``a%2520b`` is ``a%20b``; a name may hold
  ``/``.
* Snapshot restore (``reset_index()``): the datacenter's state store is replaced by one with the
  same data and every index 1; queries held on the old store answer at once with what they read
  there (old index, old body), later ones block on the low index until it passes theirs or their
  wait expires (``agent/blockingquery/blockingquery.go``). Clients must notice the index going
  backwards themselves.
* Headers ``X-Consul-KnownLeader``, ``X-Consul-LastContact``, ``X-Consul-Effective-Consistency``
  (leader / stale / consistent; ``?stale&consistent`` → 400). Several datacenters with separate
  state and indexes; ``?dc=<unknown>`` → 500 "No path to datacenter".
* ``limits.http_max_conns_per_client``: connections above the per-IP cap get a raw
  ``429 Too Many Requests`` and are closed.

Deliberate simplifications (differences from a real agent):

* Re-registering an identical service is a write (it bumps ``ModifyIndex`` and the service's
  index); Consul's state store skips such no-op writes. This lets tests check that clients
  ignore an index change whose content did not change.
* Config entries: the local datacenter is the primary and replication to the others is
  immediate; other kinds Consul knows (gateways, intentions, ...) are refused with a 400 on write
  and read as empty; Connect-only nested settings are stored verbatim, not type-checked; the
  ``Hash`` of service-/proxy-defaults is the double's own; Meta size limits and Enterprise-only
  fields are not checked; a single-entry read wakes only for its own entry (memdb may also wake
  it spuriously); subset filters are checked for go-bexpr syntax only, as Consul does.
* Agent endpoints act on the agent's node first but also find services and checks registered
  on other nodes (the double plays every node's agent); nodes created by ``register()`` get a
  ``serfHealth`` check, catalog-registered nodes do not (as in Consul).
* Non-TTL checks (HTTP, TCP, gRPC, script) are accepted but never run: they keep their initial
  status. TTLs never expire.
* ACLs are a small policy model (see :mod:`consul_double.acl`), not Consul's rule language;
  ``?filter`` supports a subset of go-bexpr (see :mod:`consul_double.filters`) and answers 400
  for anything else. ``?near``, ``?cached``, ``?node-meta``, namespaces, partitions, peers,
  Connect, KV, sessions and the streaming backend are not implemented (ignored or 404).
* Only catalog, health and config reads carry ``X-Consul-Index``; they are consistent at once
  (``X-Consul-LastContact: 0``, always a known leader) unless faults say otherwise.

Test-only extras: ``consul.faults`` (errors, hangs, dropped connections, 429s; deterministic),
``consul.stats`` (requests, responses by status, connections), ``stop()``/``start()`` on the same
port, ``await lose_state(dc=None)`` (a Consul restarted with no data, same port),
``reset_index(dc=None)`` (snapshot restore), ``set_datacenter_reachable(dc, bool)`` ("No path to
datacenter" until healed), and direct in-process writes (``register``, ``deregister``,
``set_check_status``, ``put_config_entry``, ``delete_config_entry``, ``config_entry``, ...).
"""

from .acl import Policy
from .config_schema import ConfigEntryError
from .faults import Fault, FaultInjector
from .limits import Stats
from .server import ConsulDouble

__all__ = ["ConfigEntryError", "ConsulDouble", "Fault", "FaultInjector", "Policy", "Stats"]
