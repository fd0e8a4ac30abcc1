"""Stage 2: where every container runs and which host ports it takes. Pure data.

Replicas of a service go round-robin over the hosts carrying its role, in file order: replica n
lands on host (n-1) mod H. Raising a count only appends replicas and lowering it removes the
highest numbers, so no existing replica ever moves. A replica's host port is the service's base
port plus its slot on that host.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from syrcad.config.model import Cluster, Role
from syrcad.errors import ConfigError, ConfigIssue

# In start order: what a service needs is already up when it starts.
Service = Literal[
    "mongo",
    "postgres",
    "redis",
    "sentinel",
    "model-server",
    "action",
    "frontend",
    "action-lb",
    "lb",
    "keepalived",
    "blackbox",
    "prometheus",
]
START_ORDER: tuple[Service, ...] = get_args(Service)


@dataclass(frozen=True)
class Backend:
    """An HAProxy backend listing every replica of one service, in the LB container `lb`."""

    name: str
    lb: Service
    # Clients stay bound to one replica for a whole session (socket.io keeps per-connection
    # state in one process): draining waits for nothing there, it moves those clients over.
    sticky: bool = False


# The backends that carry each replicated service; the first is the one `status` reports.
BALANCED: dict[Service, tuple[Backend, ...]] = {
    "frontend": (Backend("frontends", "lb"), Backend("socketio", "lb", sticky=True)),
    "action": (Backend("action_servers", "action-lb"),),
}


def bot_backend(name: str, bot: str) -> str:
    """A balanced backend's name for one bot's replicas: `frontends`, `frontends_de`."""
    return f"{name}_{bot}" if bot else name


# Ports inside the containers: fixed, so the images need no per-replica configuration.
RASA_PORT = 5005
ACTIONS_PORT = 5055
MONGO_PORT = 27017
POSTGRES_PORT = 5432
REDIS_PORT = 6379
SENTINEL_PORT = 26379
LB_PUBLIC_PORT = 8080
LB_API_PORT = 8005
LB_STATS_PORT = 8404
LB_TLS_PORT = 8443
LB_ACTIONS_PORT = 8055
PROMETHEUS_PORT = 9090
BLACKBOX_PORT = 9115
MODEL_SERVER_PORT = 8075
# Under Swarm: where a frontend or action server tells its LBs to drain it (HAProxy agent-check).
AGENT_PORT = 5099
# ...and where a frontend's processes say that their store breaker is open (the agent drains it).
BREAKER_MARKS_INSIDE = "/tmp/syrcad-breakers"
# The LB stats page's user (its password is a secret), and where configs are mounted inside.
STATS_USER = "admin"
CONFIG_INSIDE = "/etc/syrcad"
HAPROXY_CONFIG_INSIDE = "/usr/local/etc/haproxy"


@dataclass(frozen=True)
class PortBinding:
    purpose: str
    host_port: int
    container_port: int
    # Public ports listen on every interface; the rest only on the host's cluster address.
    public: bool = False
    # Also published on the LB hosts' virtual address (services.lb.virtual_address).
    virtual: bool = False


@dataclass(frozen=True)
class Container:
    service: Service
    replica: int
    host: str
    ports: tuple[PortBinding, ...]
    # A frontend's bot, when hosts.yml has `bots:`; an action server's, in a bot's own pool.
    bot: str = ""

    @property
    def name(self) -> str:
        """The compose service name, unique in the cluster: `frontend-3`, `frontend-de-3`."""
        return (
            f"{self.service}-{self.bot}-{self.replica}"
            if self.bot
            else f"{self.service}-{self.replica}"
        )

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The LB backends that list this container (none for a container not balanced)."""
        return tuple(
            Backend(bot_backend(b.name, self.bot), b.lb, b.sticky)
            for b in BALANCED.get(self.service, ())
        )

    def port(self, purpose: str) -> PortBinding:
        return next(p for p in self.ports if p.purpose == purpose)


@dataclass(frozen=True)
class Placement:
    containers: tuple[Container, ...]

    def of(self, service: Service, bot: str | None = None) -> tuple[Container, ...]:
        """The containers of `service`; of one bot's only when `bot` is given."""
        return tuple(
            c for c in self.containers if c.service == service and (bot is None or c.bot == bot)
        )

    def pools(self) -> dict[tuple[Service, str], tuple[Backend, ...]]:
        """(replicated service, bot) → the LB backends listing that pool; the first is the one
        `status` reports (socket.io follows the REST backend)."""
        return {(c.service, c.bot): c.backends for c in self.containers if c.service in BALANCED}

    def listed(self, service: Service) -> dict[str, tuple[str, ...]]:
        """Backend name → the replicas it lists, for every pool of `service`."""
        listed: dict[str, tuple[str, ...]] = {}
        for c in self.of(service):
            for backend in c.backends:
                listed[backend.name] = (*listed.get(backend.name, ()), c.name)
        return listed

    def on(self, host: str) -> tuple[Container, ...]:
        return tuple(c for c in self.containers if c.host == host)


