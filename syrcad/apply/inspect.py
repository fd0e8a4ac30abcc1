"""Read-only views of a running cluster: `ps`, `status` and `logs`."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from syrcad.apply import facts, swarm
from syrcad.apply.deployment import Deployment
from syrcad.apply.waits import lb_targets
from syrcad.errors import SyrcadError
from syrcad.plan.swarm import full_name, stack_services


@dataclass(frozen=True)
class ReplicaStatus:
    host: str
    container: str
    service: str
    state: str
    health: str
    lb: str  # UP / DOWN / DRAIN / MAINT as the LB sees it, "-" for non-replicas
    model: str
    bot: str = ""  # a frontend's bot, with `bots:`

    def as_dict(self, with_lb: bool, with_bot: bool = False) -> dict[str, str]:
        row = {
            "host": self.host,
            "container": self.container,
            "service": self.service,
            **({"bot": self.bot or "-"} if with_bot else {}),
            "state": self.state,
            "health": self.health or "-",
        }
        if with_lb:
            row |= {"lb": self.lb, "model": self.model or "-"}
        return row


def status(dep: Deployment, with_lb: bool) -> list[ReplicaStatus]:
    """One row per placed container (and any leftover container of the cluster); under Swarm,
    one per task."""
    if dep.cluster.engine == "swarm":
        return _swarm_status(dep, with_lb)
    lb_states = _lb_states(dep) if with_lb else {}
    rows = []
    for host in dep.used_hosts():
        running = facts.containers(host)
        placed = {c.name: c for c in dep.placement.on(host.name)}
        for name in [*placed, *sorted(set(running) - set(placed))]:
            fact = running.get(name)
            container = placed.get(name)
            service = container.service if container else "(not placed)"
            model = ""
            if (
                with_lb
                and container
                and container.service == "frontend"
                and fact
                and fact.state == "running"
            ):
                model = facts.model_id(
                    host.address, container.port("http").host_port, dep.secrets.rasa_token
                )
            rows.append(
                ReplicaStatus(
                    host=host.name,
                    container=name,
                    service=service,
                    state=fact.state if fact else "missing",
                    health=fact.health if fact else "",
                    lb="/".join(lb_states.get(name, [])) or "-",
                    model=model,
                    bot=container.bot if container else "",
                )
            )
    # Each bot's replicas together, host by host.
    return sorted(rows, key=lambda r: r.bot)


def _swarm_status(dep: Deployment, with_lb: bool) -> list[ReplicaStatus]:
    """A row per task. Swarm's tasks have no fixed replica in an LB: the LB column says how
    many of the service's tasks each LB has UP."""
    views = swarm.lb_views(dep) if with_lb else {}
    wanted = swarm.wanted_tasks(dep)
    rows = []
    for task in sorted(swarm.tasks(dep), key=lambda t: (t.service, t.slot, t.host)):
        seen = [
            f"{host}:{counts[task.service]}/{wanted[task.service]}"
            for host, counts in views.items()
            if task.service in counts
        ]
        rows.append(
            ReplicaStatus(
                host=task.host or "(not in hosts.yml)",
                container=f"{task.service}.{task.slot}" if task.slot else task.service,
                service=task.service,
                state=task.state,
                health="",
                lb=" ".join(seen) or "-",
                model="",
            )
        )
    return rows


def _lb_states(dep: Deployment) -> dict[str, list[str]]:
    """Replica → its state in each LB that carries it."""
    states: dict[str, list[str]] = {}
    # A service's first backend speaks for it (socket.io follows the REST backend).
    targets = [t for t in lb_targets(dep) if t.reported]
    # One public and one action LB: a bare state; with more, say which LB sees what.
    named = len({t.lb.name for t in targets}) > 2
    for t in targets:
        found = facts.lb_servers(t.address, t.stats_port, dep.secrets.stats_password)
        for (pxname, server), state in found.items():
            if pxname == t.backend.name:
                states.setdefault(server, []).append(f"{t.lb.name}:{state}" if named else state)
    return states


def logs(
    dep: Deployment, service: str, follow: bool, tail: int, bot: str | None = None
) -> Iterator[str]:
    """Lines of the matching containers' logs (of one bot's frontends with `bot`), prefixed
    with host and container; under Swarm, the service's logs as its manager gathers them (each
    line names its task and node)."""
    if dep.cluster.engine == "swarm":
        yield from _swarm_logs(dep, service, follow, tail)
        return
    wanted = [
        (dep.hosts[c.host], c.name)
        for c in dep.placement.containers
        if service in (c.service, c.name)
        and (bot is None or c.service != "frontend" or c.bot == bot)
    ]
    if not wanted:
        names = sorted({c.service for c in dep.placement.containers})
        raise SyrcadError(f"no container matches '{service}' (services: {', '.join(names)})")
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(host_name: str, name: str) -> None:
        host = dep.hosts[host_name]
        try:
            stream = host.run(
                f"read logs of {name}",
                lambda d: d.compose.logs(
                    [name], tail=str(tail), follow=follow, stream=True, no_log_prefix=True
                ),
            )
            for _, chunk in stream:
                for line in chunk.decode(errors="replace").splitlines():
                    lines.put(f"{host_name} {name} | {line}")
        finally:
            lines.put(None)

    threads = [threading.Thread(target=pump, args=(h.name, n), daemon=True) for h, n in wanted]
    for thread in threads:
        thread.start()
    finished = 0
    while finished < len(threads):
        line = lines.get()
        if line is None:
            finished += 1
        else:
            yield line


def _swarm_logs(dep: Deployment, service: str, follow: bool, tail: int) -> Iterator[str]:
    services = stack_services(dep.placement)
    if service not in services:
        raise SyrcadError(f"no service '{service}' in the stack (services: {', '.join(services)})")
    full = full_name(dep.cluster, service)
    stream = swarm.manager(dep).run(
        f"read logs of {full}",
        lambda d: d.service.logs(full, tail=tail, follow=follow, stream=True),
    )
    for _, chunk in stream:
        yield from chunk.decode(errors="replace").splitlines()
