"""`syrcad secrets rotate`: new secrets with no downtime (the order is `plan.steps.rotate`'s).

Stores first accept the new password beside the old one (Redis ACL takes several; Mongo's
password changes for new connections while open ones stay authenticated). Then frontends are
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
from syrcad.config.secrets import Secrets, new_secret
from syrcad.errors import UsageError
from syrcad.plan import commands
from syrcad.plan.placement import BALANCED

NAMES = tuple(f.name for f in fields(Secrets))
# Rotating these changes what the frontends were started with.
FRONTEND_SECRETS = {"rasa_token", "jwt_secret", "tracker_password", "redis_password"}


def fresh_secrets(old: Secrets, only: Sequence[str]) -> tuple[Secrets, list[str]]:
    """New random values for `only` (default: every secret), and the names rotated."""
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        raise UsageError(f"unknown secret(s) {', '.join(unknown)} (known: {', '.join(NAMES)})")
    names = list(only) or list(NAMES)
    return replace(old, **{name: new_secret() for name in names}), names


def store_password(old: Deployment, new: Deployment, change: str, stores: Sequence[str]) -> None:
    """Redis accepts the new password beside the old one, or forgets the old one; Mongo's
    password changes (its open connections stay authenticated)."""
    if change == "accept":
        _redis(old).execute_command(
            "ACL", "SETUSER", "default", "on", f">{new.secrets.redis_password}"
        )  # type: ignore[no-untyped-call]
    elif change == "forget":
        _redis(new).execute_command("ACL", "SETUSER", "default", f"<{old.secrets.redis_password}")  # type: ignore[no-untyped-call]
    else:
        tracker = old.cluster.stores.tracker
        assert isinstance(tracker, MongoTracker)
        _mongo(old).admin.command("updateUser", tracker.username, pwd=new.secrets.tracker_password)


def _redis(dep: Deployment) -> redis.Redis:
    store = dep.placement.of("redis")[0]
    return redis.Redis(
        host=dep.hosts[store.host].address,
        port=store.port("redis").host_port,
        password=dep.secrets.redis_password,
        socket_timeout=10,
    )


def _mongo(dep: Deployment) -> pymongo.MongoClient[dict[str, object]]:
    store = dep.placement.of("mongo")[0]
    tracker = dep.cluster.stores.tracker
    assert isinstance(tracker, MongoTracker)
    return pymongo.MongoClient(
        dep.hosts[store.host].address,
        store.port("mongo").host_port,
        username=tracker.username,
        password=dep.secrets.tracker_password,
        authSource="admin",
        serverSelectionTimeoutMS=10_000,
        directConnection=True,
    )


def health_checks(dep: Deployment, action: str) -> None:
    """Pause ("disable") or resume ("enable") the public LBs' checks of every frontend."""
    backends = [b.name for b in BALANCED["frontend"]]
    frontends = [replica.name for replica in dep.placement.of("frontend")]
    for lb in dep.placement.of("lb"):
        command = commands.health_checks(action, backends, frontends)
        haproxy.runtime(dep.hosts[lb.host], lb.name, command)
