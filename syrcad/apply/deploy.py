"""Bring a cluster up, down, and train its model: the operations behind the CLI verbs.

`up` goes stage by stage across all hosts (stores, action servers, frontends, load balancers),
starting only what changed and waiting until each stage is ready before the next.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from python_on_whales import DockerClient

from syrcad import config, plan, render
from syrcad.apply import facts, haproxy, shipping
from syrcad.apply.hosts import HostHandle, each, handles
from syrcad.config.model import Cluster
from syrcad.config.secrets import Secrets, ensure, secrets_path
from syrcad.config.state import State, read_state, state_path
from syrcad.errors import RemoteError, SyrcadError
from syrcad.plan.placement import BALANCED, Container, Placement, Service
from syrcad.plan.readiness import READY_WITHIN_S, ready_within_s

STAGES: tuple[tuple[Service, ...], ...] = (
    ("mongo", "redis"),
    ("action",),
    ("frontend",),
    ("action-lb", "lb"),
)
LOG_LINES = 30


@dataclass(frozen=True)
class Deployment:
    """Everything decided before touching a host."""

    loaded: config.Loaded
    cluster: Cluster  # hosts.yml with the recorded state (scale, pins) applied
    state: State
    placement: Placement
    secrets: Secrets
    files: tuple[render.RenderedFile, ...]
    hosts: dict[str, HostHandle]

    def used_hosts(self) -> list[HostHandle]:
        return [h for name, h in self.hosts.items() if self.placement.on(name)]


def prepare(hosts_file: Path, state: State | None = None) -> Deployment:
    """Validate, place and render; creates the secrets file on first use. Touches no host.

    `state` replaces the recorded state (`syrcad scale` tries its new counts this way).
    """
    loaded = config.load(hosts_file)
    if state is None:
        state = read_state(state_path(loaded.path))
    cluster = state.applied_to(loaded.cluster)
    with loaded.source.locating():
        placement = plan.place(cluster)
    secrets = ensure(secrets_path(loaded.path))
    files = render.render(cluster, placement, secrets)
    return Deployment(
        loaded, cluster, state, placement, secrets, files, handles(cluster, workspace(loaded))
    )


def workspace(loaded: config.Loaded) -> Path:
    """This machine's folder for the cluster beside hosts.yml: copies of remote hosts' files
    and the local audit log."""
    return loaded.path.resolve().parent / ".syrcad"


class Reporter:
    """How operations tell the user what they do; the CLI draws it with Rich."""

    def step(self, message: str) -> None: ...

    def waiting(self, stage: str, ready: int, total: int, pending: Sequence[str]) -> None: ...

    def done_waiting(self, stage: str) -> None: ...

    def host(self, host: str, message: str, finished: bool = False) -> None:
        """The host's one progress line: what syrcad does there now (or last, when finished)."""

    def transfer(self, host: str, what: str, sent: int, total: int) -> None:
        """Bytes streamed to a host so far (image shipping)."""


