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

import itertools
import logging
from collections.abc import Collection, Mapping
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
    # Full-state types: what the response in flight and the last accepted one were drawn from
    # (a shared set when nothing was held back), to send a node the version it accepted of a
    # resource that is held back from it.
    sent_from: Mapping[str, Resource] | None = None
    good: Mapping[str, Resource] | None = None
    good_version: str | None = None  # of the last accepted response


@dataclass(frozen=True, slots=True)
class _SotwPlan:
    selected: dict[str, Resource]  # what the client should hold
    removes: bool
    substituted: bool = False  # some resources are not the available ones (held back)
    truncated: bool = False  # more absent names wait for the next response


def _placeholder(type_url: str, name: str) -> Resource:
    return empty_resource(type_url, name)


class SotwStream(XdsStream[_SotwSubscription, _SotwPlan]):
    """Protocol state of one SotW stream (ADS, or a single-type service when ``fixed_type``)."""

    def _subscription(self, type_url: str) -> _SotwSubscription:
        return _SotwSubscription(type_url)

    def _names_in(self, request: Request) -> Collection[str]:
        return request.resource_names  # type: ignore[no-any-return]

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
            gone = sub.names - names
            if gone:
                sub.unsubscribe(gone)
            added = names - sub.names
            sub.subscribe(added, resend=added)
            sub.wildcard = wildcard
            sub.dirty = True
        if changed or first:  # an ACK usually repeats the names
            self._show_subscription(sub)
        return True

    def _accepted(self, sub: _SotwSubscription) -> None:
        if sub.type_url in FULL_STATE_TYPES:
            sub.good = sub.sent_from
            sub.good_version = sub.version

    def _new_to_client(self, sub: _SotwSubscription, resource: Resource) -> bool:
        if sub.type_url not in FULL_STATE_TYPES or sub.good is None:
            return True
        accepted = sub.good.get(resource.name)
        return accepted is None or accepted.version != resource.version

    def _plan(self, sub: _SotwSubscription, available: ResourceSet) -> _SotwPlan:
        if sub.type_url in FULL_STATE_TYPES:
            if sub.wildcard:
                selected = dict(available)
            else:
                selected = {n: available[n] for n in sub.names if n in available}
            substituted = sub.isolation is not None and self._hold_back(sub, selected)
            removes = any(name not in selected for name in sub.held)
            return _SotwPlan(selected, removes, substituted)
        names, held, isolation = sub.names, sub.held, sub.isolation
        if len(available) < len(names):
            existing = [name for name in available if name in names]
        else:
            existing = [name for name in names if name in available]
        selected = {}
        for name in existing:
            found = available[name]
            if isolation is not None and self._held_back(sub, found):
                if name in held:
                    continue  # the client keeps the version it has
                found = _placeholder(sub.type_url, name)
            selected[name] = found
        # Names that do not exist get an empty placeholder, unless the client holds one: its
        # cluster/listener is about to be removed; emptying it first would only drop traffic.
        absent = names.difference(available, held)
        absent.update(name for name in sub.force & names if name not in available)
        cap = self.limits.max_absent_per_response
        for name in itertools.islice(absent, cap):
            selected[name] = _placeholder(sub.type_url, name)
        return _SotwPlan(selected, False, truncated=len(absent) > cap)

    def _hold_back(self, sub: _SotwSubscription, selected: dict[str, Resource]) -> bool:
        """Replace what is held back from the client by the version it accepted (or leave it
        out when it never had one); returns whether anything was."""
        changed = False
        for name, resource in list(selected.items()):
            if self._held_back(sub, resource):
                changed = True
                accepted = sub.good.get(name) if sub.good is not None else None
                if accepted is None:
                    del selected[name]
                else:
                    selected[name] = accepted
        return changed

    def _respond(
        self, sub: _SotwSubscription, plan: _SotwPlan, available: ResourceSet
    ) -> Response | None:
        sub.dirty = False
        selected = plan.selected
        full_state = sub.type_url in FULL_STATE_TYPES
        whole = not plan.substituted and len(selected) == len(available)
        if whole and all(name in available for name in selected):
            version = available.version  # the whole set: its version is maintained already
        else:
            version = combined_version((name, r.version) for name, r in selected.items())
        changed = [
            r
            for name, r in selected.items()
            if sub.held.get(name) != r.version or name in sub.force
        ]
        if full_state:
            # the same as the response in flight, or (after a NACK) as what the client has
            unchanged = version in (sub.version, sub.good_version)
            if unchanged and not (sub.force & selected.keys()):
                return None
            to_send = list(selected.values())
            sub.held = {name: r.version for name, r in selected.items()}
            sub.sent_from = available if whole and sub.wildcard else selected
        else:
            if not changed and sub.version is not None:
                return None
            if not changed and not selected:
                return None  # an EDS/RDS stream that names nothing needs no answer
            to_send = changed
            sub.held.update((r.name, r.version) for r in to_send)
        if plan.truncated:  # the rest after the client answered this one
            sub.force -= selected.keys()
            sub.dirty = True
        else:
            sub.force.clear()
        nonce = self._sent(sub, version, len(to_send), changed)
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=sub.type_url, nonce=nonce
        )
        response.resources.extend(r.packed for r in to_send)
        return response
