"""Docker Swarm as the engine: the swarm's membership, the stack, its services and tasks.

Every call to the swarm goes to a manager's engine: the host that founded it, else the next
manager that answers (the founder may be the host that was lost).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from python_on_whales import DockerClient, DockerException, Volume
from python_on_whales.components.task.models import TaskInspectResult
from python_on_whales.utils import run as docker_run

from syrcad.apply import facts
from syrcad.apply.deployment import Deployment, Reporter
from syrcad.apply.hosts import HostHandle
from syrcad.apply.waits import until_done
from syrcad.errors import RemoteError, SyrcadError
from syrcad.plan import readiness, swarm
from syrcad.plan.placement import BALANCED, RASA_PORT, Service, address_literal
from syrcad.render.stack import STACK_FILE

SWARM_PORT = 2377  # managers' cluster management port
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
# What a manager answers while the managers elect a leader: that there is none yet, or (a
# request that reached it as the election began; seen after a cut manager returned) that its
# Raft call timed out, or that it stopped being the leader while handling it.
ELECTING = ("does not have a leader", "context deadline exceeded", "lost leader status")


def electing(error: Exception) -> bool:
    """Whether a manager's error says the managers are electing a leader: ask again."""
    return any(answer in str(error) for answer in ELECTING)


STACK_LABEL = "com.docker.stack.namespace"
READ_TASKS_TRIES = 3
T = TypeVar("T")


@dataclass(frozen=True)
class Membership:
    node_id: str
    state: str  # inactive, pending, active, error, locked
    manager: bool  # this engine can manage the swarm (ControlAvailable)

    @property
    def joined(self) -> bool:
        return self.state == "active"


def membership(host: HostHandle) -> Membership:
    info = host.run("read its swarm membership", lambda d: d.system.info()).swarm
    if info is None:
        return Membership("", "inactive", False)
    return Membership(
        info.node_id or "", info.local_node_state or "inactive", bool(info.control_available)
    )


def manager(dep: Deployment) -> HostHandle:
    """The first manager, in the order hosts.yml makes them, whose engine answers as one."""
    tried = []
    for name, role in swarm.node_roles(dep.cluster).items():
        if role != "manager":
            continue
        host = dep.hosts[name]
        try:
            if membership(host).manager:
                wait_for_leader(host)
                return host
            tried.append(f"{name}: not a manager")
        except RemoteError as error:
            tried.append(f"{name}: {str(error).splitlines()[0]}")
    raise SyrcadError("no manager of the swarm answers: " + "; ".join(tried))


def asked_again_while_electing(attempt: Callable[[], T], deadline: float) -> T:
    """What `attempt()` returns, asked again every second while the managers elect a leader,
    until `deadline` (time.monotonic())."""
    while True:
        try:
            return attempt()
        except RemoteError as error:
            if not electing(error) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def wait_for_leader(host: HostHandle) -> None:
    """Until the managers have a leader: they answer swarm commands only then."""
    asked_again_while_electing(
        lambda: host.run("ask the managers for their leader", lambda d: d.node.list()),
        time.monotonic() + readiness.SWARM_LEADER_ELECTED_WITHIN_S,
    )


def init(host: HostHandle) -> None:
    host.run("initialise the swarm", lambda d: d.swarm.init(advertise_address=host.address))


def join(host: HostHandle, founder: HostHandle, role: str) -> None:
    token = founder.run(f"read the {role} join token", lambda d: d.swarm.join_token(role))
    address = f"{address_literal(founder.address)}:{SWARM_PORT}"
    host.run(
        f"join the swarm as a {role}",
        lambda d: d.swarm.join(address, advertise_address=host.address, token=token),
    )


