"""Waiting on replicas and moving traffic: healthy containers, LB states, drain and enable.

Draining and enabling go through the HAProxy runtime API: a replica leaves its LB by DRAIN (no
new requests, the in-flight ones finish) before it is stopped, and joins once Rasa has loaded
its model. Every wait's budget comes from `syrcad.plan.readiness`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from syrcad.apply import facts, haproxy
from syrcad.apply.deployment import Deployment, Reporter
from syrcad.apply.hosts import HostHandle, each
from syrcad.errors import RemoteError, SyrcadError
from syrcad.plan.placement import Backend, Container
from syrcad.plan.readiness import DRAIN_TIMEOUT_S, IN_LB_WITHIN_S

LOG_LINES = 30


def wait_ready(
    started: list[tuple[HostHandle, list[str]]], stage: str, timeout: float, report: Reporter
) -> None:
    deadline = time.monotonic() + timeout
    total = sum(len(names) for _, names in started)
    while True:
        pending: list[tuple[HostHandle, str, facts.ContainerFact | None]] = []
        found = each([host for host, _ in started], facts.containers)
        for host, names in started:
            current = found[host.name]
            for name in names:
                fact = current.get(name)
                if fact is None or not fact.ready:
                    pending.append((host, name, fact))
                    if fact and (
                        fact.state in ("exited", "dead")
                        or fact.health == "unhealthy"
                        or fact.restarts >= 3
                    ):
                        _fail(
                            host,
                            name,
                            f"{fact.state}, {fact.health or 'no healthcheck'}, "
                            f"{fact.restarts} restarts",
                        )
        report.waiting(stage, total - len(pending), total, [name for _, name, _ in pending])
        if not pending:
            report.done_waiting(stage)
            return
        if time.monotonic() > deadline:
            host, name, fact = pending[0]
            _fail(
                host,
                name,
                f"not ready after {timeout:.0f}s ({fact.state if fact else 'no container'}"
                f"{', ' + fact.health if fact and fact.health else ''})",
            )
        time.sleep(2)


def _fail(host: HostHandle, name: str, cause: str) -> None:
    logs = host.log_tail(name, LOG_LINES)
    raise RemoteError(
        host.name,
        ["compose", "up", name],
        None,
        "",
        "",
        step=f"start {name}",
        hint=f"cause: {cause}\n--- last {LOG_LINES} log lines of {name} ---\n{str(logs).rstrip()}",
    )


@dataclass(frozen=True)
class LbTarget:
    """One backend of one LB, with the replicas it should list."""

    lb: Container
    address: str
    stats_port: int
    backend: Backend
    replicas: tuple[str, ...]
    reported: bool  # the backend `status` reports for its pool


def lb_targets(dep: Deployment) -> Iterator[LbTarget]:
    """Every backend of every LB."""
    for (service, bot), backends in dep.placement.pools().items():
        replicas = tuple(c.name for c in dep.placement.of(service, bot))
        for backend in backends:
            for lb in dep.placement.of(backend.lb):
                address = dep.hosts[lb.host].address
                port = lb.port("stats").host_port
                yield LbTarget(lb, address, port, backend, replicas, backend == backends[0])


def wait_in_lbs(
    dep: Deployment,
    report: Reporter,
    timeout: float = IN_LB_WITHIN_S,
    only: set[str] | None = None,
) -> None:
    """Until every LB reports every replica of its backend (or those in `only`) UP."""
    targets = [
        (t, [name for name in t.replicas if only is None or name in only]) for t in lb_targets(dep)
    ]
    total = sum(len(expected) for _, expected in targets)

    def pending() -> list[str]:
        left = []
        states_of: dict[str, dict[tuple[str, str], str]] = {}  # one stats read per LB a round
        for t, expected in targets:
            if t.lb.name not in states_of:
                states_of[t.lb.name] = facts.lb_servers(
                    t.address, t.stats_port, dep.secrets.stats_password
                )
            states = states_of[t.lb.name]
            left += [
                f"{t.lb.name}/{t.backend.name}/{s}"
                for s in expected
                if states.get((t.backend.name, s)) != "UP"
            ]
        return left

    until_done(
        "in load balancers", total, pending, timeout, report, "not UP in their load balancer"
    )


def until_done(
    stage: str,
    total: int,
    pending: Callable[[], list[str]],
    timeout: float,
    report: Reporter,
    failure: str,
    every_s: float = 1,
) -> None:
    """Ask `pending` what is not done yet until nothing is, showing the progress; after
    `timeout` seconds, fail with `failure` and what is still pending."""
    deadline = time.monotonic() + timeout
    while True:
        left = pending()
        report.waiting(stage, total - len(left), total, left)
        if not left:
            report.done_waiting(stage)
            return
        if time.monotonic() > deadline:
            raise SyrcadError(f"{failure} after {timeout:.0f}s: {', '.join(left)}")
        time.sleep(every_s)


def _lbs_for(
    dep: Deployment, replicas: Sequence[Container]
) -> dict[tuple[str, str, Backend], list[str]]:
    """(host, LB container, backend) of every LB carrying some of `replicas` → their names."""
    lbs: dict[tuple[str, str, Backend], list[str]] = {}
    for replica in replicas:
        for backend in replica.backends:
            for lb in dep.placement.of(backend.lb):
                lbs.setdefault((lb.host, lb.name, backend), []).append(replica.name)
    return lbs


def _set_states(dep: Deployment, replicas: Sequence[Container], state: haproxy.ServerState) -> None:
    for (host, lb, backend), names in _lbs_for(dep, replicas).items():
        haproxy.set_states(dep.hosts[host], lb, backend.name, names, state)


def drain(dep: Deployment, replicas: Sequence[Container], report: Reporter) -> None:
    """Stop sending new requests to `replicas`; return once their in-flight requests are done
    and their sticky clients (socket.io) have been sent to other replicas."""
    if not replicas:
        return
    _set_states(dep, replicas, "drain")
    lbs = _lbs_for(dep, replicas)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    names = {r.name for r in replicas}
    while True:
        busy = []
        for host_name, lb_name, backend in lbs:
            if backend.sticky:
                continue  # a socket stays open for its whole session: waiting would not end
            for row in haproxy.stats(dep.hosts[host_name], lb_name):
                if (
                    row["pxname"] == backend.name
                    and row["svname"] in names
                    and int(row["scur"] or 0) > 0
                ):
                    busy.append(row["svname"])
        report.waiting("draining", len(names) - len(set(busy)), len(names), sorted(set(busy)))
        if not busy:
            report.done_waiting("draining")
            break
        if time.monotonic() > deadline:
            report.step(
                f"still busy after {DRAIN_TIMEOUT_S}s, going on: {', '.join(sorted(set(busy)))}"
            )
            break
        time.sleep(0.5)
    for (host_name, lb_name, backend), servers in lbs.items():
        if backend.sticky:
            haproxy.move_clients(dep.hosts[host_name], lb_name, backend.name, servers)


def enable(dep: Deployment, replicas: Sequence[Container]) -> None:
    _set_states(dep, replicas, "ready")
