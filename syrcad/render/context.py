"""What each template sees: placement facts resolved from one host's point of view. Pure data.

A container reaches another on the same host by its compose service name (the cluster network),
and one on another host by that host's address and published port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlencode

from syrcad.config.model import (
    ActionService,
    BotRoutes,
    Cluster,
    FrontendService,
    PostgresTracker,
)
from syrcad.config.secrets import Secrets
from syrcad.plan import readiness
from syrcad.plan.placement import (
    BALANCED,
    INNER_PORT,
    LB_ACTIONS_PORT,
    REDIS_PORT,
    START_ORDER,
    Container,
    Placement,
    Service,
    address_literal,
    bot_backend,
)

# Where the rendered files appear inside the containers.
RASA_CONFIG_DIR = "/etc/syrcad"
HAPROXY_CONFIG_DIR = "/usr/local/etc/haproxy"


@dataclass(frozen=True)
class Target:
    """A container as seen from some host: the address to dial and the port."""

    name: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def by_name(self) -> bool:
        """True when the address is a container name (HAProxy must resolve it at run time)."""
        return self.address == self.name


@dataclass(frozen=True)
class BotContext:
    """One bot as the templates see it: its frontends' settings and files, its LB backends and
    routes, and where its conversations and lock keys live in the shared stores."""

    name: str  # "" for the one bot of a cluster without `bots:`
    frontend: FrontendService
    project: str
    rest: str  # its LB backends
    socketio: str
    targets: tuple[Target, ...]  # its frontends, as this host's LB reaches them
    endpoints: str  # its endpoints file beside the others
    collection: str  # its Mongo tracker collection
    key_prefix: str  # its lock store key prefix (alphanumeric: Rasa ignores any other)
    routes: BotRoutes
    default: bool
    actions: ActionService  # the settings of the action pool that runs its actions
    action_path: str  # where that pool answers on the action LB
    pulls: bool  # its frontends pull their model from the model server

    @property
    def models_folder(self) -> str:
        """Its models folder inside its project: the model setting, or the folder of a file."""
        model = PurePosixPath(self.frontend.model)
        return str(model.parent if model.name.endswith(".tar.gz") else model)

    @property
    def path_prefix(self) -> str:
        return f"/bots/{self.name}/"

    @property
    def languages(self) -> tuple[str, ...]:
        """Its locales as regexes on a locale or an Accept-Language entry: de takes de-AT and
        de;q=0.8 too, and - and _ are one."""
        return tuple(
            "^" + re.sub(r"[-_]", "[-_]", locale) + "([-_;]|$)" for locale in self.routes.locales
        )


@dataclass(frozen=True)
class ActionPool:
    """A pool of action servers as the templates see it: the shared one (name "") or a bot's."""

    name: str
    settings: ActionService
    path: str  # its actions package on the hosts
    backend: str  # its backend on the action LB
    targets: tuple[Target, ...]  # its servers, as this host's action LB reaches them

    @property
    def path_prefix(self) -> str:
        """What the frontends put before /webhook to reach this pool through the action LB."""
        return f"/bots/{self.name}" if self.name else ""


@dataclass(frozen=True)
class Published:
    container: Container
    ports: tuple[str, ...]  # compose "ADDR:HOST:CONTAINER" strings


@dataclass(frozen=True)
class HostContext:
    cluster: Cluster
    host: str
    address: str
    secrets: Secrets
    containers: tuple[Published, ...]
    config_dir: str
    trackers: tuple[Target, ...]
    lock: Target | None
    action_lb: Target | None
    sentinels: tuple[Target, ...]  # none unless the lock store is replicated
    # The Redis that starts as the primary, at its host's address: the replicas' and the
    # Sentinels' first word on it, in the form every member announces itself in.
    redis_primary: Target | None
    # For Prometheus, on its host only: every LB's stats port (/metrics), and the stores'
    # ports (probed with a TCP connect by the blackbox exporter beside it).
    lb_metrics: tuple[Target, ...] = ()
    store_ports: tuple[Target, ...] = ()
    bots: tuple[BotContext, ...] = ()
    action_pools: tuple[ActionPool, ...] = ()
    model_server: Target | None = None  # as this host reaches it, when some bot pulls
    # Every balanced backend (each bot's, each action pool's): what Prometheus alerts on.
    balanced: tuple[str, ...] = ()

    def has(self, service: str) -> bool:
        return any(p.container.service == service for p in self.containers)

    def own(self, service: str) -> Container:
        """This host's container of a service placed once per host (a store, a Sentinel)."""
        return next(p.container for p in self.containers if p.container.service == service)

    @property
    def quorum(self) -> int:
        """Sentinels that must agree the primary is lost: a majority."""
        return len(self.sentinels) // 2 + 1

    @property
    def mongo_url(self) -> str:
        """The frontends' Mongo URL: every member, and timeouts short enough that a store outage
        fails a turn with a 503 in seconds (pymongo waits 30 s to select a server by default).
        A read that timed out is not tried again: pymongo would wait out the reply timeout twice
        on a host that is gone, longer than a client waits; the client sends it again instead."""
        options: dict[str, int | str] = {
            "serverSelectionTimeoutMS": readiness.STORE_CONNECT_TIMEOUT_S * 1000,
            "connectTimeoutMS": readiness.STORE_CONNECT_TIMEOUT_S * 1000,
            "socketTimeoutMS": readiness.STORE_REPLY_TIMEOUT_S * 1000,
            "retryReads": "false",
        }
        if replica_set := self.cluster.mongo_replica_set():
            options["replicaSet"] = replica_set
        members = ",".join(str(t) for t in self.trackers)
        return f"mongodb://{members}/?{urlencode(options)}"

    @property
    def postgres(self) -> Target:
        """The PostgreSQL server the frontends use: syrcad's own, or the one `host` names."""
        tracker = self.cluster.stores.tracker
        assert isinstance(tracker, PostgresTracker)
        if tracker.host is None:
            return self.trackers[0]
        return Target("postgres", tracker.host, tracker.port)


