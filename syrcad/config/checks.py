"""Checks that span several keys of hosts.yml. Each yields (key path, message)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from syrcad.config.loader import Loc
from syrcad.config.model import Cluster, MongoTracker, Role

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


def _roles(cluster: Cluster) -> Found:
    """Every needed role on some host, and the store roles that fit the stores."""
    needed = dict(NEEDED_ROLES)
    tracker = cluster.stores.tracker
    mongo_tracker = isinstance(tracker, MongoTracker)
    if mongo_tracker:
        needed["mongo"] = "the MongoDB tracker store"
    for role, purpose in needed.items():
        if not cluster.hosts_with(role):
            yield ("hosts",), f"no host has the role '{role}', needed for {purpose}"

    if not mongo_tracker:
        for name in cluster.hosts_with("mongo"):
            yield (
                ("hosts", name, "roles"),
                "role 'mongo' is only used with stores.tracker.type mongo (the tracker is postgres)",
            )
    elif (
        isinstance(tracker, MongoTracker)
        and len(cluster.hosts_with("mongo")) > 1
        and not tracker.replica_set
    ):
        yield (
            ("stores", "tracker", "replica_set"),
            "several hosts have the role 'mongo': name their replica set here",
        )
    if len(cluster.hosts_with("redis")) > 1:
        yield (
            ("hosts",),
            "only one host may have the role 'redis' (one lock store for all frontends)",
        )


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
