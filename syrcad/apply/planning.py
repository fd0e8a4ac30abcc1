"""The facts each plan is made from, read without changing anything, and the plans themselves.

A plan needs to know which rendered files differ from what a host has (this machine's copy of
each host's folder says so, without a connection) and which images a host lacks (asked of its
engine). Where a host cannot be reached, the plan assumes it lacks every image it needs and says
that facts were not read.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from syrcad.apply import shipping, swarm
from syrcad.apply.deployment import Deployment, holding, prepare
from syrcad.apply.hosts import HostHandle, each
from syrcad.apply.rotate import FRONTEND_SECRETS, fresh_secrets
from syrcad.config.model import Cluster
from syrcad.config.state import (
    Scalable,
    ScaleRecord,
    State,
    file_replicas,
    read_state,
    record_name,
    state_path,
)
from syrcad.errors import ConfigError, RemoteError, SyrcadError, UsageError
from syrcad.plan import commands, steps
from syrcad.plan.placement import Backend
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
    dep: Deployment, hosts: Sequence[HostHandle]
) -> tuple[dict[str, list[str]], bool]:
    """host → the images its containers run that it lacks, and whether the hosts answered; a
    host that did not is taken to lack them all."""
    wanted = {h.name: shipping.needed(dep.cluster, dep.placement, h.name) for h in hosts}
    local = shipping.local_engine()

    def lacking(host: HostHandle) -> tuple[list[str], bool]:
        try:
            return [s.image for s in shipping.missing(host, wanted[host.name], local)], True
        except RemoteError:  # unreachable; an image missing everywhere is an error, raised
            return wanted[host.name], False

    found = each(hosts, lacking)
    return {name: found[name][0] for name in wanted}, all(ok for _, ok in found.values())


def up(dep: Deployment) -> steps.Plan:
    if dep.cluster.engine == "swarm":
        return _swarm_up(dep)
    lacking, answered = lacking_images(dep, dep.used_hosts())
    plan = steps.up(dep.placement, changed_files(dep), lacking, dep.cluster.mongo_replica_set())
    return replace(plan, facts_read=answered)


def _swarm_up(dep: Deployment) -> steps.Plan:
    """Which hosts are in the swarm, and which still run the cluster under compose."""
    hosts = list(dep.hosts.values())
    lacking, answered = lacking_images(dep, hosts)

    def read(host: HostHandle) -> tuple[bool, bool]:
        try:
            return swarm.membership(host).joined, bool(swarm.compose_containers(host))
        except RemoteError:
            return False, False

    found = each(hosts, read)
    joined = {name: in_swarm for name, (in_swarm, _) in found.items()}
    compose_hosts = [name for name, (_, composed) in found.items() if composed]
    plan = steps.swarm_up(
        dep.cluster, dep.placement, joined, compose_hosts, changed_files(dep), lacking
    )
    return replace(plan, facts_read=answered)


def down(dep: Deployment, volumes: bool, leave: bool = False) -> steps.Plan:
    if dep.cluster.engine == "swarm":
        return steps.swarm_down(dep.cluster, volumes, leave)
    return steps.down(dep.placement, volumes)


def scale(
    hosts_file: Path, counts: dict[Scalable, int], bot: str | None = None
) -> tuple[steps.Plan, Deployment, Deployment, State]:
    """The plan, the cluster before and after, and the state the change records. With bots,
    a bot's frontends are scaled on their own; the action servers are every bot's."""
    old = prepare(hosts_file)
    file_cluster = old.loaded.cluster
    if bot is not None:
        known_bot(file_cluster, bot)
        if "action" in counts:
            own_actions(file_cluster, bot, "scale them")
    elif "action" in counts and "" not in file_cluster.action_pools():
        raise UsageError("every bot has action servers of its own: scale them with --bot")
    elif "frontend" in counts and file_cluster.bots:
        raise UsageError(f"whose frontends? give --bot, one of: {', '.join(file_cluster.bots)}")
    records = dict(old.state.live(file_cluster))
    for service, count in counts.items():
        name = record_name(service, bot or "")
        was = file_replicas(file_cluster, name)
        assert was is not None, "known_bot checked the bot"
        records[name] = ScaleRecord(count, was)
    state = replace(old.state, scale=records)
    try:
        new = prepare(hosts_file, state)
    except ConfigError as error:
        wanted = " ".join(f"{k}={v}" for k, v in counts.items())
        raise UsageError(f"{wanted}: the hosts cannot hold this:\n{error}") from None
    counted = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    if new.cluster.engine == "swarm":
        plan = steps.swarm_scale(
            new.cluster,
            old.placement,
            new.placement,
            counts,
            changed_files(new),
            f"scale {counted}",
        )
    else:
        plan = steps.scale(old.placement, new.placement, changed_files(new), f"scale {counted}")
    return plan, old, new, state


def rollout(
    hosts_file: Path, service: Scalable, batch: int, bot: str | None = None
) -> tuple[steps.Plan, Deployment, State]:
    """Every replica of `service` (of one bot's frontends with `bot`), `batch` at a time."""
    recorded = read_state(state_path(hosts_file))
    # A rollout takes the newest model: a pin from an earlier failed one is dropped.
    models = {b: m for b, m in recorded.models.items() if bot is not None and b != bot}
    state = replace(recorded, models=models)
    dep = prepare(hosts_file, state)
    if bot is not None:
        known_bot(dep.loaded.cluster, bot)
        if service == "action":
            own_actions(dep.loaded.cluster, bot, "roll them out")
    if dep.cluster.engine == "swarm":
        return steps.swarm_rollout(dep.cluster, dep.placement, service, batch), dep, state
    plan = steps.rollout(dep.placement, service, batch, changed_files(dep), bot)
    return plan, dep, state


def own_actions(cluster: Cluster, bot: str, what: str) -> None:
    """A bot's own action servers are changed with --bot; the shared ones without."""
    if not cluster.action_pool_of(bot):
        raise UsageError(f"bot {bot} uses the shared action servers: {what} without --bot")


def known_bot(cluster: Cluster, bot: str) -> None:
    if bot not in cluster.bots:
        known = ", ".join(cluster.bots) or "none: hosts.yml has no `bots:`"
        raise UsageError(f"--bot {bot}: no such bot (bots: {known})")


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
        tracker_role=new.cluster.tracker_role(),
    )
    return plan, old, new


