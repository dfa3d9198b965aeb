"""``/v1/config``: config entries over HTTP, as ``agent/config_endpoint.go`` serves them.

* ``PUT /v1/config[?cas=N]`` with the entry as the body answers ``true`` or ``false`` (a lost
  CAS); ``?dc`` is ignored (writes go to the primary).
* ``GET /v1/config/<kind>`` lists the kind's entries sorted by name (``[]`` when none);
  ``GET /v1/config/<kind>/<name>`` answers the entry or 404
  ``Config entry not found for "<kind>" / "<name>"`` (with ``X-Consul-Index`` all the same);
  both report the index of the whole config-entries table and block on ``?index``/``?wait``.
  A list is woken by any config entry write (so it may answer an unchanged body with a new
  index); a single read only by writes of that entry. Reads are ACL-filtered like Consul's:
  service kinds need ``service:read`` on the entry's name (a list drops the others silently, a
  single read answers 403), proxy-defaults needs nothing.
* ``DELETE /v1/config/<kind>/<name>[?cas=N]`` answers ``{}``, or ``true``/``false`` with ``cas``.
* An unknown kind is a 500 ``invalid config entry kind: <kind>`` on reads and a 400 on writes
  and deletes; a ``cas`` that is not an unsigned integer is a 500 with Go's ``strconv`` message.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .acl import Policy
from .config_ops import check_kind, delete_entry, modelled, put_entry
from .config_schema import ConfigEntryError
from .config_store import ConfigEntry, entries_of, table_index
from .http_common import BACKEND, block, json_response, parse_read, read_response, writer

routes = web.RouteTableDef()


def _cas(request: web.Request) -> int | None:
    raw = request.query.get("cas", "")
    if not raw:
        return None
    if not raw.isdigit() or int(raw) >= 2**64:
        raise ConfigEntryError(500, f'strconv.ParseUint: parsing "{raw}": invalid syntax')
    return int(raw)


def _readable(policy: Policy, entry: ConfigEntry) -> bool:
    """``CanRead``: service:read on the name, except proxy-defaults (no permission needed)."""
    return entry.kind == "proxy-defaults" or policy.can_read_service(entry.name)


@routes.put("/v1/config")
async def config_apply(request: web.Request) -> web.Response:
    cluster = writer(request)
    raw = await request.read()
    try:
        decoded: Any = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise ConfigEntryError(400, f"Request decoding failed: {exc}") from None
    if decoded is None and not raw.strip():
        raise ConfigEntryError(400, "Request decoding failed: EOF")
    return json_response(put_entry(cluster, decoded, _cas(request)))


@routes.get("/v1/config/")
@routes.get("/v1/config/{kind}")
async def config_list(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    kind = request.match_info.get("kind", "")
    if kind:
        check_kind(kind)
    opts = parse_read(backend, request)
    dc = opts.dc
    index = await block(backend, opts, lambda: table_index(dc))
    if not kind:
        entries = sorted(dc.config.values(), key=lambda e: (e.kind, e.name))
    else:
        entries = entries_of(dc, kind) if modelled(kind) else []
    visible = [e.to_json() for e in entries if _readable(opts.policy, e)]
    return read_response(opts, index, visible, False)


@routes.get("/v1/config/{kind}/{name:.+}")
async def config_get(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    kind, name = request.match_info["kind"], request.match_info["name"]
    check_kind(kind)
    opts = parse_read(backend, request)
    if kind != "proxy-defaults" and not opts.policy.can_read_service(name):
        raise ConfigEntryError(403, "Permission denied")  # checked before reading, as Get does
    dc = opts.dc
    key = (kind, name)
    index = await block(backend, opts, lambda: table_index(dc), lambda: dc.config.get(key))
    entry = dc.config.get(key)
    if entry is None:
        response = read_response(opts, index, None, False)
        response.set_status(404)
        response.content_type = "text/plain"
        response.text = f'Config entry not found for "{kind}" / "{name}"'
        return response
    return read_response(opts, index, entry.to_json(), False)


@routes.delete("/v1/config/{kind}")
async def config_delete_without_name(request: web.Request) -> web.Response:
    writer(request)
    raise ConfigEntryError(404, "Must provide both a kind and name to delete")


@routes.delete("/v1/config/{kind}/{name:.+}")
async def config_delete(request: web.Request) -> web.Response:
    cluster = writer(request)
    cas = _cas(request)
    deleted = delete_entry(cluster, request.match_info["kind"], request.match_info["name"], cas)
    return json_response(deleted if cas is not None else {})
