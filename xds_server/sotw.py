"""The state-of-the-world (SotW) protocol of one xDS stream: what differs from delta.

The rules shared with delta (subscriptions, limits, ACK/NACK, one response in flight per type,
make before break) are in :mod:`.stream`. What SotW adds:

* a request whose nonce is not the latest one sent for its type is stale and ignored;
* a request carries the whole name list: LDS/CDS are wildcard with ``*``, or with an empty list
  on a stream that never named anything; newly named resources are sent even if unchanged;
* LDS/CDS responses carry the full state (wildcard or the named set); a version already sent
  (the same resources, or a NACKed version) is not sent again;
* EDS/RDS responses carry only named resources — just the ones the client does not have yet —
  and names that do not exist are answered with an empty resource.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2

from .resource import (
    FULL_STATE_TYPES,
    SHORT_NAMES,
    Resource,
    ResourceSet,
    combined_version,
    empty_resource,
)
from .stream import WILDCARD, Request, Response, Subscription, XdsStream

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _SotwSubscription(Subscription):
    named_ever: bool = False  # once names were sent, an empty list means "nothing"


@dataclass(frozen=True, slots=True)
class _SotwPlan:
    selected: dict[str, Resource]  # what the client should hold
    removes: bool


@functools.lru_cache(maxsize=4096)
def _placeholder(type_url: str, name: str) -> Resource:
    return empty_resource(type_url, name)


class SotwStream(XdsStream[_SotwSubscription, _SotwPlan]):
    """Protocol state of one SotW stream (ADS, or a single-type service when ``fixed_type``)."""

    def _subscription(self, type_url: str) -> _SotwSubscription:
        return _SotwSubscription(type_url)

    def _names_in(self, request: Request) -> list[str]:
        return list(request.resource_names)

    def _apply(self, sub: _SotwSubscription, request: Request) -> bool:
        if sub.nonce is not None and request.response_nonce != sub.nonce:
            log.debug(
                "stale %s request on stream %s (nonce %r, latest %r): ignored",
                SHORT_NAMES[sub.type_url],
                self.info and self.info.stream_id,
                request.response_nonce,
                sub.nonce,
            )
            return False
        self._settle(sub, request)
        names = set(request.resource_names)
        explicit_wildcard = WILDCARD in names
        names.discard(WILDCARD)
        if names:
            sub.named_ever = True
        if sub.type_url in FULL_STATE_TYPES:
            wildcard = explicit_wildcard or (not names and not sub.named_ever)
        else:
            wildcard = False
        first = not sub.active
        sub.active = True
        if first:
            sub.dirty = True
        changed = wildcard != sub.wildcard or names != sub.names
        if changed:
            for gone in sub.names - names:
                sub.unsubscribe(gone)
            for added in names - sub.names:
                sub.subscribe(added)
            sub.wildcard = wildcard
            sub.dirty = True
        if changed or first:  # an ACK usually repeats the names
            self._show_subscription(sub)
        return True

    def _plan(self, sub: _SotwSubscription, available: ResourceSet) -> _SotwPlan:
        if sub.type_url in FULL_STATE_TYPES:
            if sub.wildcard:
                selected = dict(available)
            else:
                selected = {n: available[n] for n in sub.names if n in available}
            return _SotwPlan(selected, any(name not in selected for name in sub.held))
        selected = {}
        for name in sub.names:
            found = available.get(name)
            if found is None:
                if name in sub.held and name not in sub.force:
                    # Gone from the snapshot, but the client holds it: its cluster/listener is
                    # about to be removed; emptying it first would only drop traffic early.
                    continue
                found = _placeholder(sub.type_url, name)
            selected[name] = found
        return _SotwPlan(selected, False)

    def _respond(
        self, sub: _SotwSubscription, plan: _SotwPlan, available: ResourceSet
    ) -> Response | None:
        sub.dirty = False
        selected = plan.selected
        full_state = sub.type_url in FULL_STATE_TYPES
        if len(selected) == len(available) and all(name in available for name in selected):
            version = available.version  # the whole set: its version is maintained already
        else:
            version = combined_version((name, r.version) for name, r in selected.items())
        changed = [
            r
            for name, r in selected.items()
            if sub.held.get(name) != r.version or name in sub.force
        ]
        if full_state:
            unchanged = sub.version is not None and version == sub.version
            if unchanged and not (sub.force & selected.keys()):
                return None
            to_send = list(selected.values())
            sub.held = {name: r.version for name, r in selected.items()}
        else:
            if not changed and sub.version is not None:
                return None
            if not changed and not selected:
                return None  # an EDS/RDS stream that names nothing needs no answer
            to_send = changed
            sub.held.update((r.name, r.version) for r in to_send)
        sub.force.clear()
        nonce = self._sent(sub, version, len(to_send), changed)
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=sub.type_url, nonce=nonce
        )
        response.resources.extend(r.packed for r in to_send)
        return response