def label(dep: Deployment, hosts: Sequence[str]) -> None:
    """Each host's node labelled with its name and roles (the stack's constraints read them);
    labels of roles it no longer has are removed."""
    boss = manager(dep)
    prefix = swarm.label_prefix(dep.cluster)
    for name in hosts:
        node_id = membership(dep.hosts[name]).node_id
        wanted = swarm.node_labels(dep.cluster, name)

        def update(
            d: DockerClient, node_id: str = node_id, wanted: dict[str, str] = wanted
        ) -> None:
            node = d.node.inspect(node_id)
            have = node.spec.labels or {}
            stale = [k for k in have if k.startswith(f"{prefix}.") and k not in wanted]
            d.node.update(node_id, labels_add=wanted, rm_labels=stale)

        boss.run(f"label the node of {name}", update)


def compose_containers(host: HostHandle) -> list[str]:
    """The cluster's containers that compose runs on `host` (engine: compose before)."""
    return [fact.name for fact in facts.containers(host).values()]


def stop_compose(host: HostHandle) -> list[str]:
    """The cluster's containers that compose started on `host`, removed, then its networks
    (volumes kept): the switch from engine compose. Returns the containers' names."""
    label = f"{COMPOSE_PROJECT_LABEL}={host.project}"

    def remove(d: DockerClient) -> list[str]:
        found = d.container.list(all=True, filters=[("label", label)])
        names = [c.name for c in found]  # inspected now: a removed container cannot be
        if found:
            d.container.remove(found, force=True)
        # Once their containers are gone: a network with a container attached stays.
        for network in d.network.list(filters=[("label", label)]):
            d.network.remove(network)
        return names

    return host.run("remove the containers and networks compose ran", remove)


def deploy(dep: Deployment) -> None:
    boss = manager(dep)
    stack_file = (
        dep.hosts[swarm.founder(dep.cluster)].local_root / swarm.founder(dep.cluster) / STACK_FILE
    )
    boss.run(
        "deploy the stack",
        lambda d: d.stack.deploy(dep.cluster.name, [stack_file], prune=True, resolve_image="never"),
    )


def scale(dep: Deployment, service: str, replicas: int) -> None:
    full = swarm.full_name(dep.cluster, service)
    manager(dep).run(f"scale {full}", lambda d: d.service.scale({full: replicas}, detach=True))


def update(dep: Deployment, service: str, batch: int) -> None:
    """A rolling replacement of every task (new model, image): start-first, `batch` at a time,
    each gated on its healthcheck, rolled back by Swarm when one does not turn healthy."""
    full = swarm.full_name(dep.cluster, service)

    def roll(d: DockerClient) -> None:
        argv = [*d.client_config.docker_cmd, "service", "update", "--force", "--quiet"]
        argv += ["--update-parallelism", str(batch), "--detach=false", full]
        docker_run(argv)

    boss = manager(dep)
    boss.run(f"roll {full} over", roll)
    rolled_back = boss.run(f"read {full}", lambda d: d.service.inspect(full).update_status)
    if rolled_back and "rollback" in str(rolled_back.state or ""):
        raise SyrcadError(
            f"{full}: a new task did not turn healthy; Swarm rolled the service back ({rolled_back.message})"
        )


def remove(dep: Deployment, timeout: float) -> None:
    """The stack's services, then (once their tasks are gone) its network and secrets."""
    name = dep.cluster.name
    deadline = time.monotonic() + timeout

    def remove_stack() -> HostHandle:
        boss = manager(dep)
        boss.run("remove the stack", lambda d: d.stack.remove(name))
        return boss

    # A manager that lost its leadership mid-way (a returning manager's election) left part of
    # the stack: asking again removes what is left.
    boss = asked_again_while_electing(remove_stack, deadline)
    while time.monotonic() < deadline:
        left = boss.run(
            "list what the stack left",
            lambda d: d.network.list(filters=[("label", f"{STACK_LABEL}={name}")]),
        )
        if not left:
            return
        time.sleep(1)
    raise SyrcadError(f"the stack's network was still there after {timeout:.0f}s")