@dataclass
class UpResult:
    changed_files: dict[str, list[str]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(
            (
                self.changed_files,
                self.created,
                self.recreated,
                self.removed,
                self.reloaded,
                self.restarted,
            )
        )


def up(dep: Deployment, report: Reporter) -> UpResult:
    """Converge every host on the rendered state; returns what changed.

    Hosts are worked on in parallel within a stage (stores, action servers, frontends, LBs);
    a stage starts once the one before is ready on every host.
    """
    result = UpResult()
    hosts = dep.used_hosts()
    each(hosts, lambda h: _connect(h, report))
    ship_images(dep, hosts, report)
    before = each(hosts, facts.containers)

    def sync(host: HostHandle) -> list[str]:
        report.host(host.name, "writing files")
        return host.sync(dep.files)

    for name, changed in each(hosts, sync).items():
        if changed:
            result.changed_files[name] = changed
            report.step(f"{name}: wrote {', '.join(changed)}")
    for stage in STAGES:
        placed = {
            h.name: [c.name for c in dep.placement.on(h.name) if c.service in stage] for h in hosts
        }
        starting = [h for h in hosts if placed[h.name]]
        each(starting, functools.partial(_start, names=placed, report=report))
        if starting:
            wait_ready(
                [(h, placed[h.name]) for h in starting],
                "/".join(stage),
                max(READY_WITHIN_S[s] for s in stage),
                report,
            )
    # Removes containers no longer placed (lower replica counts), once the LBs know the new set.
    each(hosts, lambda h: h.remove_orphans())
    after = each(hosts, facts.containers)
    for host in hosts:
        old, new = before[host.name], after[host.name]
        for name, fact in new.items():
            if name not in old:
                result.created.append(name)
            elif old[name].id != fact.id:
                result.recreated.append(name)
        result.removed += [name for name in old if name not in new]
        result.restarted += _restart_changed_frontends(
            dep, host, result.changed_files.get(host.name, []), old, new, report
        )
    # An LB that compose kept (same container) but whose config changed: reload it in place.
    kept = {
        name
        for h in hosts
        for name, fact in after[h.name].items()
        if name in before[h.name] and before[h.name][name].id == fact.id
    }
    result.reloaded += reload_lbs(dep, result.changed_files, only=kept)
    _enable_everything(dep)
    wait_in_lbs(dep, report)
    for host in hosts:
        report.host(host.name, "done", finished=True)
    return result


def _start(host: HostHandle, names: dict[str, list[str]], report: Reporter) -> None:
    report.host(host.name, f"starting {', '.join(names[host.name])}")
    host.start(names[host.name])


def _connect(host: HostHandle, report: Reporter) -> None:
    report.host(host.name, f"connecting to {host.url}")
    host.run(
        "reach the Docker engine",
        lambda d: d.version(),
        hint=f"Is the engine at {host.url} running?",
    )


def ship_images(
    dep: Deployment,
    hosts: Sequence[HostHandle],
    report: Reporter,
    images: Sequence[str] | None = None,
) -> list[str]:
    """Stream every image a host lacks (or holds under another id) from this machine's engine:
    `images`, or those of the containers placed there. Returns "host: image" for each one sent."""
    local = shipping.local_engine()

    def ship_to(host: HostHandle) -> list[str]:
        report.host(host.name, "comparing images")
        wanted = list(images or shipping.needed(dep.cluster, dep.placement, host.name))
        sent = []
        for shipment in shipping.missing(host, wanted, local):
            what = f"image {shipment.image} ({shipment.reason})"

            def progress(done: int, total: int, what: str = what, name: str = host.name) -> None:
                report.transfer(name, what, done, total)

            shipping.ship(host, shipment, progress)
            sent.append(f"{host.name}: {shipment.image}")
        return sent

    return [line for lines in each(hosts, ship_to).values() for line in lines]


def reload_lbs(
    dep: Deployment, changed: dict[str, list[str]], only: set[str] | None = None
) -> list[str]:
    """Hitless reload of every LB (among `only`) whose haproxy.cfg is in `changed` (by host)."""
    reloaded = []
    for lb_service, _ in BALANCED.values():
        for lb in dep.placement.of(lb_service):
            if f"{lb_service}/haproxy.cfg" in changed.get(lb.host, []) and (
                only is None or lb.name in only
            ):
                haproxy.reload(dep.hosts[lb.host], lb.name)
                reloaded.append(lb.name)
    return reloaded


def _enable_everything(dep: Deployment) -> None:
    """Converge LB admin states too: a replica left in DRAIN by an interrupted scale or rollout
    takes traffic again (a no-op for replicas already READY)."""
    for service, (lb_service, backend) in BALANCED.items():
        names = [replica.name for replica in dep.placement.of(service)]
        for lb in dep.placement.of(lb_service):
            haproxy.set_states(dep.hosts[lb.host], lb.name, backend, names, "ready")


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


def _restart_changed_frontends(
    dep: Deployment,
    host: HostHandle,
    changed: list[str],
    old: dict[str, facts.ContainerFact],
    new: dict[str, facts.ContainerFact],
    report: Reporter,
) -> list[str]:
    """Rasa reads endpoints/credentials at boot: restart kept frontends one at a time."""
    if not any(p.startswith("rasa/") for p in changed):
        return []
    restarted = []
    for container in dep.placement.on(host.name):
        name = container.name
        if container.service == "frontend" and name in old and old[name].id == new[name].id:
            host.restart(name)
            wait_ready([(host, [name])], name, ready_within_s([container]), report)
            restarted.append(name)
    return restarted


def lb_targets(dep: Deployment) -> Iterator[tuple[Container, str, int, str]]:
    """(LB container, address, stats port, backend) for every LB in the cluster."""
    for lb_service, backend in BALANCED.values():
        for lb in dep.placement.of(lb_service):
            yield lb, dep.hosts[lb.host].address, lb.port("stats").host_port, backend


def wait_in_lbs(
    dep: Deployment, report: Reporter, timeout: float = 60, only: set[str] | None = None
) -> None:
    """Until every LB reports every replica of its backend (or those in `only`) UP."""
    deadline = time.monotonic() + timeout
    expected = {
        backend: {c.name for c in dep.placement.of(service) if only is None or c.name in only}
        for service, (_, backend) in BALANCED.items()
    }
    while True:
        pending = []
        for lb, address, port, backend in lb_targets(dep):
            states = facts.lb_servers(address, port, dep.secrets.stats_password)
            pending += [
                f"{lb.name}/{s}"
                for s in sorted(expected[backend])
                if states.get((backend, s)) != "UP"
            ]
        total = sum(len(v) for v in expected.values()) * max(
            1, len({c.host for c in dep.placement.of("lb")})
        )
        report.waiting("in load balancers", total - len(pending), total, pending)
        if not pending:
            report.done_waiting("in load balancers")
            return
        if time.monotonic() > deadline:
            raise SyrcadError(
                f"not UP in their load balancer after {timeout:.0f}s: {', '.join(pending)}"
            )
        time.sleep(1)


def down(dep: Deployment, volumes: bool, report: Reporter) -> None:
    """Stop and remove the cluster's containers, load balancers first, stores last."""

    def order(host: HostHandle) -> int:
        services = [c.service for c in dep.placement.on(host.name)]
        return -min(next(i for i, stage in enumerate(STAGES) if s in stage) for s in services)

    def stop(host: HostHandle) -> None:
        report.host(host.name, "stopping")
        host.sync(dep.files)  # compose reads the project's file, which a fresh checkout lacks
        host.run(
            "stop containers",
            lambda d: d.compose.down(remove_orphans=True, volumes=volumes, quiet=True),
        )
        report.host(host.name, "stopped", finished=True)

    hosts = dep.used_hosts()
    for rank in sorted({order(h) for h in hosts}):
        each([h for h in hosts if order(h) == rank], stop)


def train(dep: Deployment, report: Reporter) -> str:
    """Train the bot in a one-off container; the model lands in the project's models folder."""
    cluster = dep.cluster
    where = (cluster.hosts_with("train") or cluster.hosts_with("frontend"))[0]
    host = dep.hosts[where]
    models = cluster.services.frontend.model
    project = cluster.project
    report.step(f"{where}: training with {cluster.images.rasa} (models → {project.path}/{models})")
    ship_images(dep, [host], report, [cluster.images.rasa])

    mounts: list[list[str]] = []
    volumes: list[tuple[str, str]] = []
    if project.nfs:
        nfs = project.nfs
        # Read-write here, unlike the frontends' read-only mount: training writes the model.
        options = f'"volume-opt=o=addr={nfs.server},{nfs.options}"'  # quoted: the value has commas
        mounts.append(
            [
                "type=volume",
                "target=/app",
                "volume-driver=local",
                "volume-opt=type=nfs",
                f"volume-opt=device=:{nfs.export}",
                options,
            ]
        )
    else:
        volumes.append((project.path, "/app"))

    def run(docker: DockerClient) -> str:
        return docker.run(
            cluster.images.rasa,
            ["train", "--out", models],
            workdir="/app",
            # Root inside, so the container can write the shared project whatever its owner.
            user="0:0",
            envs={
                "RASA_TELEMETRY_ENABLED": "false",
                "RASA_CACHE_DIRECTORY": "/tmp/rasa-cache",
                "HOME": "/tmp",
            },
            remove=True,
            mounts=mounts,
            volumes=volumes,
        )

    output = host.run("train the model", run)
    trained = [line for line in output.splitlines() if "model is trained and saved at" in line]
    return trained[-1].split("'")[1] if trained and "'" in trained[-1] else ""
