"""Envoy cluster (and ClusterLoadAssignment) names for chain targets:

* the service itself in the local datacenter: ``<prefix><service>``, the plain cluster (the same
  name as without any entry);
* a subset in the local datacenter: ``<prefix><service>~<subset>``;
* another datacenter: ``<prefix><service>~<subset>~<datacenter>`` (``<service>~~dc2`` without a
  subset).

``~`` never appears in a subset name (a DNS label) or a datacenter name, and chains refuse service
names containing it, so these names cannot collide with each other or with a plain cluster.
"""

from __future__ import annotations

from bridge.resources import BuildSettings, cluster_name

from .chain_model import Target

SEPARATOR = "~"


def target_cluster_name(target: Target, local_datacenter: str, settings: BuildSettings) -> str:
    """The cluster of ``target`` in a chain compiled in ``local_datacenter``."""
    base = cluster_name(target.service, settings)
    if target.datacenter != local_datacenter:
        return f"{base}{SEPARATOR}{target.subset}{SEPARATOR}{target.datacenter}"
    return f"{base}{SEPARATOR}{target.subset}" if target.subset else base
