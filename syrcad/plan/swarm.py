"""Docker Swarm as the engine (`engine: swarm` in hosts.yml): the swarm's shape. Pure data.

Swarm schedules the frontends and action servers over the nodes that carry their roles and
starts a lost node's share elsewhere. The LBs run on every `lb` node (global services, host-mode
ports: no routing mesh in front of HAProxy) and find the replicas through Swarm's DNS
(`tasks.<service>`), so a scale needs no LB reload. Each store stays on its host, with its
volume, as under compose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

from syrcad.config.model import Cluster, Role
from syrcad.plan.placement import INNER_PORT, REDIS_PORT, Placement, PortBinding, Service

# A stack's services: the replicated ones by role, the LBs on every `lb` node, and one service
# per store container (`mongo-1`), pinned to its host.
REPLICATED: tuple[Literal["frontend", "action"], ...] = ("frontend", "action")
GLOBAL: tuple[Literal["lb", "action-lb"], ...] = ("lb", "action-lb")
STORES: tuple[Service, ...] = ("mongo", "postgres", "redis")
# Prometheus and its blackbox exporter, pinned to the monitoring host like a store.
MONITORING: tuple[Service, ...] = ("blackbox", "prometheus")
PINNED = (*STORES, *MONITORING)
# Servers an LB keeps for each replicated service (HAProxy's server-template): scaling within
# them changes no LB config. More replicas than this re-render the LBs' config.
SLOTS = 64
# Raft keeps working while a majority of managers is up: three managers survive one lost host.
MANAGERS = 3
SwarmRole = Literal["manager", "worker"]


def stack_services(placement: Placement) -> tuple[str, ...]:
    """The stack's service names, in start order."""
    stores = tuple(c.name for c in placement.containers if c.service in STORES)
    monitoring = tuple(c.name for c in placement.containers if c.service in MONITORING)
    return (*stores, "action", "frontend", "action-lb", "lb", *monitoring)


def store_addresses(placement: Placement) -> tuple[str, ...]:
    """Where a frontend reaches each store over the stack's network (`mongo-1:27017`): it starts
    Rasa once they all answer. Rasa exits when its tracker store does not answer within 3 s of
    loading its model, and the stack's tasks all start at once: a frontend that got there before
    the stores would load its model again, a minute or more on a busy host."""
    inner = {**INNER_PORT, "redis": REDIS_PORT}
    return tuple(
        f"{c.name}:{inner[c.service]}" for c in placement.containers if c.service in STORES
    )


def scale_up_steps(running: int, hosts: int, replicas: int) -> list[int]:
    """The replica counts a scale-up from `running` tasks goes through: one more task per host at
    a time (Swarm spreads them), each step once the last has turned healthy. All at once, the new
    frontends load their models side by side with the ones serving, on the same cores: on a
    small host none turns healthy within its start period, and Swarm kills and starts them again."""
    step = max(hosts, 1)
    return [*range(running + step, replicas, step), replicas] if replicas > running else [replicas]


def slots(replicas: int) -> int:
    return max(SLOTS, replicas)


def node_roles(cluster: Cluster) -> dict[str, SwarmRole]:
    """host → its part in the swarm: the first `lb` host founds it; managers up to three (one
    with fewer than three hosts: two managers lose quorum with either)."""
    first = cluster.hosts_with("lb")[0]
    ordered = [first, *(h for h in cluster.hosts if h != first)]
    count = MANAGERS if len(ordered) >= MANAGERS else 1
    return {host: "manager" if i < count else "worker" for i, host in enumerate(ordered)}


def founder(cluster: Cluster) -> str:
    """The host that initialises the swarm, and whose engine syrcad sends the stack to."""
    return next(iter(node_roles(cluster)))


def label_prefix(cluster: Cluster) -> str:
    return f"io.syrcad.{cluster.name}"


def network_name(cluster: Cluster) -> str:
    """The stack's overlay network, on which every task has its address."""
    return f"{cluster.name}-swarm"


def node_labels(cluster: Cluster, host: str) -> dict[str, str]:
    """The labels the stack's placement constraints read: the host's name and its roles."""
    prefix = label_prefix(cluster)
    roles: tuple[Role, ...] = cluster.hosts[host].roles
    return {f"{prefix}.host": host, **{f"{prefix}.{role}": "true" for role in roles}}


def full_name(cluster: Cluster, service: str) -> str:
    """Swarm's name for a stack service."""
    return f"{cluster.name}_{service}"


def object_key(path: str) -> str:
    """The stack file's name for the secret holding a rendered file: `rasa-endpoints-yml`."""
    return path.replace("/", "-").replace(".", "-").replace("_", "-")


def object_name(cluster: Cluster, path: str, content: str) -> str:
    """Swarm's name for that secret, which changes with the content: a secret cannot change,
    so a new content is a new secret, and the services using it roll over to it."""
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    return f"{cluster.name}-{object_key(path)}-{digest}"


def where(cluster: Cluster, placement: Placement) -> list[tuple[str, str, tuple[str, ...], str]]:
    """For `syrcad plan`: each stack service, its task count, the hosts it may run on, and
    its published ports."""
    rows: list[tuple[str, str, tuple[str, ...], str]] = [
        (c.name, "1", (c.host,), _listed(c.ports) if c.service in MONITORING else "-")
        for c in placement.containers
        if c.service in PINNED
    ]
    for service in REPLICATED:
        count = getattr(cluster.services, service).replicas
        rows.append((service, str(count), cluster.hosts_with(service), "-"))
    for lb in GLOBAL:
        ports = placement.of(lb)[0].ports
        published = [p for p in ports if lb == "lb" or p.purpose == "stats"]
        rows.append((lb, "1 per host", cluster.hosts_with("lb"), _listed(published)))
    return rows


def _listed(ports: Iterable[PortBinding]) -> str:
    return ", ".join(f"{p.purpose} {p.host_port}" for p in ports) or "-"
