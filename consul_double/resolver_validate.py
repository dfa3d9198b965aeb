"""``Validate`` of service-resolver entries, with Consul's messages
(``agent/structs/config_entry_discoverychain.go`` ``ServiceResolverConfigEntry.Validate``)."""

from __future__ import annotations

import re
from typing import Any

from .config_schema import fail as _fail
from .config_schema import format_go_duration, go_quote
from .filter_syntax import filter_syntax_error

_SUBSET = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LB_POLICIES = ("", "random", "round_robin", "least_request", "ring_hash", "maglev")


def check_service_resolver(body: dict[str, Any]) -> None:
    name = body.get("Name", "")
    if not name:
        raise _fail("Name is required")
    subsets: dict[str, Any] = body.get("Subsets", {})
    for subset_name, subset in subsets.items():
        if not subset_name:
            raise _fail("Subset defined with empty name")
        problem = _subset_name_problem(subset_name)
        if problem:
            raise _fail(f"Subset {go_quote(subset_name)} is invalid: {problem}")
        if subset.get("Filter"):
            error = filter_syntax_error(subset["Filter"])
            if error:
                raise _fail(
                    f"Filter for subset {go_quote(subset_name)} is not a valid expression: {error}"
                )
    default = body.get("DefaultSubset", "")
    if default and default not in subsets:
        raise _fail(f"DefaultSubset {go_quote(default)} is not a valid subset")
    if body.get("Redirect") is not None:
        _check_redirect(body, name, subsets)
    for key, failover in body.get("Failover", {}).items():
        _check_failover(name, subsets, key, failover)
    for field in ("ConnectTimeout", "RequestTimeout"):
        if body.get(field, 0) < 0:
            raise _fail(f"Bad {field} '{format_go_duration(body[field])}', must be >= 0")
    if body.get("LoadBalancer") is not None:
        _check_load_balancer(body["LoadBalancer"])


def _subset_name_problem(name: str) -> str:
    if len(name) > 63:
        return "must be non-empty and 63 characters or fewer"
    if not _SUBSET.match(name):
        return (
            "must be 63 characters or fewer, begin or end with lower case alphanumeric "
            "characters, and contain lower case alphanumeric characters or '-' in between"
        )
    return ""


def _check_redirect(body: dict[str, Any], name: str, subsets: dict[str, Any]) -> None:
    r = body["Redirect"]
    if body.get("Failover"):
        raise _fail("Redirect and Failover cannot both be set")
    fields = ("Service", "ServiceSubset", "Namespace", "Partition", "Datacenter", "Peer")
    if not any(r.get(k) for k in (*fields, "SamenessGroup")):
        raise _fail("Redirect is empty")
    peer = r.get("Peer", "")
    if peer and r.get("ServiceSubset"):
        raise _fail("Redirect.Peer cannot be set with Redirect.ServiceSubset")
    if peer and r.get("Partition"):
        raise _fail("Redirect.Partition cannot be set with Redirect.Peer")
    if peer and r.get("Datacenter"):
        raise _fail("Redirect.Peer cannot be set with Redirect.Datacenter")
    if not r.get("Service"):
        for key in ("ServiceSubset", "Namespace", "Partition", "Peer"):
            if r.get(key):
                raise _fail(f"Redirect.{key} defined without Redirect.Service")
    elif r.get("ServiceSubset") and r["Service"] == name and r["ServiceSubset"] not in subsets:
        raise _fail(
            f"Redirect.ServiceSubset {go_quote(r['ServiceSubset'])} is not a valid subset of "
            f"{go_quote(name)}"
        )


