"""Before a plan's first step: what it needs and can know up front, read from the hosts.

A frontend without a model would sit in "health: starting" for the whole readiness budget, an
action server without its package would crash-loop, a container whose image a host lacks or
whose port something else holds would fail half-way through the plan. Each is found here,
before anything is touched, and reported together (exit 2). A project on an NFS export is
mounted by the containers themselves, so its model and actions are not looked for.
"""

from __future__ import annotations

from collections.abc import Iterable

from syrcad.apply import facts, shipping
from syrcad.apply.deployment import Deployment
from syrcad.apply.hosts import HostHandle, each
from syrcad.errors import PreflightError
from syrcad.plan import commands
from syrcad.plan.placement import Container
from syrcad.plan.steps import Plan


def check(plan: Plan, dep: Deployment) -> None:
    problems = [p for problems in _each_host(plan, dep).values() for p in problems]
    if problems:
        raise PreflightError(problems)


def _starting(plan: Plan, dep: Deployment) -> dict[str, list[Container]]:
    """host → the containers the plan starts or recreates there."""
    placed = {c.name: c for c in dep.placement.containers}
    hosts: dict[str, list[Container]] = {}
    for step in plan.steps:
        if step.action in ("start", "recreate"):
            hosts.setdefault(step.host, []).extend(placed[n] for n in step.names if n in placed)
    return hosts


def _deployed(plan: Plan, dep: Deployment) -> dict[str, list[Container]]:
    """Under Swarm, host → the replicas a stack deploy may start there: Swarm places one on any
    node with its role, so each of those hosts needs what it reads from the project."""
    if not any(s.action == "deploy-stack" for s in plan.steps):
        return {}
    hosts: dict[str, list[Container]] = {}
    for service in ("frontend", "action"):
        for replica in dep.placement.of(service)[:1]:
            for host in dep.cluster.hosts_with(service):
                hosts.setdefault(host, []).append(replica)
    return hosts


def _each_host(plan: Plan, dep: Deployment) -> dict[str, list[str]]:
    starting = _starting(plan, dep)
    deployed = _deployed(plan, dep)
    shipped = {s.host for s in plan.steps if s.action == "ship-images"}

    def on(host: HostHandle) -> list[str]:
        containers = starting.get(host.name, [])
        problems = _project(dep, host, [*containers, *deployed.get(host.name, [])])
        if not containers:
            return problems
        if host.name not in shipped:
            problems += _images(dep, host, containers)
        return problems + _ports(host, containers) + _nonlocal_bind(dep, host, containers)

    return each([dep.hosts[h] for h in dict.fromkeys([*starting, *deployed])], on)


def _project(dep: Deployment, host: HostHandle, containers: Iterable[Container]) -> list[str]:
    project = dep.cluster.project
    if project.nfs:
        return []
    problems = []
    cluster = dep.cluster
    # A bot's model is read where its frontends run, or where the model server that serves it
    # does (its frontends pull it from there).
    pulling = {name for name, bot in cluster.bots.items() if bot.pull_models}
    loading = [c.bot for c in containers if c.service == "frontend" and c.bot not in pulling]
    serving = sorted(pulling) if any(c.service == "model-server" for c in containers) else []
    for bot in dict.fromkeys([*loading, *serving]):
        path = dep.cluster.project_of(bot).rstrip("/")
        model = f"{path}/{dep.cluster.frontend_of(bot).model}"
        if not host.shell("look for a model", commands.find_model(model)).strip():
            whose, train = (
                (f"bot {bot}'s ", f"syrcad train --bot {bot}") if bot else ("", "syrcad train")
            )
            problems.append(
                f"{host.name}: no trained model in {model}: {whose}frontends would never get "
                f"ready. Run `{train}` first."
            )
    for pool in dict.fromkeys(c.bot for c in containers if c.service == "action"):
        actions = dep.cluster.actions_path_of(pool)
        key = f"bots.{pool}.actions.path" if pool else "project.actions"
        if not host.shell("look for the actions", commands.find_actions(actions)).strip():
            problems.append(
                f"{host.name}: no actions package (*.py) in {actions}: set {key} "
                "in hosts.yml to the folder of your rasa-sdk actions."
            )
    return problems


def _images(dep: Deployment, host: HostHandle, containers: Iterable[Container]) -> list[str]:
    wanted = sorted({shipping.image_of(dep.cluster, c.service) for c in containers})
    lacking = host.run("inspect images", lambda d: [i for i in wanted if not d.image.exists(i)])
    return [f"{host.name}: lacks image {image}: run `syrcad images push`" for image in lacking]


def _nonlocal_bind(dep: Deployment, host: HostHandle, containers: Iterable[Container]) -> list[str]:
    """An LB host that does not hold the virtual address must still listen on it."""
    vip = dep.cluster.services.lb.virtual_address
    if not vip or not any(p.virtual for c in containers for p in c.ports):
        return []
    setting = f"net.ipv{vip.version}.ip_nonlocal_bind"
    if host.shell(f"read {setting}", commands.read_sysctl(setting)).strip() == "1":
        return []
    return [
        f"{host.name}: {setting} is not 1, so the action LB cannot listen on the virtual "
        f"address {vip} while another LB host holds it: run `sysctl -w {setting}=1` there "
        "(and keep it in /etc/sysctl.d/)"
    ]


def _ports(host: HostHandle, containers: Iterable[Container]) -> list[str]:
    """Ports of new containers that something else on the host already listens on."""
    existing = facts.containers(host)
    new = [c for c in containers if c.name not in existing]
    if not new:
        return []
    taken = commands.listening_ports(
        host.shell("list listening ports", commands.listening_sockets())
    )
    return [
        f"{host.name}: port {binding.host_port} ({c.name} {binding.purpose}) is already taken "
        "on the host: free it, or change the port in hosts.yml"
        for c in new
        for binding in c.ports
        if binding.host_port in taken
    ]
