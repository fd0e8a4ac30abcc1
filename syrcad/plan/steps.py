"""Stage 3: what a change will do, as an ordered tuple of small frozen steps. Pure data.

Every command that changes a cluster builds its plan here, from the wanted placement and what is
known without touching a host (the state file, this machine's copy of each host's files):
`--dry-run` prints it, and `syrcad.apply.execute` runs it step by step. Consecutive steps of one
action on different hosts run in parallel. A plan's `on_failure` steps run when a step fails,
before the error is reported (they put back what the plan had taken away).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from syrcad.config.model import Cluster
from syrcad.config.state import Scalable
from syrcad.plan import swarm
from syrcad.plan.placement import BALANCED, Container, Placement, Service
from syrcad.plan.readiness import (
    IN_LB_WITHIN_S,
    PRIMARY_WITHIN_S,
    STACK_REMOVED_WITHIN_S,
    ready_within_s,
)

Action = Literal[
    "ship-images",  # send the host the images it lacks (names: images)
    "write-files",  # put the rendered files in place on the host (names: paths)
    "start",  # compose up: create or recreate what changed (names: replicas)
    "recreate",  # a fresh container, whatever changed (new model, image, secret)
    "restart-kept",  # restart frontends compose kept: Rasa reads its config files at boot
    "wait-ready",  # until the replicas are healthy (seconds: the budget)
    "drain",  # no new requests; in-flight ones finish; sticky (socket.io) clients move on
    "enable",  # the replicas take traffic again
    "reload-lb",  # hitless reload of an LB whose config changed
    "wait-in-lbs",  # until every LB reports the replicas UP (names: all when empty)
    "remove-orphans",  # remove the containers the host's compose file no longer has
    "stop",  # compose down on the host (note: with volumes, the store data goes too)
    "record-state",  # write the state file beside hosts.yml (note: what it records)
    "read-models",  # note which model each frontend runs, for a put-back
    "check-model",  # every frontend reports one and the same model id
    "put-back",  # on a failed rollout: the replicas back on what they ran before
    "pause-checks",  # the LBs stop health-checking the replicas (secrets rotate)
    "resume-checks",
    "store-password",  # a store accepts or forgets a password (note: which)
    "write-secrets",  # the new secrets into hosts.secrets.yml
    "train",  # train the model in a one-off container on the host (names: the bot, if several)
    "init-replica-set",  # Mongo: initiate the set if it is not (note: its name), wait for a primary
    # engine: swarm
    "init-swarm",  # the host founds the swarm
    "join-swarm",  # the host joins it (note: manager or worker)
    "label-nodes",  # each host's node labelled with its name and roles (names: hosts)
    "stop-compose",  # engine switched: compose's containers and networks there removed, volumes kept
    "deploy-stack",  # docker stack deploy of the rendered stack (names: its services)
    "wait-converged",  # every service at its task count, healthy, and UP in every LB
    "scale-service",  # a service's replica count (names: the service; note: the count)
    "update-service",  # rolling replacement of a service's tasks (note: tasks at a time)
    "remove-stack",  # the stack's services, network and secrets
    "remove-volumes",  # the stack's volumes on the host (the store data)
    "leave-swarm",  # the host leaves the swarm
]
# The stages of `up`: what a stage needs is ready before it starts.
STAGES: tuple[tuple[Service, ...], ...] = (
    ("mongo", "postgres", "redis", "sentinel", "model-server"),
    ("action",),
    ("frontend",),
    ("action-lb", "lb", "keepalived"),
    ("blackbox", "prometheus"),
)


# Services that read their mounted files only when they start (Rasa its endpoints and modules,
# Prometheus its config and rules), and the folder of those files: a change restarts them.
READ_AT_START: tuple[tuple[Service, str], ...] = (
    ("frontend", "rasa/"),
    ("prometheus", "prometheus/"),
)


# Steps of these actions run side by side when they come one after another on different hosts
# (and in the same wave): each touches its own host only. Restarts and reloads stay one by one,
# so the cluster never loses more than one replica's capacity to them at a time.
SIDE_BY_SIDE: frozenset[Action] = frozenset(
    {
        "ship-images",
        "write-files",
        "start",
        "remove-orphans",
        "stop",
        "stop-compose",
        "remove-volumes",
    }
)
WITH_VOLUMES = "and delete its volumes"
AS_THEY_WERE = "as they were"  # write-files: the files from before the change


@dataclass(frozen=True)
class Step:
    action: Action
    host: str = ""  # "" for a step over the cluster: its names say where
    names: tuple[str, ...] = ()
    seconds: int = 0  # how long a wait may take
    note: str = ""
    wave: int = 0  # side-by-side steps of another wave wait for this one's

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "host": self.host,
            "names": list(self.names),
            "seconds": self.seconds,
            "note": self.note,
            "wave": self.wave,
        }

    def __str__(self) -> str:
        where = f"{self.host}: " if self.host else ""
        what = ", ".join(self.names)
        extra = [f"within {self.seconds}s"] if self.seconds else []
        extra += [self.note] if self.note else []
        tail = f" ({'; '.join(extra)})" if extra else ""
        return f"{where}{self.action} {what}".rstrip() + tail


@dataclass(frozen=True)
class Plan:
    command: str
    steps: tuple[Step, ...]
    on_failure: tuple[Step, ...] = ()
    # False when the hosts could not be reached: the plan comes from the rendered files alone.
    facts_read: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "facts_read": self.facts_read,
            "steps": [s.as_dict() for s in self.steps],
            "on_failure": [s.as_dict() for s in self.on_failure],
        }


def _names(containers: Iterable[Container]) -> tuple[str, ...]:
    return tuple(c.name for c in containers)


def _per_host(containers: Sequence[Container]) -> dict[str, tuple[str, ...]]:
    hosts: dict[str, tuple[str, ...]] = {}
    for c in containers:
        hosts[c.host] = (*hosts.get(c.host, ()), c.name)
    return hosts


def _balanced(containers: Iterable[Container]) -> tuple[Container, ...]:
    return tuple(c for c in containers if c.service in BALANCED)


def _lb_config(lb: Container) -> str:
    return f"{lb.service}/haproxy.cfg"


def ship(hosts: Sequence[str], images: Mapping[str, Sequence[str]]) -> tuple[Step, ...]:
    """One step per host that lacks images (`images`: host → what it lacks, or needs)."""
    return tuple(
        Step("ship-images", host, tuple(images[host])) for host in hosts if images.get(host)
    )


def _hosts(placement: Placement) -> list[str]:
    return list(dict.fromkeys(c.host for c in placement.containers))


def _write(changed: Mapping[str, Sequence[str]], hosts: Iterable[str]) -> tuple[Step, ...]:
    return tuple(Step("write-files", h, tuple(changed[h])) for h in hosts if changed.get(h))


def up(
    placement: Placement,
    changed: Mapping[str, Sequence[str]],
    missing_images: Mapping[str, Sequence[str]],
    replica_set: str | None = None,
) -> Plan:
    """Converge every host: ship images, write files, start stage by stage, each stage ready
    before the next (Mongo's replica set initiated and with a primary); then restart what must
    re-read its files and bring every replica in."""
    hosts = _hosts(placement)
    steps = [*ship(hosts, missing_images), *_write(changed, hosts)]
    for stage in STAGES:
        placed = [c for c in placement.containers if c.service in stage]
        if not placed:
            continue
        steps += [Step("start", host, names) for host, names in _per_host(placed).items()]
        steps.append(Step("wait-ready", names=_names(placed), seconds=ready_within_s(placed)))
        if replica_set and "mongo" in stage:
            members = _names(placement.of("mongo"))
            steps.append(
                Step("init-replica-set", names=members, seconds=PRIMARY_WITHIN_S, note=replica_set)
            )
    steps += [Step("remove-orphans", host) for host in hosts]
    for host in hosts:
        for service, folder in READ_AT_START:
            kept = [c for c in placement.on(host) if c.service == service]
            if kept and any(p.startswith(folder) for p in changed.get(host, ())):
                steps.append(
                    Step(
                        "restart-kept",
                        host,
                        _names(kept),
                        ready_within_s(kept),
                        "unless started anew",
                    )
                )
    steps += [
        Step("reload-lb", lb.host, (lb.name,), note="unless started anew")
        for lb in placement.containers
        if lb.service in ("lb", "action-lb") and _lb_config(lb) in changed.get(lb.host, ())
    ]
    balanced = _names(_balanced(placement.containers))
    steps += [
        Step("enable", names=balanced),
        Step("wait-in-lbs", names=balanced, seconds=IN_LB_WITHIN_S),
    ]
    return Plan("up", tuple(steps))


def down(placement: Placement, volumes: bool) -> Plan:
    """Load balancers first, stores last: a host goes with the earliest stage it runs, last."""

    def rank(host: str) -> int:
        services = {c.service for c in placement.on(host)}
        return -min(i for i, stage in enumerate(STAGES) if services & set(stage))

    hosts = sorted(_hosts(placement), key=rank)
    note = WITH_VOLUMES if volumes else ""
    ranks = sorted({rank(h) for h in hosts})
    return Plan("down", tuple(Step("stop", h, note=note, wave=ranks.index(rank(h))) for h in hosts))


def scale(
    old: Placement,
    new: Placement,
    changed: Mapping[str, Sequence[str]],
    record: str,
) -> Plan:
    """New replicas join their LB once ready; removed ones drain first, then go."""
    old_names = set(_names(old.containers))
    new_names = set(_names(new.containers))
    added = [c for c in new.containers if c.name not in old_names]
    removed = [c for c in old.containers if c.name not in new_names]
    touched = list(dict.fromkeys(c.host for c in (*old.containers, *new.containers)))
    steps: list[Step] = []
    if removed:
        steps.append(Step("drain", names=_names(removed)))
    steps += _write(changed, touched)
    steps += [Step("start", host, names) for host, names in _per_host(added).items()]
    if added:
        steps.append(Step("wait-ready", names=_names(added), seconds=ready_within_s(added)))
    steps += [
        Step("reload-lb", lb.host, (lb.name,))
        for lb in new.containers
        if lb.service in ("lb", "action-lb") and _lb_config(lb) in changed.get(lb.host, ())
    ]
    if added:
        steps.append(Step("wait-in-lbs", names=_names(_balanced(added)), seconds=IN_LB_WITHIN_S))
    for host in touched:
        if new.on(host):
            steps.append(Step("remove-orphans", host))
        else:
            steps.append(Step("stop", host, note="no replica is left there"))
    steps.append(Step("record-state", note=record))
    # Back to the old set: old files, new containers gone, drained replicas serving again.
    undo = [Step("write-files", h, note=AS_THEY_WERE) for h in touched]
    undo += [Step("remove-orphans", h) for h in touched if old.on(h)]
    if removed:
        undo.append(Step("enable", names=_names(removed)))
    return Plan("scale", tuple(steps), tuple(undo))


def rollout(
    placement: Placement,
    service: Service,
    batch: int,
    changed: Mapping[str, Sequence[str]],
    bot: str | None = None,
) -> Plan:
    """Replace `service`'s replicas (`bot`'s only, if given) `batch` at a time: drain →
    recreate → ready → enable. A batch never spans two bots: each checks its own model."""
    replicas = placement.of(service, bot)
    steps = list(_write(changed, dict.fromkeys(c.host for c in replicas)))
    batches = [
        pool[start : start + batch]
        for pool in (
            [c for c in replicas if c.bot == name]
            for name in dict.fromkeys(c.bot for c in replicas)
        )
        for start in range(0, len(pool), batch)
    ]
    for group in batches:
        names = _names(group)
        if service == "frontend":
            steps.append(Step("read-models", names=names))
        steps.append(Step("drain", names=names))
        steps += [Step("recreate", c.host, (c.name,)) for c in group]
        steps.append(Step("wait-ready", names=names, seconds=ready_within_s(group)))
        steps += [
            Step("enable", names=names),
            Step("wait-in-lbs", names=names, seconds=IN_LB_WITHIN_S),
        ]
    steps.append(Step("record-state", note="no model pinned"))
    if service == "frontend":
        steps.append(Step("check-model", names=_names(replicas)))
    undo = (Step("put-back", note="the batch under way, on the model it ran before"),)
    return Plan("rollout", tuple(steps), undo)


def rotate(
    placement: Placement,
    names: Sequence[str],
    changed: Mapping[str, Sequence[str]],
    frontends_affected: bool,
    tracker_role: Service | None,
) -> Plan:
    """Stores accept the new passwords, frontends roll one at a time with the LBs' checks
    paused, LBs reload, checks resume, and Redis forgets the old password."""
    steps: list[Step] = []
    if "redis_password" in names:
        steps.append(Step("store-password", names=_names(placement.of("redis")), note="accept"))
    steps.append(Step("write-secrets", names=tuple(names)))
    steps += _write(changed, _hosts(placement))
    if "tracker_password" in names and tracker_role:
        # After the files: a PostgreSQL connection a frontend opens from then on tries the new
        # password (its file) and then the one it started with (syrcad_turns.SQLTrackerStore),
        # so one of the two is right on either side of the change.
        trackers = _names(placement.of(tracker_role))
        steps.append(Step("store-password", names=trackers, note="change"))
    reload = [
        Step("reload-lb", lb.host, (lb.name,))
        for lb in placement.containers
        if lb.service in ("lb", "action-lb") and _lb_config(lb) in changed.get(lb.host, ())
    ]
    lbs = _names(placement.of("lb"))
    undo: list[Step] = []
    if frontends_affected:
        steps.append(Step("pause-checks", names=lbs))
        for replica in placement.of("frontend"):
            steps += [
                Step("drain", names=(replica.name,)),
                Step("recreate", replica.host, (replica.name,)),
                Step("wait-ready", names=(replica.name,), seconds=ready_within_s([replica])),
                Step("enable", names=(replica.name,)),
            ]
        undo = [*reload, Step("resume-checks", names=lbs)]
    steps += [*undo] if undo else reload
    balanced = _names(_balanced(placement.containers))
    steps.append(Step("wait-in-lbs", names=balanced, seconds=IN_LB_WITHIN_S))
    if "redis_password" in names:
        steps.append(Step("store-password", names=_names(placement.of("redis")), note="forget"))
    return Plan("secrets rotate", tuple(steps), tuple(undo))


def push(hosts: Sequence[str], images: Mapping[str, Sequence[str]]) -> Plan:
    return Plan("images push", ship(hosts, images))


def train(cluster: Cluster, bots: Sequence[str]) -> Plan:
    """On the first host with the `train` role (the GPU machine), else the first frontend host:
    each of `bots` in turn, its model written into its project."""
    host = (cluster.hosts_with("train") or cluster.hosts_with("frontend"))[0]
    image = cluster.images.rasa
    trainings = [
        Step(
            "train",
            host,
            (bot,) if bot else (),
            note=f"{cluster.project_of(bot)}/{cluster.frontend_of(bot).model}",
        )
        for bot in bots
    ]
    return Plan("train", (Step("ship-images", host, (image,)), *trainings))


# engine: swarm. The stack holds the whole cluster; Swarm starts, replaces and rolls its tasks.


def swarm_up(
    cluster: Cluster,
    placement: Placement,
    joined: Mapping[str, bool],
    compose_hosts: Sequence[str],
    changed: Mapping[str, Sequence[str]],
    missing_images: Mapping[str, Sequence[str]],
) -> Plan:
    """Ship images, found or join the swarm where a host is not in it, label the nodes, take
    over from compose, deploy the stack and wait until it has converged."""
    hosts = list(cluster.hosts)
    roles = swarm.node_roles(cluster)
    founder = swarm.founder(cluster)
    steps = list(ship(hosts, missing_images))
    if not joined.get(founder):
        steps.append(Step("init-swarm", founder))
    steps += [
        Step("join-swarm", host, note=roles[host])
        for host in hosts
        if host != founder and not joined.get(host)
    ]
    steps.append(Step("label-nodes", names=tuple(hosts)))
    steps += [Step("stop-compose", host) for host in compose_hosts]
    steps += _write(changed, [founder])
    services = swarm.stack_services(placement)
    steps += [
        Step("deploy-stack", founder, services),
        Step("wait-converged", names=services, seconds=ready_within_s(placement.containers)),
    ]
    return Plan("up", tuple(steps))


def swarm_down(cluster: Cluster, volumes: bool, leave: bool) -> Plan:
    """The stack goes; with --volumes its store data on every host; with --leave every host
    leaves the swarm, the founder last."""
    steps = [Step("remove-stack", swarm.founder(cluster), seconds=STACK_REMOVED_WITHIN_S)]
    if volumes:
        steps += [Step("remove-volumes", host) for host in cluster.hosts]
    if leave:
        steps += [Step("leave-swarm", host) for host in reversed(swarm.node_roles(cluster))]
    return Plan("down", tuple(steps))


def swarm_scale(
    cluster: Cluster,
    old: Placement,
    new: Placement,
    counts: Mapping[Scalable, int],
    changed: Mapping[str, Sequence[str]],
    record: str,
) -> Plan:
    """The stack file gets the new counts (a later `up` changes nothing), Swarm the new
    replica counts; the LBs find the tasks in Swarm's DNS, with no reload."""
    steps = [*_write(changed, [swarm.founder(cluster)])]
    added = [c for c in new.containers if c.name not in set(_names(old.containers))]
    services = swarm.stack_services(new)
    # Removed tasks stop within their grace period and then fail the LBs' checks.
    within = max(ready_within_s(added), IN_LB_WITHIN_S)
    # The counts Swarm has been given so far: a wait holds the services not scaled yet to theirs.
    given = {service: len(old.of(service)) for service in counts}
    for service, count in counts.items():
        hosts = len(cluster.hosts_with(service))
        for replicas in swarm.scale_up_steps(given[service], hosts, count):
            given[service] = replicas
            held = " ".join(f"{s}={n}" for s, n in given.items())
            steps += [
                Step("scale-service", names=(service,), note=str(replicas)),
                Step("wait-converged", names=services, seconds=within, note=held),
            ]
    steps.append(Step("record-state", note=record))
    return Plan("scale", tuple(steps))


def swarm_rollout(cluster: Cluster, placement: Placement, service: Service, batch: int) -> Plan:
    steps = [
        Step("update-service", names=(service,), note=str(batch)),
        Step("wait-converged", names=swarm.stack_services(placement), seconds=IN_LB_WITHIN_S),
        Step("record-state", note="no model pinned"),
    ]
    if service == "frontend":
        steps.append(Step("check-model", names=("frontend",)))
    return Plan("rollout", tuple(steps))
