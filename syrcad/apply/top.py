"""`syrcad top`: one snapshot of the running cluster, as the LBs see it.

Per replica, from the LB's stats (its own counters): state in the LB, requests in progress and
queued. From the LB's request log of the last `window_s` seconds (HAProxy's timers, one line a
request): requests and 5xx answers a second, and p50/p99 of the time HAProxy measured for each
request (%Ta: from the request's arrival to the last byte of the answer); HAProxy's counters
have averages only. Per LB: sessions, queued requests, and the clients it refused for their rate
(429 answers, by source address). Per store: whether its port takes a TCP connection from this
machine (under Swarm, where stores publish no port, from an LB's container), and how long the
connect took.
"""

from __future__ import annotations

import math
import re
import socket
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from syrcad.apply import facts, swarm
from syrcad.apply.deployment import Deployment
from syrcad.errors import SyrcadError
from syrcad.plan.placement import BALANCED, Container, Service

# HAProxy's log-format of both LBs (haproxy/*.cfg.j2): client, [accept date], frontend,
# backend/server, TR/Tw/Tc/Tr/Ta, status.
_LOG_LINE = re.compile(
    r"^(?P<client>\S+):\d+ \[[^\]]+\] \S+ (?P<backend>[^/\s]+)/(?P<server>\S+) "
    r"-?\d+/-?\d+/-?\d+/-?\d+/(?P<ta>-?\d+) (?P<status>\d+) "
)
STORE_CONNECT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Request:
    client: str
    backend: str
    server: str
    took_ms: int  # -1: the request was cut off before an answer
    status: int


@dataclass(frozen=True)
class ReplicaRow:
    replica: str
    service: str
    host: str
    container: str  # running, exited, … (its task's state under Swarm)
    lb: str  # UP, DOWN, DRAIN, MAINT as its LB(s) see it
    current: int  # requests in progress
    queued: int
    requests: int  # answered over the window
    rate: float  # requests a second over the window
    errors: float  # 5xx answers a second over the window
    p50_ms: int | None
    p99_ms: int | None
    model: str = ""


@dataclass(frozen=True)
class LbRow:
    lb: str
    host: str
    sessions: int
    queued: int
    limited_clients: int  # source addresses answered 429 over the window
    limited: int  # 429 answers over the window


@dataclass(frozen=True)
class StoreRow:
    store: str
    host: str
    target: str
    reachable: bool
    rtt_ms: float | None


