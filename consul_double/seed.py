"""A large synthetic catalog for scale benchmarks: ``services`` x ``instances`` on ``nodes``.

Names are deterministic so a benchmark can address any instance: service ``svc-00042``,
instance ``svc-00042-3`` (check ``service:svc-00042-3``), address ``10.<i>.<i>.<j+1>``, port
:func:`instance_port`, on node ``node-<k>``.
"""

from __future__ import annotations

from .server import ConsulDouble

BASE_PORT = 20000


def service_name(i: int) -> str:
    return f"svc-{i:05d}"


def instance_id(i: int, j: int) -> str:
    return f"{service_name(i)}-{j}"


def instance_port(j: int) -> int:
    return BASE_PORT + j


def instance_address(i: int, j: int) -> str:
    return f"10.{(i >> 8) & 255}.{i & 255}.{j + 1}"


def node_of(i: int, j: int, instances: int, nodes: int) -> str:
    return f"node-{(i * instances + j) % max(1, nodes)}"


def node_address(node: str) -> str:
    k = int(node.rsplit("-", 1)[1])
    return f"10.255.{(k >> 8) & 255}.{k & 255}"


def seed(double: ConsulDouble, services: int, instances: int, nodes: int) -> None:
    """Register every instance with one passing TTL check (one write each)."""
    for i in range(services):
        for j in range(instances):
            node = node_of(i, j, instances, nodes)
            double.register(
                service_name(i),
                id=instance_id(i, j),
                address=instance_address(i, j),
                port=instance_port(j),
                node=node,
                node_address=node_address(node),
            )