def _check_failover(name: str, subsets: dict[str, Any], key: str, f: dict[str, Any]) -> None:
    prefix = f"Bad Failover[{go_quote(key)}]: "
    if key != "*" and key not in subsets:
        raise _fail(prefix + "not a valid subset subset")
    if not any(
        f.get(k) for k in ("Service", "ServiceSubset", "Namespace", "Targets", "Datacenters")
    ):
        raise _fail(
            prefix + "one of Service, ServiceSubset, Namespace, Targets, or Datacenters is required"
        )
    mode = (f.get("Policy") or {}).get("Mode", "")
    if mode not in ("", "default", "order-by-locality"):
        raise _fail(prefix + "Policy must be one of '', 'default', or 'order-by-locality'")
    subset = f.get("ServiceSubset", "")
    if subset and f.get("Service", "") in ("", name) and subset not in subsets:
        service = go_quote(f.get("Service", ""))
        raise _fail(f"{prefix}ServiceSubset {go_quote(subset)} is not a valid subset of {service}")
    targets = f.get("Targets", [])
    if f.get("Datacenters") and targets:
        raise _fail(prefix + "Targets cannot be set with Datacenters")
    if subset and targets:
        raise _fail(prefix + "Targets cannot be set with ServiceSubset")
    if f.get("Service") and targets:
        raise _fail(prefix + "Targets cannot be set with Service")
    for i, t in enumerate(targets):
        where = f"Bad Failover[{go_quote(key)}].Targets[{i}]: "
        for a, b, words in (
            ("Peer", "ServiceSubset", "Peer cannot be set with ServiceSubset"),
            ("Peer", "Partition", "Partition cannot be set with Peer"),
            ("Peer", "Datacenter", "Peer cannot be set with Datacenter"),
            ("Partition", "Datacenter", "Partition cannot be set with Datacenter"),
        ):
            if t.get(a) and t.get(b):
                raise _fail(where + words)
        t_subset = t.get("ServiceSubset", "")
        if t_subset and t.get("Service", "") in ("", name) and t_subset not in subsets:
            raise _fail(
                f"{where}ServiceSubset {go_quote(t_subset)} is not a valid subset of "
                f"{go_quote(name)}"
            )
    for dc in f.get("Datacenters", []):
        if not dc:
            raise _fail(f"Bad Failover[{go_quote(key)}].Datacenters: found empty datacenter")


def _check_load_balancer(lb: dict[str, Any]) -> None:
    policy = lb.get("Policy", "")
    if policy not in _LB_POLICIES:
        raise _fail(f"Bad LoadBalancer policy: {go_quote(policy)} is not supported")
    quoted = go_quote(policy)
    if policy != "ring_hash" and lb.get("RingHashConfig") is not None:
        raise _fail(
            "Bad LoadBalancer configuration. RingHashConfig specified for incompatible load "
            f"balancing policy {quoted}"
        )
    if policy != "least_request" and lb.get("LeastRequestConfig") is not None:
        raise _fail(
            "Bad LoadBalancer configuration. LeastRequestConfig specified for incompatible load "
            f"balancing policy {quoted}"
        )
    policies = lb.get("HashPolicies", [])
    if policies and policy not in ("ring_hash", "maglev"):
        raise _fail(
            "Bad LoadBalancer configuration: HashPolicies specified for non-hash-based "
            f"Policy: {quoted}"
        )
    for i, hp in enumerate(policies):
        field, value = hp.get("Field", ""), hp.get("FieldValue", "")
        where = f"Bad LoadBalancer HashPolicy[{i}]: "
        if field and field not in ("header", "cookie", "query_parameter"):
            raise _fail(f"{where}{go_quote(field)} is not a supported field")
        if hp.get("SourceIP") and field:
            raise _fail(
                f"{where}A single hash policy cannot hash both a source address and a "
                f"{go_quote(field)}"
            )
        if hp.get("SourceIP") and value:
            raise _fail(f"{where}A FieldValue cannot be specified when hashing SourceIP")
        if field and not value:
            raise _fail(f"{where}Field {go_quote(field)} was specified without a FieldValue")
        if value and not field:
            raise _fail(f"{where}FieldValue requires a Field to apply to")
        cookie = hp.get("CookieConfig")
        if cookie is not None:
            if field != "cookie":
                raise _fail(f"{where}cookie_config provided for {go_quote(field)}")
            if cookie.get("Session") and cookie.get("TTL", 0) != 0:
                raise _fail(f"{where}a session cookie cannot have an associated TTL")
