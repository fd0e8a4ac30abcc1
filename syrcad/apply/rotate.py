"""`syrcad secrets rotate`: new secrets with no downtime (the order is `plan.steps.rotate`'s).

Stores first accept the new password beside the old one (Redis ACL takes several; Mongo's and
PostgreSQL's password changes for new connections while open ones stay authenticated). Then frontends are
replaced one at a time, drained first, while the LBs' health checks are paused: an LB still
checking with the old token would mark the new replicas down. The LBs reload with the new token
and stats password, checks resume, and Redis forgets the old password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace

import pymongo
import redis

from syrcad.apply import haproxy
from syrcad.apply.deployment import Deployment
from syrcad.config.model import MongoTracker
from syrcad.config.secrets import Secrets, new_secret, scram_sha256
from syrcad.errors import UsageError
from syrcad.plan import commands
from syrcad.plan.placement import replica_set_members

# Not rotated here: every member of a replica set must restart at once with a new key, which is
# an outage (the runbook's "Mongo replica set" says how).
KEPT = {"replica_set_key"}
NAMES = tuple(f.name for f in fields(Secrets) if f.name not in KEPT)
# Rotating these changes what the frontends were started with.
FRONTEND_SECRETS = {"rasa_token", "jwt_secret", "tracker_password", "redis_password"}


def fresh_secrets(old: Secrets, only: Sequence[str]) -> tuple[Secrets, list[str]]:
    """New random values for `only` (default: every secret), and the names rotated."""
    unknown = [n for n in only if n not in NAMES]
    if kept := [n for n in only if n in KEPT]:
        raise UsageError(f"{', '.join(kept)} is not rotated by syrcad (see the runbook)")
    if unknown:
        raise UsageError(f"unknown secret(s) {', '.join(unknown)} (known: {', '.join(NAMES)})")
    names = list(only) or list(NAMES)
    return replace(old, **{name: new_secret() for name in names}), names


def store_password(old: Deployment, new: Deployment, change: str, stores: Sequence[str]) -> None:
    """Every Redis accepts the new password beside the old one (replicas and Sentinels log in
    to the primary with the new one), or forgets the old one; Mongo's and PostgreSQL's password
    changes (their open connections stay authenticated)."""
    lock = old.cluster.stores.lock
    password, old_password = new.secrets.redis_password, old.secrets.redis_password
    if change == "accept":
        for member in _redis(old):
            member.execute_command("ACL", "SETUSER", "default", "on", f">{password}")  # type: ignore[no-untyped-call]
            if old.cluster.redis_sentinels():
                member.config_set("masterauth", password)
        for sentinel in _sentinels(old):
            sentinel.execute_command("SENTINEL", "SET", lock.primary_name, "auth-pass", password)  # type: ignore[no-untyped-call]
    elif change == "forget":
        for member in _redis(new):
            member.execute_command("ACL", "SETUSER", "default", f"<{old_password}")  # type: ignore[no-untyped-call]
    elif isinstance(tracker := old.cluster.stores.tracker, MongoTracker):
        _mongo(old).admin.command("updateUser", tracker.username, pwd=new.secrets.tracker_password)
    else:
        store = old.placement.of("postgres")[0]
        verifier = scram_sha256(new.secrets.tracker_password)
        argv = commands.postgres_password(tracker.username, tracker.database, verifier)
        old.hosts[store.host].run(
            f"change the password of {store.name}",
            lambda d: d.compose.execute(store.name, list(argv), tty=False),
        )


def _redis(dep: Deployment) -> list[redis.Redis]:
    """Every Redis of the lock store (ACLs are not replicated: each is told)."""
    return [
        redis.Redis(
            host=dep.hosts[store.host].address,
            port=store.port("redis").host_port,
            password=dep.secrets.redis_password,
            socket_timeout=10,
        )
        for store in dep.placement.of("redis")
    ]


def _sentinels(dep: Deployment) -> list[redis.Redis]:
    return [
        redis.Redis(
            host=dep.hosts[sentinel.host].address,
            port=sentinel.port("sentinel").host_port,
            socket_timeout=10,
        )
        for sentinel in dep.placement.of("sentinel")
    ]


def _mongo(dep: Deployment) -> pymongo.MongoClient[dict[str, object]]:
    """The tracker's Mongo as its root user: the one server, or a replica set's primary."""
    tracker = dep.cluster.stores.tracker
    assert isinstance(tracker, MongoTracker)
    replica_set = dep.cluster.mongo_replica_set()
    members = replica_set_members(dep.cluster, dep.placement)
    return pymongo.MongoClient(
        list(members if replica_set else members[:1]),
        replicaSet=replica_set,
        directConnection=not replica_set,
        username=tracker.username,
        password=dep.secrets.tracker_password,
        authSource="admin",
        serverSelectionTimeoutMS=10_000,
    )


def health_checks(dep: Deployment, action: str) -> None:
    """Pause ("disable") or resume ("enable") the public LBs' checks of every frontend."""
    for lb in dep.placement.of("lb"):
        command = commands.health_checks(action, dep.placement.listed("frontend"))
        haproxy.runtime(dep.hosts[lb.host], lb.name, command)