def remove_volumes(host: HostHandle) -> None:
    def remove(d: DockerClient) -> None:
        # The engine removes a removed stack's stopped containers in its own time; they would
        # hold their volumes until then.
        stopped = d.container.list(all=True, filters=[("label", f"{STACK_LABEL}={host.project}")])
        if stopped:
            d.container.remove(stopped, force=True)
        # The stack's, and those compose made before the cluster moved to Swarm.
        labels = (f"{STACK_LABEL}={host.project}", f"{COMPOSE_PROJECT_LABEL}={host.project}")
        volumes: list[Volume | str] = [
            v for label in labels for v in d.volume.list(filters={"label": label})
        ]
        if volumes:
            d.volume.remove(volumes)

    host.run("delete the stack's volumes", remove)


def leave(host: HostHandle) -> None:
    if membership(host).joined:
        host.run("leave the swarm", lambda d: d.swarm.leave(force=True))


@dataclass(frozen=True)
class TaskFact:
    service: str  # the stack's name for it: frontend, mongo-1
    slot: int
    host: str  # "" when its node is not one of hosts.yml's
    state: str  # running, starting, pending, ...
    desired: str
    container_id: str


@dataclass(frozen=True)
class StackFacts:
    tasks: list[TaskFact]  # those that should run
    # service → why its latest task that ended early ended ("task: non-zero exit (137):
    # dockerexec: unhealthy container"): what a wait that never converges reports.
    last_errors: dict[str, str]


def _read_tasks(d: DockerClient, stack: str) -> list[TaskInspectResult]:
    """Every task of `stack`, read in one call (a Task object asks its engine again for each
    field it is asked)."""
    docker = [str(part) for part in d.client_config.docker_cmd]
    tries = 1
    while True:
        listed = docker_run(
            [*docker, "stack", "ps", "--quiet", "--no-trunc", stack], return_stderr=False
        )
        ids = listed.split()
        if not ids:
            return []
        try:
            found = docker_run([*docker, "inspect", "--type", "task", *ids], return_stderr=False)
            return [TaskInspectResult(**task) for task in json.loads(found)]
        except DockerException as error:
            # Swarm keeps a few ended tasks per slot and drops the oldest: one may go between
            # the listing and the reading.
            if "No such object" not in (error.stderr or "") or tries == READ_TASKS_TRIES:
                raise
            tries += 1


def stack_facts(dep: Deployment) -> StackFacts:
    """The stack's tasks that should run, with the host each is on, and why its services'
    latest failed tasks failed."""
    boss = manager(dep)
    prefix = swarm.label_prefix(dep.cluster)

    def read(d: DockerClient) -> StackFacts:
        hosts = {n.id: (n.spec.labels or {}).get(f"{prefix}.host", "") for n in d.node.list()}
        found = _read_tasks(d, dep.cluster.name) if _stack_exists(d, dep.cluster.name) else []
        names = {s.id: str(s.spec.name) for s in d.service.list()}
        rows = []
        failed: dict[str, tuple[datetime, str]] = {}
        for task in found:
            service = names.get(str(task.service_id), "").removeprefix(f"{dep.cluster.name}_")
            status = task.status
            if task.desired_state != "running":
                if status and status.err and status.timestamp:
                    latest = failed.get(service)
                    if latest is None or latest[0] < status.timestamp:
                        failed[service] = (status.timestamp, status.err)
                continue
            container = (
                status.container_status.container_id if status and status.container_status else ""
            )
            rows.append(
                TaskFact(
                    service,
                    task.slot or 0,
                    hosts.get(task.node_id or "", ""),
                    str(status.state or "") if status else "",
                    str(task.desired_state or ""),
                    container or "",
                )
            )
        return StackFacts(rows, {service: err for service, (_, err) in failed.items()})

    return boss.run("list the stack's tasks", read)


def tasks(dep: Deployment) -> list[TaskFact]:
    """The stack's tasks that should run, with the host each is on."""
    return stack_facts(dep).tasks


