"""The facts each plan is made from, read without changing anything, and the plans themselves.

A plan needs to know which rendered files differ from what a host has (this machine's copy of
each host's folder says so, without a connection) and which images a host lacks (asked of its
engine). Where a host cannot be reached, the plan assumes it lacks every image it needs and says
that facts were not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from syrcad.apply import shipping
from syrcad.apply.deployment import Deployment, prepare
from syrcad.apply.hosts import HostHandle, each
from syrcad.apply.rotate import FRONTEND_SECRETS, fresh_secrets
from syrcad.config.model import MongoTracker
from syrcad.config.state import Scalable, ScaleRecord, State, read_state, state_path
from syrcad.errors import ConfigError, RemoteError, SyrcadError, UsageError
from syrcad.plan import steps
from syrcad.render.files import differing


def changed_files(dep: Deployment) -> dict[str, list[str]]:
    """host → the paths of its rendered files that differ from what was last written there."""
    changed: dict[str, list[str]] = {}
    for name, host in dep.hosts.items():
        paths = differing(host.local_root, [f for f in dep.files if f.host == name])
        if paths:
            changed[name] = paths
    return changed


def lacking_images(
    dep: Deployment, hosts: Sequence[HostHandle], images: Sequence[str] | None = None
) -> tuple[dict[str, list[str]], bool]:
    """host → the images it lacks (`images`, or those its containers run), and whether the
    hosts answered; a host that did not is taken to lack them all."""
    wanted = {
        h.name: list(images) if images else shipping.needed(dep.cluster, dep.placement, h.name)
        for h in hosts
    }
    local = shipping.local_engine()

    def lacking(host: HostHandle) -> tuple[list[str], bool]:
        try:
            return [s.image for s in shipping.missing(host, wanted[host.name], local)], True
        except RemoteError:  # unreachable; an image missing everywhere is an error, raised
            return wanted[host.name], False

    found = each(hosts, lacking)
    return {name: found[name][0] for name in wanted}, all(ok for _, ok in found.values())


def up(dep: Deployment) -> steps.Plan:
    lacking, answered = lacking_images(dep, dep.used_hosts())
    plan = steps.up(dep.placement, changed_files(dep), lacking)
    return replace(plan, facts_read=answered)


def down(dep: Deployment, volumes: bool) -> steps.Plan:
    return steps.down(dep.placement, volumes)


def scale(
    hosts_file: Path, counts: dict[Scalable, int]
) -> tuple[steps.Plan, Deployment, Deployment, State]:
    """The plan, the cluster before and after, and the state the change records."""
    old = prepare(hosts_file)
    records = dict(old.state.live(old.loaded.cluster))
    for name, count in counts.items():
        records[name] = ScaleRecord(count, getattr(old.loaded.cluster.services, name).replicas)
    state = replace(old.state, scale=records)
    try:
        new = prepare(hosts_file, state)
    except ConfigError as error:
        wanted = " ".join(f"{k}={v}" for k, v in counts.items())
        raise UsageError(f"{wanted}: the hosts cannot hold this:\n{error}") from None
    counted = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    plan = steps.scale(old.placement, new.placement, changed_files(new), f"scale {counted}")
    return plan, old, new, state


def rollout(
    hosts_file: Path, service: Scalable, batch: int
) -> tuple[steps.Plan, Deployment, State]:
    # A rollout takes the newest model: any pin from an earlier failed rollout is dropped.
    state = replace(read_state(state_path(hosts_file)), model=None)
    dep = prepare(hosts_file, state)
    return steps.rollout(dep.placement, service, batch, changed_files(dep)), dep, state


def rotate(hosts_file: Path, only: Sequence[str]) -> tuple[steps.Plan, Deployment, Deployment]:
    """The plan, the cluster with its secrets as they are, and with the new ones."""
    old = prepare(hosts_file)
    secrets, names = fresh_secrets(old.secrets, only)
    new = prepare(hosts_file, secrets=secrets)
    changed = changed_files(new)
    if not changed:
        raise SyrcadError("nothing would change on the hosts")
    plan = steps.rotate(
        new.placement,
        names,
        changed,
        frontends_affected=bool(FRONTEND_SECRETS & set(names)),
        tracker_is_mongo=isinstance(new.cluster.stores.tracker, MongoTracker),
    )
    return plan, old, new


def push(dep: Deployment) -> steps.Plan:
    lacking, answered = lacking_images(dep, dep.used_hosts())
    return replace(steps.push(dep.placement, lacking), facts_read=answered)


def train(dep: Deployment) -> steps.Plan:
    return steps.train(dep.cluster)
