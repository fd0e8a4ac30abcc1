"""Checks that span several keys of hosts.yml. Each yields (key path, message)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from syrcad.config.loader import Loc
from syrcad.config.model import Cluster, MongoTracker, PostgresTracker, Role

# Which roles a working cluster cannot do without, and what each is for.
NEEDED_ROLES: dict[Role, str] = {
    "frontend": "the Rasa frontends",
    "action": "the action servers",
    "lb": "the load balancers",
    "redis": "the Redis lock store",
}


Found = Iterator[tuple[Loc, str]]


def check(cluster: Cluster, base: Path) -> Found:
    """Everything pydantic cannot see on one key alone.

    `base` is the folder of hosts.yml: relative identity files are found from there.
    """
    yield from _roles(cluster)
    yield from _hosts(cluster, base)
    yield from _tls(cluster)
    yield from _project(cluster)
    yield from _monitoring(cluster)
    yield from _bots(cluster)
    if cluster.engine == "swarm":
        yield from _swarm(cluster)


def _roles(cluster: Cluster) -> Found:
    """Every needed role on some host, and the store roles that fit the stores."""
    needed = dict(NEEDED_ROLES)
    tracker = cluster.stores.tracker
    tracker_role = cluster.tracker_role()
    if tracker_role:
        needed[tracker_role] = f"the {TRACKER_NAMES[tracker_role]} tracker store"
    for role, purpose in needed.items():
        if not cluster.hosts_with(role):
            yield ("hosts",), f"no host has the role '{role}', needed for {purpose}"

    for role in ("mongo", "postgres"):
        if role != tracker_role:
            for name in cluster.hosts_with(role):
                yield ("hosts", name, "roles"), _unused_store_role(role, tracker)
    if len(cluster.hosts_with("postgres")) > 1:
        yield (
            ("hosts",),
            "only one host may have the role 'postgres' (syrcad runs one PostgreSQL server)",
        )
    if (
        isinstance(tracker, MongoTracker)
        and len(cluster.hosts_with("mongo")) > 1
        and not tracker.replica_set
    ):
        yield (
            ("stores", "tracker", "replica_set"),
            "several hosts have the role 'mongo': name their replica set here",
        )
    vip = cluster.services.lb.virtual_address
    if vip and len(cluster.hosts_with("lb")) < 2:
        yield (
            ("services", "lb", "virtual_address"),
            "a virtual address is shared by two or more hosts with the role 'lb'; there is one",
        )
    if vip and any(host.address == vip for host in cluster.hosts.values()):
        yield (
            ("services", "lb", "virtual_address"),
            f"{vip} is a host's own address; the virtual address must be a free one",
        )
    if cluster.redis_sentinels() and not cluster.stores.lock.atomic:
        yield (
            ("stores", "lock", "atomic"),
            "several hosts have the role 'redis': Rasa's stock lock store cannot follow a "
            "failover of the primary (rasa issue 3924); leave atomic true",
        )


TRACKER_NAMES = {"mongo": "MongoDB", "postgres": "PostgreSQL"}


def _unused_store_role(role: str, tracker: MongoTracker | PostgresTracker) -> str:
    if role == "postgres" and isinstance(tracker, PostgresTracker):
        return f"role 'postgres' is not used with stores.tracker.host set ({tracker.host} runs it)"
    return f"role '{role}' is only used with stores.tracker.type {role} (the tracker is {tracker.type})"


def _hosts(cluster: Cluster, base: Path) -> Found:
    """One address per host; the ssh files each host names exist."""
    seen: dict[str, str] = {}
    for name, host in cluster.hosts.items():
        address = str(host.address)
        if address in seen:
            yield (
                ("hosts", name, "address"),
                f"{address} is already the address of host '{seen[address]}'",
            )
        else:
            seen[address] = name
        for key, file in (
            ("identity_file", host.ssh.identity_file),
            ("config_file", host.ssh.config_file),
        ):
            if file and not (base / Path(file).expanduser()).is_file():
                yield ("hosts", name, "ssh", key), f"file not found: {file}"


def _tls(cluster: Cluster) -> Found:
    """The certificate file exists and holds a certificate and its key."""
    tls = cluster.services.lb.tls
    if tls:
        try:
            pem = Path(tls.certificate).expanduser().read_text(encoding="utf-8", errors="replace")
        except OSError:
            pem = None
        where = ("services", "lb", "tls", "certificate")
        if pem is None:
            yield where, f"file not found: {tls.certificate}"
        elif "CERTIFICATE-----" not in pem or "PRIVATE KEY-----" not in pem:
            yield where, "expected one PEM file holding the certificate (chain) and its private key"


def _project(cluster: Cluster) -> Found:
    project = cluster.project
    if project.nfs and not project.actions_path().startswith(project.path.rstrip("/") + "/"):
        yield (
            ("project", "actions"),
            "with project.nfs the actions must live inside project.path (they are mounted from the same export)",
        )


def _monitoring(cluster: Cluster) -> Found:
    monitoring = cluster.monitoring
    if monitoring.host and monitoring.host not in cluster.hosts:
        yield (
            ("monitoring", "host"),
            f"'{monitoring.host}' is not a host of this file ({', '.join(cluster.hosts)})",
        )


ROUTE_KINDS = {"app_ids": "APP_ID", "hosts": "host", "locales": "language"}


def _bots(cluster: Cluster) -> Found:
    """One default bot at most; no route that names two bots; what bots cannot run on yet."""
    if not cluster.bots:
        return
    defaults = [name for name, bot in cluster.bots.items() if bot.default]
    for name in defaults[1:]:
        yield (
            ("bots", name, "default"),
            f"bot '{defaults[0]}' is already the default bot; one bot at most takes the "
            "requests that name none",
        )
    for kind, meaning in ROUTE_KINDS.items():
        owner: dict[str, str] = {}
        for name, bot in cluster.bots.items():
            for index, value in enumerate(getattr(bot.routes, kind)):
                # A language is its primary subtag: de-AT and de would both take "de-AT".
                key = value.lower().replace("_", "-")
                key = key.split("-")[0] if kind == "locales" else key
                if key in owner and owner[key] != name:
                    yield (
                        ("bots", name, "routes", kind, index),
                        f"{meaning} '{value}' already routes to bot '{owner[key]}'",
                    )
                owner.setdefault(key, name)
    for name, bot in cluster.bots.items():
        for index, host in enumerate(bot.hosts):
            if host not in cluster.hosts:
                yield (
                    ("bots", name, "hosts", index),
                    f"'{host}' is not a host of this file ({', '.join(cluster.hosts)})",
                )
        roles: tuple[Literal["frontend", "action"], ...] = ("frontend",)
        if bot.actions != "shared":
            roles = ("frontend", "action")
        for role in roles:
            if bot.hosts and not cluster.pool_hosts(role, name):
                yield (
                    ("bots", name, "hosts"),
                    f"none of these hosts has the role '{role}', which bot {name}'s "
                    f"{'frontends' if role == 'frontend' else 'own action servers'} need",
                )
    server = cluster.services.model_server.host
    if server and server not in cluster.hosts:
        yield (
            ("services", "model_server", "host"),
            f"'{server}' is not a host of this file ({', '.join(cluster.hosts)})",
        )
    if cluster.engine == "swarm":
        yield ("bots",), "several bots run with engine: compose only, for now"
    if not isinstance(cluster.stores.tracker, MongoTracker):
        yield (
            ("bots",),
            "several bots need a Mongo tracker store (each keeps its conversations in its own "
            "collection), for now",
        )
    if cluster.project.nfs:
        for name, bot in cluster.bots.items():
            if bot.path and bot.path != cluster.project.path:
                yield (
                    ("bots", name, "path"),
                    "with project.nfs every bot loads project.path (the one export mounted); "
                    "a bot's own path needs engine: compose without nfs, for now",
                )
            if bot.actions != "shared":
                yield (
                    ("bots", name, "actions"),
                    "with project.nfs the action servers run project.actions (the one export "
                    "mounted); a bot's own actions need engine: compose without nfs, for now",
                )


def _swarm(cluster: Cluster) -> Found:
    """Keys that mean nothing under Swarm, and what syrcad does not run on Swarm yet."""
    for service in ("frontend", "action"):
        if "base_port" in getattr(cluster.services, service).model_fields_set:
            yield (
                ("services", service, "base_port"),
                "with engine: swarm the LBs reach the replicas over the swarm's network; "
                "replicas publish no host port",
            )
    if "port" in cluster.stores.tracker.model_fields_set and cluster.tracker_role():
        yield (
            ("stores", "tracker", "port"),
            "with engine: swarm the frontends reach the tracker store over the swarm's "
            "network; it publishes no host port",
        )
    lock = cluster.stores.lock
    for key in ("port", "sentinel_port"):
        if key in lock.model_fields_set:
            yield (
                ("stores", "lock", key),
                "with engine: swarm the frontends reach Redis over the swarm's network; it "
                "publishes no host port",
            )
    if "action_port" in cluster.services.lb.model_fields_set:
        yield (
            ("services", "lb", "action_port"),
            "with engine: swarm the frontends reach the action LB over the swarm's network; "
            "it publishes no host port",
        )
    if cluster.services.lb.virtual_address:
        yield (
            ("services", "lb", "virtual_address"),
            "not available with engine: swarm yet (keepalived needs the host's network); "
            "use engine: compose for two LB hosts on one address",
        )
    if cluster.redis_sentinels():
        yield (
            ("hosts",),
            "several hosts have the role 'redis': Redis with Sentinels runs with engine: "
            "compose only, for now",
        )
    if cluster.mongo_replica_set():
        yield (
            ("stores", "tracker", "replica_set"),
            "a Mongo replica set runs with engine: compose only, for now",
        )