@dataclass(frozen=True)
class Snapshot:
    cluster: str
    engine: str
    window_s: float
    replicas: list[ReplicaRow] = field(default_factory=list)
    lbs: list[LbRow] = field(default_factory=list)
    stores: list[StoreRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def snapshot(dep: Deployment, window_s: float) -> Snapshot:
    lbs = _lbs(dep)
    stats = {
        lb.name: facts.lb_stats(address, port, dep.secrets.stats_password)
        for lb, address, port in lbs
    }
    if not any(stats.values()):
        raise SyrcadError(
            f"cluster {dep.cluster.name}: no LB answers on its stats port; is it up?"
            " (`syrcad status`)"
        )
    running = _on_swarm(dep) if dep.cluster.engine == "swarm" else _on_compose(dep)
    requests = {
        lb.name: list(_requests(dep, lb, running.lbs.get(lb.name), window_s)) for lb, _, _ in lbs
    }
    return Snapshot(
        dep.cluster.name,
        dep.cluster.engine,
        window_s,
        _replicas(dep, stats, requests, running, window_s),
        [_lb_row(lb, stats[lb.name], requests[lb.name]) for lb, _, _ in lbs],
        _store_rows(dep, running),
    )


@dataclass(frozen=True)
class _Seen:
    """A replica as its engine runs it."""

    host: str
    container: str  # its state: running, exited, … (a task's under Swarm)
    model: str = ""


@dataclass(frozen=True)
class _Running:
    """What the engine runs: each LB's container (whose log holds its requests), each replica."""

    lbs: dict[str, str]  # LB (lb-1) → its container's id, while it runs
    by_server: dict[str, _Seen] = field(default_factory=dict)  # compose: the LB's server name
    by_address: dict[str, _Seen] = field(default_factory=dict)  # Swarm: a slot holds a task's

    def replica(self, server: str, address: str) -> _Seen | None:
        return self.by_server.get(server) or self.by_address.get(address.rsplit(":", 1)[0])


def _on_compose(dep: Deployment) -> _Running:
    found = {host.name: facts.containers(host) for host in dep.used_hosts()}
    lbs = {}
    for lb, _, _ in _lbs(dep):
        fact = found.get(lb.host, {}).get(lb.name)
        if fact and fact.state == "running":
            lbs[lb.name] = fact.id
    replicas = {}
    for service in BALANCED:
        for replica in dep.placement.of(service):
            fact = found.get(replica.host, {}).get(replica.name)
            model = _model(dep, replica) if service == "frontend" else ""
            replicas[replica.name] = _Seen(replica.host, fact.state if fact else "-", model)
    return _Running(lbs, by_server=replicas)


def _on_swarm(dep: Deployment) -> _Running:
    tasks = swarm.tasks(dep)
    models = swarm.model_ids(dep, tasks)
    lbs = {}
    for lb, _, _ in _lbs(dep):
        mine = [
            t for t in tasks if (t.service, t.host, t.state) == (lb.service, lb.host, "running")
        ]
        if mine:
            lbs[lb.name] = mine[0].container_id
    replicas = {
        address: _Seen(task.host, task.state, models.get(f"{task.service}.{task.slot}", ""))
        for address, task in swarm.task_addresses(dep, tasks).items()
        if task.service in BALANCED
    }
    return _Running(lbs, by_address=replicas)


LB_SERVICES: tuple[Service, ...] = ("lb", "action-lb")
STORE_SERVICES: tuple[Service, ...] = ("mongo", "postgres", "redis", "sentinel")


def _lbs(dep: Deployment) -> list[tuple[Container, str, int]]:
    return [
        (lb, dep.hosts[lb.host].address, lb.port("stats").host_port)
        for service in LB_SERVICES
        for lb in dep.placement.of(service)
    ]


def _requests(
    dep: Deployment, lb: Container, container: str | None, window_s: float
) -> Iterator[Request]:
    """The requests the LB logged over the last `window_s` seconds (none while it is not up)."""
    if container is None:
        return
    text = dep.hosts[lb.host].run(
        f"read the log of {lb.name}",
        lambda d: d.container.logs(container, since=timedelta(seconds=window_s)),
    )
    for line in str(text).splitlines():
        found = _LOG_LINE.match(line)
        if found:
            yield Request(
                found["client"],
                found["backend"],
                found["server"],
                int(found["ta"]),
                int(found["status"]),
            )


def percentile(values: list[int], share: float) -> int | None:
    """The nearest-rank percentile (`share` in 0..1) of `values`; None for none.

    >>> percentile([5, 1, 9, 3], 0.5), percentile([5, 1, 9, 3], 0.99), percentile([], 0.5)
    (3, 9, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _replicas(
    dep: Deployment,
    stats: dict[str, list[dict[str, str]]],
    requests: dict[str, list[Request]],
    running: _Running,
    window_s: float,
) -> list[ReplicaRow]:
    rows = []
    for (service, _bot), backends in dep.placement.pools().items():
        backend = backends[0].name  # the one `status` reports; socket.io follows it
        states: dict[str, list[str]] = defaultdict(list)
        current: dict[str, int] = defaultdict(int)
        queued: dict[str, int] = defaultdict(int)
        addresses: dict[str, str] = {}
        for lb in dep.placement.of(backends[0].lb):
            for row in stats.get(lb.name, []):
                if row["pxname"] != backend or row["svname"] in ("FRONTEND", "BACKEND"):
                    continue
                states[row["svname"]].append(row["status"].split(" ")[0])
                current[row["svname"]] += int(row["scur"] or 0)
                queued[row["svname"]] += int(row["qcur"] or 0)
                addresses[row["svname"]] = row.get("addr") or ""
        served = [
            r
            for lb in dep.placement.of(backends[0].lb)
            for r in requests.get(lb.name, [])
            if r.backend in {b.name for b in backends}
        ]
        for server in sorted(states, key=_replica_order):
            seen = running.replica(server, addresses[server])
            if seen is None and set(states[server]) == {"MAINT"}:
                continue  # an unused slot of Swarm's server-template
            mine = [r for r in served if r.server == server]
            took = [r.took_ms for r in mine if r.took_ms >= 0]
            rows.append(
                ReplicaRow(
                    replica=server,
                    service=service,
                    host=seen.host if seen else "-",
                    container=seen.container if seen else "-",
                    lb="/".join(sorted(set(states[server]))),
                    current=current[server],
                    queued=queued[server],
                    requests=len(mine),
                    rate=round(len(mine) / window_s, 2),
                    errors=round(sum(1 for r in mine if r.status >= 500) / window_s, 2),
                    p50_ms=percentile(took, 0.50),
                    p99_ms=percentile(took, 0.99),
                    model=seen.model if seen else "",
                )
            )
    return rows


def _replica_order(name: str) -> tuple[str, int]:
    prefix = name.rstrip("0123456789").rstrip("-")
    digits = name[len(name.rstrip("0123456789")) :]
    return prefix, int(digits or 0)


def _model(dep: Deployment, frontend: Container) -> str:
    address = dep.hosts[frontend.host].address
    return facts.model_id(address, frontend.port("http").host_port, dep.secrets.rasa_token)


def _lb_row(lb: Container, stats: list[dict[str, str]], requests: list[Request]) -> LbRow:
    frontends = [r for r in stats if r["svname"] == "FRONTEND" and r["pxname"] != "stats"]
    backends = [r for r in stats if r["svname"] == "BACKEND"]
    limited = [r for r in requests if r.status == 429]
    return LbRow(
        lb=lb.name,
        host=lb.host,
        sessions=sum(int(r["scur"] or 0) for r in frontends),
        queued=sum(int(r["qcur"] or 0) for r in backends),
        limited_clients=len({r.client for r in limited}),
        limited=len(limited),
    )


def _store_rows(dep: Deployment, running: _Running) -> list[StoreRow]:
    stores = [s for service in STORE_SERVICES for s in dep.placement.of(service)]
    if dep.cluster.engine == "compose":
        return [_store_row(s, dep.hosts[s.host].address, s.ports[0].host_port) for s in stores]
    # Stores publish no port under Swarm: connect from an LB's container, on the stack's network.
    lb = next((lb for lb, _, _ in _lbs(dep) if lb.name in running.lbs), None)
    return [_store_row_seen_from(dep, s, lb, running) for s in stores]


def _store_row(store: Container, address: str, port: int) -> StoreRow:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=STORE_CONNECT_TIMEOUT_S):
            rtt: float | None = round((time.monotonic() - started) * 1000, 2)
    except OSError:
        rtt = None
    return StoreRow(store.name, store.host, f"{address}:{port}", rtt is not None, rtt)


def _store_row_seen_from(
    dep: Deployment, store: Container, lb: Container | None, running: _Running
) -> StoreRow:
    port = store.ports[0].container_port
    target = f"{store.name}:{port}"
    if lb is None:
        return StoreRow(store.name, store.host, target, False, None)
    # Microseconds of a TCP connect, timed by the LB container's bash; nothing when refused.
    connect = (
        "s=${EPOCHREALTIME/./}; "
        f"timeout {STORE_CONNECT_TIMEOUT_S} bash -c 'exec 3<>/dev/tcp/{store.name}/{port}' "
        "&& e=${EPOCHREALTIME/./} && echo $((e - s))"
    )
    container = running.lbs[lb.name]

    def probe(d: DockerClient) -> str:
        try:
            return str(d.container.execute(container, ["bash", "-c", connect]))
        except DockerException:
            return ""

    took_us = dep.hosts[lb.host].run(f"connect to {store.name} from {lb.name}", probe).strip()
    rtt = round(int(took_us) / 1000, 2) if took_us.isdigit() else None
    return StoreRow(store.name, store.host, target, rtt is not None, rtt)
