"""`syrcad secrets rotate`: new secrets with no downtime.

Stores first accept the new password beside the old one (Redis ACL takes several; Mongo's
password changes for new connections while open ones stay authenticated). Then frontends are
replaced one at a time, drained first, while the LBs' health checks are paused: an LB still
checking with the old token would mark the new replicas down. The LBs reload with the new token
and stats password, checks resume, and Redis forgets the old password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import pymongo
import redis

from syrcad.apply import haproxy
from syrcad.apply.changes import drain, enable
from syrcad.apply.deploy import Deployment, Reporter, prepare, reload_lbs, wait_in_lbs, wait_ready
from syrcad.config.model import MongoTracker
from syrcad.config.secrets import Secrets, document, new_secret, secrets_path, write_private
from syrcad.errors import SyrcadError, UsageError
from syrcad.plan.readiness import ready_within_s

NAMES = tuple(f.name for f in fields(Secrets))
# Rotating these changes what the frontends were started with.
FRONTEND_SECRETS = {"rasa_token", "jwt_secret", "tracker_password", "redis_password"}


def rotate(hosts_file: Path, only: Sequence[str], report: Reporter) -> list[str]:
    """Rotate `only` (default: every secret); returns the names rotated."""
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        raise UsageError(f"unknown secret(s) {', '.join(unknown)} (known: {', '.join(NAMES)})")
    names = list(only) or list(NAMES)
    old = prepare(hosts_file)
    fresh = replace(old.secrets, **{name: new_secret() for name in names})

    if "redis_password" in names:
        _redis(old).execute_command("ACL", "SETUSER", "default", "on", f">{fresh.redis_password}")  # type: ignore[no-untyped-call]
        report.step("redis: accepts the new password (and the old one, for now)")
    if "tracker_password" in names and isinstance(old.cluster.stores.tracker, MongoTracker):
        _mongo(old).admin.command(
            "updateUser", old.cluster.stores.tracker.username, pwd=fresh.tracker_password
        )
        report.step("mongo: password changed (open connections stay authenticated)")

    write_private(secrets_path(old.loaded.path), document(fresh))
    new = prepare(hosts_file)
    changed = {h.name: h.sync(new.files) for h in new.used_hosts()}
    if not any(changed.values()):
        raise SyrcadError("nothing changed on the hosts: were the secrets rotated already?")

    frontends = list(new.placement.of("frontend"))
    if FRONTEND_SECRETS & set(names):
        _health_checks(new, "disable")
        try:
            for replica in frontends:
                drain(new, [replica], report)
                new.hosts[replica.host].recreate(replica.name)
                wait_ready(
                    [(new.hosts[replica.host], [replica.name])],
                    replica.name,
                    ready_within_s([replica]),
                    report,
                )
                enable(new, [replica])
        finally:
            reload_lbs(new, changed)
            _health_checks(new, "enable")
    else:
        reload_lbs(new, changed)
    wait_in_lbs(new, report)

    if "redis_password" in names:
        _redis(new).execute_command("ACL", "SETUSER", "default", f"<{old.secrets.redis_password}")  # type: ignore[no-untyped-call]
        report.step("redis: old password removed")
    return names


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


def _health_checks(dep: Deployment, action: str) -> None:
    for lb in dep.placement.of("lb"):
        commands = [
            f"{action} health {backend}/{replica.name}"
            for backend in ("frontends", "socketio")
            for replica in dep.placement.of("frontend")
        ]
        haproxy.runtime(dep.hosts[lb.host], lb.name, "; ".join(commands))
