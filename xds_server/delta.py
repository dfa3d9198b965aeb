"""The incremental (delta) xDS protocol of one stream: what differs from SotW.

The rules shared with SotW (subscriptions, limits, ACK/NACK, one response in flight per type,
make before break) are in :mod:`.stream`. What delta adds:

* the client's holdings are tracked per resource (name → version): seeded from
  ``initial_resource_versions`` on reconnect, so only what differs is sent;
* ``resource_names_subscribe`` / ``_unsubscribe`` are applied even when the request's nonce is
  stale; ACK/NACK accounting only applies to the latest nonce;
* LDS/CDS start as wildcard when the first request names nothing (or subscribes ``*``); EDS/RDS
  are named only;
* a response carries resources whose version differs from the client's, and
  ``removed_resources`` for resources that are gone and for subscribed names that do not exist;
* a NACKed version is not re-sent (the client's entry is recorded when sent); the next
  different version is.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from .resource import FULL_STATE_TYPES, Resource, ResourceSet, combined_version
from .stream import WILDCARD, Request, Response, Subscription, XdsStream


@dataclass(slots=True)
class _DeltaSubscription(Subscription):
    told_missing: set[str] = field(default_factory=set)  # subscribed names reported absent


@dataclass(frozen=True, slots=True)
class _DeltaPlan:
    upserts: list[Resource]
    removed: list[str]
    truncated: bool = False  # more absent names wait for the next response

    @property
    def removes(self) -> bool:
        return bool(self.removed)


class DeltaStream(XdsStream[_DeltaSubscription, _DeltaPlan]):
    """Protocol state of one delta stream (ADS, or a single type when ``fixed_type``)."""

    def _subscription(self, type_url: str) -> _DeltaSubscription:
        return _DeltaSubscription(type_url)

    def _names_in(self, request: Request) -> list[str]:
        return [
            *request.resource_names_subscribe,
            *request.resource_names_unsubscribe,
            *request.initial_resource_versions,
        ]

    def _apply(self, sub: _DeltaSubscription, request: Request) -> bool:
        self._settle(sub, request)
        subscribe = set(request.resource_names_subscribe)
        initial = request.initial_resource_versions
        if not sub.active:
            sub.active = True
            sub.dirty = True
            sub.held.update(initial)
            if sub.type_url in FULL_STATE_TYPES and (not subscribe or WILDCARD in subscribe):
                sub.wildcard = True
        if WILDCARD in subscribe:
            subscribe.discard(WILDCARD)
            sub.wildcard = sub.wildcard or sub.type_url in FULL_STATE_TYPES
            sub.dirty = True
        if subscribe:
            # A (re-)subscription asks for the resource even if we believe the client has it,
            # unless the client said which version it holds (a reconnect): then only a
            # different version is sent.
            sub.subscribe(subscribe, resend=subscribe.difference(initial))
            sub.told_missing -= subscribe
        unsubscribe = set(request.resource_names_unsubscribe)
        if WILDCARD in unsubscribe:
            sub.wildcard = False
        if unsubscribe:
            sub.unsubscribe(unsubscribe, forget=not sub.wildcard)
            sub.told_missing -= unsubscribe
        self._show_subscription(sub)
        return True

    def _plan(self, sub: _DeltaSubscription, available: ResourceSet) -> _DeltaPlan:
        names, held, isolation = sub.names, sub.held, sub.isolation
        if sub.wildcard:
            in_scope: Iterable[str] = available
        elif len(available) < len(names):
            in_scope = [name for name in available if name in names]
        else:
            in_scope = [name for name in names if name in available]
        upserts = []
        for name in in_scope:
            resource = available[name]
            differs = held.get(name) != resource.version or name in sub.force
            if differs and (isolation is None or not self._held_back(sub, resource)):
                upserts.append(resource)
        upserts.sort(key=lambda r: r.name)
        removed = sorted(
            name for name in held if name not in available or not (sub.wildcard or name in names)
        )
        # subscribed, but it does not exist (yet): said once, in bounded steps
        absent = names.difference(available, held, sub.told_missing)
        cap = self.limits.max_absent_per_response
        removed += sorted(itertools.islice(absent, cap))
        return _DeltaPlan(upserts, removed, truncated=len(absent) > cap)

    def _respond(
        self, sub: _DeltaSubscription, plan: _DeltaPlan, available: ResourceSet
    ) -> Response | None:
        sub.dirty = plan.truncated  # the rest after the client answered this one
        sub.force.clear()
        if not plan.upserts and not plan.removed:
            return None
        for resource in plan.upserts:
            sub.held[resource.name] = resource.version
            sub.told_missing.discard(resource.name)
        for name in plan.removed:
            sub.held.pop(name, None)
            if name in sub.names:
                sub.told_missing.add(name)
        version = combined_version(sub.held.items())
        count = len(plan.upserts) + len(plan.removed)
        nonce = self._sent(sub, version, count, plan.upserts)
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=sub.type_url,
            nonce=nonce,
            removed_resources=plan.removed,
        )
        for resource in plan.upserts:
            entry = response.resources.add(name=resource.name, version=resource.version)
            entry.resource.CopyFrom(resource.packed)
        return response