def task_addresses(dep: Deployment, found: Sequence[TaskFact]) -> dict[str, TaskFact]:
    """Each running task's address on the stack's network → the task: an LB's server-template
    slot holds one of these addresses."""
    network = swarm.network_name(dep.cluster)
    addresses = {}
    for task in found:
        if task.state != "running" or not task.host or not task.container_id:
            continue

        def read(d: DockerClient, container: str = task.container_id) -> str:
            networks = d.container.inspect(container).network_settings.networks or {}
            attached = networks.get(network)
            return str(attached.ip_address or "") if attached else ""

        address = dep.hosts[task.host].run(f"inspect {task.service}.{task.slot}", read)
        if address:
            addresses[address] = task
    return addresses


def _stack_exists(d: DockerClient, name: str) -> bool:
    return any(s.name == name for s in d.stack.list())


def model_ids(dep: Deployment, running: Sequence[TaskFact] | None = None) -> dict[str, str]:
    """frontend task → the model id it has loaded, asked inside its container (Swarm publishes
    no frontend port); of `running` (the stack's tasks, read now if not given)."""
    found = {}
    ask = (
        "import json, urllib.request as u; print(json.load(u.urlopen("
        f"'http://127.0.0.1:{RASA_PORT}/status?token={dep.secrets.rasa_token}', timeout=5))"
        "['model_id'])"
    )
    for task in tasks(dep) if running is None else running:
        if task.service != "frontend" or task.state != "running" or not task.host:
            continue
        container = task.container_id

        def asking(d: DockerClient, container: str = container) -> str:
            return str(d.container.execute(container, ["python", "-c", ask]))

        answer = dep.hosts[task.host].run(f"ask frontend.{task.slot} for its model", asking)
        found[f"frontend.{task.slot}"] = answer.strip()
    return found


def wanted_tasks(dep: Deployment) -> Counter[str]:
    """service → how many tasks it should run."""
    counts: Counter[str] = Counter()
    for container in dep.placement.containers:
        if container.service in swarm.PINNED:
            counts[container.name] = 1
    counts["frontend"] = dep.cluster.services.frontend.replicas
    counts["action"] = dep.cluster.services.action.replicas
    lbs = len(dep.cluster.hosts_with("lb"))
    counts["lb"] = counts["action-lb"] = lbs
    return counts


def lb_views(dep: Deployment) -> dict[str, dict[str, int]]:
    """LB host → replicated service → servers UP in its backend."""
    views: dict[str, dict[str, int]] = {}
    for host in dep.cluster.hosts_with("lb"):
        address = str(dep.cluster.hosts[host].address)
        counts: dict[str, int] = {}
        pairs: tuple[tuple[Service, Service], ...] = (("frontend", "lb"), ("action", "action-lb"))
        for service, lb_service in pairs:
            port = dep.placement.of(lb_service)[0].port("stats").host_port
            found = facts.lb_servers(address, port, dep.secrets.stats_password)
            backend = BALANCED[service][0].name
            counts[service] = sum(
                1 for (px, _), state in found.items() if px == backend and state == "UP"
            )
        views[host] = counts
    return views


def wait_converged(
    dep: Deployment, timeout: float, report: Reporter, counts: Mapping[str, int] | None = None
) -> None:
    """Until every service runs its count of tasks (healthy: a task with a healthcheck is
    "running" only once healthy) and every LB has that many replicas UP; `counts` in place of
    hosts.yml's, for a scale under way."""
    wanted = Counter({**wanted_tasks(dep), **(counts or {})})

    def pending() -> list[str]:
        stack = stack_facts(dep)
        running = Counter(t.service for t in stack.tasks if t.state == "running")
        left = [
            f"{s} {running[s]}/{n}"
            + (f" (last failed: {stack.last_errors[s]})" if s in stack.last_errors else "")
            for s, n in wanted.items()
            if running[s] != n
        ]
        if left:
            return left
        return [
            f"{service} UP in the LB on {host}: {count}/{wanted[service]}"
            for host, counts in lb_views(dep).items()
            for service, count in counts.items()
            if count != wanted[service]
        ]

    total = sum(wanted.values())
    until_done("swarm", total, pending, timeout, report, "the stack has not converged", every_s=2)
