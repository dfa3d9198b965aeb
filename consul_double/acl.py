"""A deliberately small ACL model.

``acl_tokens`` maps a token secret to a policy dict::

    {
        "service_read": "*" | True | ["web", "api*"],  # names; a trailing * is a prefix rule
        "node_read": True,   # needed to see health/catalog entries (their node) and node checks
        "write": True,       # every write endpoint (service/node/agent write)
    }

Missing keys mean "no permission". The token ``"anonymous"`` (if present) is the policy of requests
without a token; without it anonymous requests may read and write nothing (default policy deny).
An unknown token gets 403 "ACL not found" on every endpoint; a write without ``write`` gets 403
"Permission denied"; reads are filtered and flagged with ``X-Consul-Results-Filtered-By-ACLs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANONYMOUS = "anonymous"


class UnknownTokenError(Exception):
    pass


@dataclass(frozen=True)
class Policy:
    all_services: bool = False
    service_patterns: tuple[str, ...] = ()
    node_read: bool = False
    write: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Policy:
        services = raw.get("service_read", ())
        if services is True or services == "*":
            return cls(True, (), bool(raw.get("node_read")), bool(raw.get("write")))
        if isinstance(services, str):
            services = [services]
        if not services:
            services = ()
        return cls(False, tuple(services), bool(raw.get("node_read")), bool(raw.get("write")))

    def can_read_service(self, name: str) -> bool:
        if self.all_services:
            return True
        for pattern in self.service_patterns:
            if pattern.endswith("*") and name.startswith(pattern[:-1]):
                return True
            if name == pattern:
                return True
        return False


ALLOW_ALL = Policy(all_services=True, node_read=True, write=True)
DENY_ALL = Policy()


class Acl:
    """Token → policy resolution; ``tokens=None`` means ACLs are disabled."""

    def __init__(self, tokens: Mapping[str, Mapping[str, Any]] | None) -> None:
        self.enabled = tokens is not None
        self._policies = {k: Policy.from_dict(v) for k, v in (tokens or {}).items()}

    def set_policy(self, token: str, policy: Mapping[str, Any]) -> None:
        """Change what a token may do (an operator editing its policy in Consul)."""
        self.enabled = True
        self._policies[token] = Policy.from_dict(policy)

    def resolve(self, token: str) -> Policy:
        if not self.enabled:
            return ALLOW_ALL
        if not token or token == ANONYMOUS:
            return self._policies.get(ANONYMOUS, DENY_ALL)
        policy = self._policies.get(token)
        if policy is None:
            raise UnknownTokenError(token)
        return policy