def endpoints_file(bot: str) -> str:
    """A bot's Rasa endpoints file, beside the rest of the frontends' configuration."""
    return f"endpoints-{bot}.yml" if bot else "endpoints.yml"


def action_pools(
    cluster: Cluster, placement: Placement, origin: str | None
) -> tuple[ActionPool, ...]:
    """Every action pool; its servers as the action LB on `origin` reaches them (none without
    an origin)."""
    backend = BALANCED["action"][0].name
    return tuple(
        ActionPool(
            name=pool,
            settings=cluster.action_of(pool),
            path=cluster.actions_path_of(pool),
            backend=bot_backend(backend, pool),
            targets=tuple(
                reach(cluster, placement, origin, c, "http")
                for c in placement.of("action", pool)
                if origin is not None
            ),
        )
        for pool in cluster.action_pools()
    )


def balanced(placement: Placement) -> tuple[str, ...]:
    """Every balanced backend's name: each bot's frontends', then each action pool's."""
    pools = sorted(placement.pools().items(), key=lambda p: p[0][0] != "frontend")
    return tuple(backend.name for _, backends in pools for backend in backends)


def bot_contexts(
    cluster: Cluster, placement: Placement, origin: str | None
) -> tuple[BotContext, ...]:
    """Every bot; its frontends as the LB on `origin` reaches them (none without an origin)."""
    # Rasa ignores a lock-store key prefix that is not alphanumeric.
    cluster_prefix = "".join(ch for ch in cluster.name if ch.isalnum())
    rest, socketio = (b.name for b in BALANCED["frontend"])
    contexts = []
    for name in cluster.bot_names():
        bot = cluster.bots.get(name)
        targets: tuple[Target, ...] = ()
        if origin is not None:
            targets = tuple(
                reach(cluster, placement, origin, c, "http") for c in placement.of("frontend", name)
            )
        contexts.append(
            BotContext(
                name=name,
                frontend=cluster.frontend_of(name),
                project=cluster.project_of(name),
                rest=bot_backend(rest, name),
                socketio=bot_backend(socketio, name),
                targets=targets,
                endpoints=endpoints_file(name),
                collection=f"conversations_{name}" if name else "conversations",
                key_prefix=cluster_prefix + name,
                routes=bot.routes if bot else BotRoutes(),
                default=bot.default if bot else True,
                actions=cluster.action_of(cluster.action_pool_of(name)),
                action_path=f"/bots/{name}/webhook" if cluster.action_pool_of(name) else "/webhook",
                pulls=bool(bot and bot.pull_models),
            )
        )
    return tuple(contexts)


def reach(
    cluster: Cluster, placement: Placement, origin: str, container: Container, purpose: str
) -> Target:
    binding = container.port(purpose)
    if container.host == origin:
        return Target(container.name, container.name, binding.container_port)
    address = address_literal(str(cluster.hosts[container.host].address))
    return Target(container.name, address, binding.host_port)


def _published(container: Container, address: str, virtual: str | None) -> Published:
    """Compose port strings: public ports on every interface, the rest on the host's address,
    and those that follow the virtual address on it as well (the host may not hold it now:
    the LB hosts allow binding to an address they do not have, net.ipv4.ip_nonlocal_bind)."""
    ports: list[str] = []
    for p in container.ports:
        if p.public:
            ports.append(f"{p.host_port}:{p.container_port}")
            continue
        on = [address, *([virtual] if virtual and p.virtual else [])]
        ports += [f"{address_literal(a)}:{p.host_port}:{p.container_port}" for a in on]
    return Published(container, tuple(ports))