def spread(count: int, hosts: tuple[str, ...]) -> list[tuple[int, str, int]]:
    """(replica number, host, slot on that host) for `count` replicas over `hosts`.

    >>> spread(3, ("a", "b"))
    [(1, 'a', 0), (2, 'b', 0), (3, 'a', 1)]
    """
    return [(n + 1, hosts[n % len(hosts)], n // len(hosts)) for n in range(count)]


def place(cluster: Cluster) -> Placement:
    """Place every container of `cluster`; raise ConfigError if the ports do not fit."""
    containers = [
        *_stores(cluster),
        *_model_server(cluster),
        *_pools(cluster, "action"),
        *_pools(cluster, "frontend"),
        *_load_balancers(cluster),
        *_monitoring(cluster),
    ]
    placement = Placement(tuple(containers))
    collisions = list(_port_collisions(placement))
    if collisions:
        raise ConfigError(collisions)
    return placement


INNER_PORT: dict[Service, int] = {
    "action": ACTIONS_PORT,
    "frontend": RASA_PORT,
    "mongo": MONGO_PORT,
    "postgres": POSTGRES_PORT,
}


def _replicas(
    service: Literal["action", "frontend"],
    count: int,
    base: int,
    hosts: tuple[str, ...],
    key: tuple[str, ...],
) -> list[Container]:
    """`count` replicas round-robin over `hosts`, from `base` on each host (`key` sets the
    count)."""
    if not hosts:
        return []
    top = base + (count - 1) // len(hosts)
    if top > 65535:
        most = (65535 - base + 1) * len(hosts)
        raise ConfigError(
            [
                _issue(
                    key,
                    f"{count} replicas need host ports up to {top} from base_port {base} "
                    f"on {len(hosts)} host(s); at most {most} fit",
                )
            ]
        )
    return [
        Container(service, number, host, (PortBinding("http", base + slot, INNER_PORT[service]),))
        for number, host, slot in spread(count, hosts)
    ]


def _pools(cluster: Cluster, service: Literal["action", "frontend"]) -> list[Container]:
    """Each pool of `service` (a bot's frontends; the shared action servers and each bot's
    own): a pool's host ports follow the previous pool's on every host."""
    if service == "frontend":
        pools = {bot: cluster.frontend_of(bot).replicas for bot in cluster.bot_names()}
        first = cluster.services.frontend.base_port
    else:
        pools = {pool: cluster.action_of(pool).replicas for pool in cluster.action_pools()}
        first = cluster.services.action.base_port
    free: dict[str, int] = {}  # host → its first port no pool took yet
    containers: list[Container] = []
    for bot, replicas in pools.items():
        hosts = cluster.pool_hosts(service, bot)
        base = max((free.get(host, first) for host in hosts), default=first)
        section = ("frontend" if service == "frontend" else "actions") if bot else service
        key = ("bots", bot, section, "replicas") if bot else ("services", service, "replicas")
        pool = _replicas(service, replicas, base, hosts, key)
        containers += [dataclasses.replace(c, bot=bot) for c in pool]
        for host in hosts:
            free[host] = base + -(-replicas // len(hosts))  # the slots the busiest host took
    return containers


def _singletons(
    cluster: Cluster, service: Service, role: Role, ports: Iterable[PortBinding]
) -> list[Container]:
    """One container of `service` on every host with `role`."""
    bindings = tuple(ports)
    return [
        Container(service, number, host, bindings)
        for number, host in enumerate(cluster.hosts_with(role), start=1)
    ]


def _stores(cluster: Cluster) -> list[Container]:
    role = cluster.tracker_role()
    tracker: list[Container] = []
    if role:
        port = cluster.stores.tracker.port
        # A replica set's members know each other by host address and port, and a member finds
        # itself in that list only on the port it listens on: the same port inside and out.
        inner = port if cluster.mongo_replica_set() else INNER_PORT[role]
        tracker = _singletons(cluster, role, role, [PortBinding(role, port, inner)])
    lock = cluster.stores.lock
    redis = _singletons(cluster, "redis", "redis", [PortBinding("redis", lock.port, REDIS_PORT)])
    sentinel = PortBinding("sentinel", lock.sentinel_port, SENTINEL_PORT)
    sentinels = _singletons(cluster, "sentinel", "redis", [sentinel])
    return [*tracker, *redis, *(sentinels if cluster.redis_sentinels() else [])]


def _load_balancers(cluster: Cluster) -> list[Container]:
    """Both LBs on every host with the `lb` role."""
    lb = cluster.services.lb
    tls = [PortBinding("https", lb.tls.port, LB_TLS_PORT, public=True)] if lb.tls else []
    action_lb = [
        # The frontends call whichever LB host holds the virtual address.
        PortBinding("http", lb.action_port, LB_ACTIONS_PORT, virtual=True),
        PortBinding("stats", lb.action_stats_port, LB_STATS_PORT),
    ]
    public_lb = [
        PortBinding("http", lb.public_port, LB_PUBLIC_PORT, public=True),
        *tls,
        PortBinding("api", lb.api_port, LB_API_PORT),
        PortBinding("stats", lb.stats_port, LB_STATS_PORT),
    ]
    # keepalived runs in its host's network namespace: it publishes nothing.
    keepalived = _singletons(cluster, "keepalived", "lb", []) if lb.virtual_address else []
    return [
        *_singletons(cluster, "action-lb", "lb", action_lb),
        *_singletons(cluster, "lb", "lb", public_lb),
        *keepalived,
    ]


def _model_server(cluster: Cluster) -> list[Container]:
    host = cluster.model_server_host()
    if host is None:
        return []
    port = cluster.services.model_server.port
    return [Container("model-server", 1, host, (PortBinding("http", port, MODEL_SERVER_PORT),))]


def _monitoring(cluster: Cluster) -> list[Container]:
    """Prometheus and the blackbox exporter it probes the stores with, side by side."""
    host = cluster.monitoring_host()
    if host is None:
        return []
    web = PortBinding("http", cluster.monitoring.port, PROMETHEUS_PORT)
    return [Container("blackbox", 1, host, ()), Container("prometheus", 1, host, (web,))]


def address_literal(address: str) -> str:
    """An address as it stands before `:port` (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def replica_set_members(cluster: Cluster, placement: Placement) -> tuple[str, ...]:
    """`address:port` of every Mongo replica set member, as the set's configuration names it."""
    members = []
    for member in placement.of("mongo"):
        address = address_literal(str(cluster.hosts[member.host].address))
        members.append(f"{address}:{member.port('mongo').host_port}")
    return tuple(members)


# Which key sets each container's host port, to point a collision at the key to change.
_PORT_KEYS: dict[tuple[Service, str], tuple[str, ...]] = {
    ("mongo", "mongo"): ("stores", "tracker", "port"),
    ("postgres", "postgres"): ("stores", "tracker", "port"),
    ("redis", "redis"): ("stores", "lock", "port"),
    ("sentinel", "sentinel"): ("stores", "lock", "sentinel_port"),
    ("action", "http"): ("services", "action", "base_port"),
    ("frontend", "http"): ("services", "frontend", "base_port"),
    ("action-lb", "http"): ("services", "lb", "action_port"),
    ("action-lb", "stats"): ("services", "lb", "action_stats_port"),
    ("lb", "http"): ("services", "lb", "public_port"),
    ("lb", "https"): ("services", "lb", "tls", "port"),
    ("lb", "api"): ("services", "lb", "api_port"),
    ("lb", "stats"): ("services", "lb", "stats_port"),
    ("prometheus", "http"): ("monitoring", "port"),
    ("model-server", "http"): ("services", "model_server", "port"),
}


def _port_collisions(placement: Placement) -> Iterator[ConfigIssue]:
    taken: dict[str, dict[int, str]] = defaultdict(dict)
    reported: set[tuple[str, str]] = set()
    for container in placement.containers:
        for binding in container.ports:
            owner = f"{container.name} ({binding.purpose})"
            other = taken[container.host].get(binding.host_port)
            if other is None:
                taken[container.host][binding.host_port] = owner
                continue
            key = _PORT_KEYS[(container.service, binding.purpose)]
            if (container.host, ".".join(key)) in reported:
                continue
            reported.add((container.host, ".".join(key)))
            yield _issue(
                key,
                f"port {binding.host_port} on host '{container.host}' is taken twice: "
                f"{other} and {owner}",
            )


def _issue(loc: tuple[str, ...], message: str) -> ConfigIssue:
    # File and line are filled in by config.Source.locating().
    return ConfigIssue("", ".".join(loc), message)
