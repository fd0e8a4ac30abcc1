"""Mongo's replica set: initiated by syrcad on the first `up`, found as it is on every later one.

The order is fixed (and pinned by tests/test_replica_set.py): `replSetGetStatus` first; only a
member that answers NotYetInitialized gets `replSetInitiate`, with every member's address; then
`replSetGetStatus` again until a member is PRIMARY. A set that exists with other members is
reported, not changed: adding or removing members of a running set is the operator's
`rs.reconfig` (docs/runbook.md, "Mongo replica set").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pymongo
from pymongo.errors import OperationFailure, PyMongoError

from syrcad.apply.deployment import Deployment
from syrcad.config.model import MongoTracker
from syrcad.errors import RemoteError
from syrcad.plan import commands
from syrcad.plan.placement import replica_set_members

# Mongo's answer to replSetGetStatus on a member of no set yet.
NOT_YET_INITIALIZED = 94


class Admin(Protocol):
    """The `admin` database of one member: what this module asks of pymongo."""

    def command(self, command: str, value: Any = 1) -> Mapping[str, Any]: ...


def admin_of(dep: Deployment) -> Admin:
    """The first member's admin database, as the root user, that member alone (no set yet)."""
    tracker = dep.cluster.stores.tracker
    assert isinstance(tracker, MongoTracker)
    first = dep.placement.of("mongo")[0]
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        dep.hosts[first.host].address,
        first.port("mongo").host_port,
        directConnection=True,
        username=tracker.username,
        password=dep.secrets.tracker_password,
        authSource="admin",
        serverSelectionTimeoutMS=10_000,
    )
    return client.admin


def converge(
    admin: Admin,
    config: Mapping[str, Any],
    within_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, str]:
    """Initiate the set `config` describes unless it exists; wait for its primary.
    Returns whether this call initiated it, and the primary's address."""
    initiated = False
    try:
        status = admin.command("replSetGetStatus")
    except OperationFailure as error:
        if error.code != NOT_YET_INITIALIZED:
            raise
        admin.command("replSetInitiate", config)
        initiated = True
    else:
        _same_set(status, config)
    deadline = clock() + within_s
    while True:
        try:
            status = admin.command("replSetGetStatus")
        except OperationFailure as error:  # a moment after replSetInitiate: not yet a member
            if error.code != NOT_YET_INITIALIZED:
                raise
            status = {"members": []}
        primary = [m["name"] for m in status["members"] if m.get("stateStr") == "PRIMARY"]
        if primary:
            return initiated, primary[0]
        if clock() >= deadline:
            states = {m["name"]: m.get("stateStr", "?") for m in status["members"]}
            raise TimeoutError(f"no primary after {within_s:.0f}s (members: {states})")
        sleep(1)


def _same_set(status: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    running = sorted(m["name"] for m in status["members"])
    wanted = sorted(m["host"] for m in config["members"])
    if status.get("set") != config["_id"] or running != wanted:
        raise ValueError(
            f"replica set {status.get('set')!r} runs with members {', '.join(running)}; hosts.yml "
            f"names {config['_id']!r} with {', '.join(wanted)}. syrcad does not change the "
            "members of a running set: rs.reconfig() it (docs/runbook.md, 'Mongo replica set')"
        )


def ensure(dep: Deployment, name: str, within_s: float) -> str:
    """`converge` for the cluster's set; a failure names the member and the step."""
    config = commands.replica_set_config(name, replica_set_members(dep.cluster, dep.placement))
    first = dep.placement.of("mongo")[0]
    try:
        initiated, primary = converge(admin_of(dep), config, within_s)
    except (PyMongoError, TimeoutError, ValueError) as error:
        raise RemoteError(
            first.host,
            ("replSetGetStatus", "replSetInitiate"),
            None,
            stderr=str(error),
            step=f"replica set {name} on {first.name}",
        ) from error
    return f"replica set {name}: {'initiated, ' if initiated else ''}primary {primary}"