def host_context(
    cluster: Cluster, placement: Placement, secrets: Secrets, host: str
) -> HostContext:
    """Everything the templates of `host` need."""
    address = str(cluster.hosts[host].address)
    ordered = sorted(placement.on(host), key=lambda c: (START_ORDER.index(c.service), c.replica))
    services = {c.service for c in ordered}

    def targets(service: str, purpose: str = "http", needed_by: str = "") -> tuple[Target, ...]:
        if needed_by and needed_by not in services:
            return ()  # only an LB on this host lists every replica
        return tuple(
            reach(cluster, placement, host, c, purpose)
            for c in placement.containers
            if c.service == service
        )

    # A frontend calls the action LB on its own host when there is one, else the first one;
    # with a virtual address, the one that holds it.
    action_lbs = targets("action-lb")
    local_lb = [t for t in action_lbs if t.by_name]
    lb = cluster.services.lb
    vip = str(lb.virtual_address) if lb.virtual_address else None
    if vip:
        local_lb = [Target("action-lb", address_literal(vip), lb.action_port)]
    tracker_role = cluster.tracker_role()
    trackers = targets(tracker_role, tracker_role) if tracker_role else ()
    locks = targets("redis", "redis")
    lb_metrics: tuple[Target, ...] = ()
    store_ports: tuple[Target, ...] = ()
    if "prometheus" in services:
        lb_metrics = (*targets("lb", "stats"), *targets("action-lb", "stats"))
        store_ports = _probed_stores(cluster, *trackers, *locks, *targets("sentinel", "sentinel"))
    redis_primary = None
    if cluster.redis_sentinels():
        first = placement.of("redis")[0]
        first_address = str(cluster.hosts[first.host].address)
        redis_primary = Target(first.name, first_address, first.port("redis").host_port)
    return HostContext(
        cluster=cluster,
        host=host,
        address=address,
        secrets=secrets,
        containers=tuple(_published(c, address, vip) for c in ordered),
        config_dir=cluster.host_dir(host),
        trackers=trackers,
        lock=locks[0] if locks else None,
        action_lb=next(iter(local_lb or action_lbs), None),
        sentinels=targets("sentinel", "sentinel"),
        redis_primary=redis_primary,
        lb_metrics=lb_metrics,
        store_ports=store_ports,
        bots=bot_contexts(cluster, placement, host if "lb" in services else None),
        action_pools=action_pools(cluster, placement, host if "action-lb" in services else None),
        balanced=balanced(placement),
        model_server=next(
            (reach(cluster, placement, host, c, "http") for c in placement.of("model-server")),
            None,
        ),
    )


def _probed_stores(cluster: Cluster, *own: Target) -> tuple[Target, ...]:
    """The stores Prometheus probes: syrcad's own, and an outside PostgreSQL the frontends use."""
    tracker = cluster.stores.tracker
    if isinstance(tracker, PostgresTracker) and tracker.host:
        return (Target("postgres", tracker.host, tracker.port), *own)
    return own


def swarm_context(
    cluster: Cluster, placement: Placement, secrets: Secrets, host: str
) -> HostContext:
    """What the templates need under Swarm, the same on every host: every container reaches
    the others by service name on the stack's overlay network, at the port inside."""

    def by_name(service: Service, port: int) -> tuple[Target, ...]:
        return tuple(Target(c.name, c.name, port) for c in placement.of(service))

    def published(service: Service, purpose: str) -> tuple[Target, ...]:
        return tuple(
            Target(
                c.name,
                address_literal(str(cluster.hosts[c.host].address)),
                c.port(purpose).host_port,
            )
            for c in placement.of(service)
        )

    tracker_role = cluster.tracker_role()
    trackers = by_name(tracker_role, INNER_PORT[tracker_role]) if tracker_role else ()
    locks = by_name("redis", REDIS_PORT)
    lb_metrics: tuple[Target, ...] = ()
    store_ports: tuple[Target, ...] = ()
    if placement.of("prometheus"):
        # The LBs publish their stats on their hosts (host mode); the stores only on the network.
        lb_metrics = (*published("lb", "stats"), *published("action-lb", "stats"))
        store_ports = _probed_stores(cluster, *trackers, *locks)
    return HostContext(
        cluster=cluster,
        host=host,
        address=str(cluster.hosts[host].address),
        secrets=secrets,
        containers=(),
        config_dir="/run/secrets",
        trackers=trackers,
        lock=locks[0] if locks else None,
        action_lb=Target("action-lb", "action-lb", LB_ACTIONS_PORT),
        sentinels=(),
        redis_primary=None,
        lb_metrics=lb_metrics,
        store_ports=store_ports,
        bots=bot_contexts(cluster, placement, None),
        action_pools=action_pools(cluster, placement, None),
        balanced=balanced(placement),
    )