def push(dep: Deployment) -> steps.Plan:
    # Under Swarm every host may run any service of its roles: each gets their images.
    hosts = list(dep.hosts.values()) if dep.cluster.engine == "swarm" else dep.used_hosts()
    lacking, answered = lacking_images(dep, hosts)
    return replace(steps.push([h.name for h in hosts], lacking), facts_read=answered)


def train(dep: Deployment, bot: str | None = None) -> steps.Plan:
    """Train `bot`, else every bot, one after the other."""
    if bot is not None:
        known_bot(dep.cluster, bot)
    return steps.train(dep.cluster, dep.cluster.bot_names() if bot is None else (bot,))


def host_commands(plan: steps.Plan, dep: Deployment, before: Deployment | None) -> list[list[str]]:
    """For each step, the commands it sends to hosts ("host container: command"), as
    `--dry-run` shows them; the mechanisms send these very strings (`plan.commands`)."""
    return [_commands_of(step, dep, before) for step in plan.steps]


def _commands_of(step: steps.Step, dep: Deployment, before: Deployment | None) -> list[str]:
    if step.action in ("drain", "enable"):
        holder, _ = holding(step.names, dep, before)
        return _lb_commands(holder, step.names, step.action)
    if step.action == "reload-lb":
        return [f"{step.host} {lb}: {shlex.join(commands.haproxy_reload())}" for lb in step.names]
    if step.action in ("pause-checks", "resume-checks"):
        action = "disable" if step.action == "pause-checks" else "enable"
        command = commands.health_checks(action, dep.placement.listed("frontend"))
        return [f"{lb.host} {lb.name}: {command}" for lb in dep.placement.of("lb")]
    if step.action == "write-files" and not dep.hosts[step.host].shares_our_disk:
        host = dep.hosts[step.host]
        return [
            f"{host.name}: (tar stream) | {commands.unpack_files(str(host.remote_root / host.name))}"
        ]
    return []


def _lb_commands(dep: Deployment, names: Sequence[str], action: str) -> list[str]:
    placed = {c.name: c for c in dep.placement.containers}
    listing: dict[Backend, list[str]] = {}
    for name in names:
        for backend in placed[name].backends if name in placed else ():
            listing.setdefault(backend, []).append(name)
    sent = []
    for backend, mine in listing.items():
        for lb in dep.placement.of(backend.lb):
            where = f"{lb.host} {lb.name}"
            state = "drain" if action == "drain" else "ready"
            sent.append(f"{where}: {commands.set_servers(backend.name, mine, state)}")
            if action == "drain" and backend.sticky:
                sent.append(f"{where}: {commands.move_clients(backend.name, mine)}")
    return sent
