"""Changes made under traffic: `scale` and `rollout`, with no failed request.

Both rely on the HAProxy runtime API: a replica leaves its LB by DRAIN (no new requests, the
in-flight ones finish) before it is stopped, and joins only once Rasa has loaded its model.
LB configs change by hitless reload: listeners stay open, server states carry over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from syrcad.apply import facts, haproxy
from syrcad.apply.deploy import Deployment, Reporter, prepare, reload_lbs, wait_in_lbs, wait_ready
from syrcad.apply.hosts import HostHandle
from syrcad.config.state import (
    SCALABLE,
    Scalable,
    ScaleRecord,
    read_state,
    state_path,
    write_state,
)
from syrcad.errors import ConfigError, RemoteError, SyrcadError, UsageError
from syrcad.plan.placement import BALANCED, Container
from syrcad.plan.readiness import ready_within_s

DRAIN_TIMEOUT_S = 60


def parse_counts(assignments: Sequence[str]) -> dict[Scalable, int]:
    """`["frontend=8", "action=3"]` → {"frontend": 8, "action": 3}, or a clear error."""
    counts: dict[Scalable, int] = {}
    for text in assignments:
        name, sep, value = text.partition("=")
        if not sep:
            raise UsageError(f"{text!r}: expected SERVICE=COUNT, like frontend=8")
        if name not in SCALABLE:
            raise UsageError(
                f"{text!r}: unknown service '{name}' (scalable: {', '.join(SCALABLE)})"
            )
        if not value.strip().isdigit():
            raise UsageError(f"{text!r}: '{value}' is not a whole number")
        if int(value) < 1:
            raise UsageError(
                f"{text!r}: at least 1 replica (use `syrcad down` to stop the cluster)"
            )
        counts[name] = int(value)
    if not counts:
        raise UsageError("nothing to scale: give SERVICE=COUNT, like frontend=8")
    return counts


@dataclass
class ScaleResult:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds_to_serve: float = 0.0  # from the command until the new replicas are UP in their LBs
    seconds_to_boot: float = 0.0  # from starting the containers until Rasa reports a model
    state_file: Path | None = None


def scale(hosts_file: Path, counts: dict[Scalable, int], report: Reporter) -> ScaleResult:
    """Change replica counts; new replicas join their LB when ready, removed ones drain first."""
    started = time.monotonic()
    old = prepare(hosts_file)
    records = dict(old.state.live(old.loaded.cluster))
    for name, count in counts.items():
        records[name] = ScaleRecord(count, getattr(old.loaded.cluster.services, name).replicas)
    try:
        new = prepare(hosts_file, replace(old.state, scale=records))
    except ConfigError as error:
        wanted = " ".join(f"{k}={v}" for k, v in counts.items())
        raise UsageError(f"{wanted}: the hosts cannot hold this:\n{error}") from None
    old_names = {c.name for c in old.placement.containers}
    new_names = {c.name for c in new.placement.containers}
    added = [c for c in new.placement.containers if c.name not in old_names]
    removed = [c for c in old.placement.containers if c.name not in new_names]
    result = ScaleResult(
        added=[c.name for c in added],
        removed=[c.name for c in removed],
        state_file=state_path(old.loaded.path),
    )

    drain(old, removed, report)
    hosts = _hosts_touched(old, new)
    changed = {h.name: h.sync(new.files) for h in hosts}
    booting = time.monotonic()
    new_by_host = [
        (h, names) for h in hosts if (names := [c.name for c in added if c.host == h.name])
    ]
    try:
        for host, names in new_by_host:
            host.start(names)
        wait_ready(new_by_host, "new replicas", ready_within_s(added), report)
        result.seconds_to_boot = time.monotonic() - booting
    except SyrcadError:
        # Back to the old set: old files, new containers gone, drained replicas serving again.
        for host in hosts:
            host.sync(old.files)
            host.remove_orphans()
        enable(old, removed)
        raise
    reload_lbs(new, changed)
    wait_in_lbs(new, report, only={c.name for c in added})
    result.seconds_to_serve = time.monotonic() - started
    for host in hosts:
        if new.placement.on(host.name):
            host.remove_orphans()
        elif old.placement.on(host.name):
            host.run("stop containers", lambda d: d.compose.down(remove_orphans=True, quiet=True))
    write_state(state_path(old.loaded.path), replace(old.state, scale=records))
    return result


def _hosts_touched(old: Deployment, new: Deployment) -> list[HostHandle]:
    names = {c.host for c in (*old.placement.containers, *new.placement.containers)}
    return [h for name, h in new.hosts.items() if name in names]


def _lbs_for(
    dep: Deployment, replicas: Sequence[Container]
) -> dict[tuple[str, str, str], list[str]]:
    """(host, LB container, backend) of every LB carrying some of `replicas` → their names."""
    lbs: dict[tuple[str, str, str], list[str]] = {}
    for replica in replicas:
        if replica.service in BALANCED:
            lb_service, backend = BALANCED[replica.service]
            for lb in dep.placement.of(lb_service):
                lbs.setdefault((lb.host, lb.name, backend), []).append(replica.name)
    return lbs


def _set_states(dep: Deployment, replicas: Sequence[Container], state: haproxy.ServerState) -> None:
    for (host, lb, backend), names in _lbs_for(dep, replicas).items():
        haproxy.set_states(dep.hosts[host], lb, backend, names, state)


def drain(dep: Deployment, replicas: Sequence[Container], report: Reporter) -> None:
    """Stop sending new requests to `replicas`; return once their in-flight requests are done."""
    if not replicas:
        return
    _set_states(dep, replicas, "drain")
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    names = {r.name for r in replicas}
    while True:
        busy = []
        for host_name, lb_name, backend in _lbs_for(dep, replicas):
            for row in haproxy.stats(dep.hosts[host_name], lb_name):
                if (
                    row["pxname"] == backend
                    and row["svname"] in names
                    and int(row["scur"] or 0) > 0
                ):
                    busy.append(row["svname"])
        report.waiting("draining", len(names) - len(set(busy)), len(names), sorted(set(busy)))
        if not busy:
            report.done_waiting("draining")
            return
        if time.monotonic() > deadline:
            report.step(
                f"still busy after {DRAIN_TIMEOUT_S}s, going on: {', '.join(sorted(set(busy)))}"
            )
            return
        time.sleep(0.5)


def enable(dep: Deployment, replicas: Sequence[Container]) -> None:
    _set_states(dep, replicas, "ready")


@dataclass
class RolloutResult:
    replaced: list[str] = field(default_factory=list)
    model_ids: set[str] = field(default_factory=set)


def rollout(hosts_file: Path, service: Scalable, batch: int, report: Reporter) -> RolloutResult:
    """Recreate `service`'s replicas `batch` at a time: drain → recreate → ready → enable.

    A replica that never gets ready is put back on what it ran before (the previous model file,
    or the previous image), pinned in the state file, and the rollout stops with the cause.
    """
    # A rollout takes the newest model: any pin from an earlier failed rollout is dropped.
    dep = prepare(hosts_file, replace(read_state(state_path(hosts_file)), model=None))
    result = RolloutResult()
    replicas = list(dep.placement.of(service))
    for host in {dep.hosts[c.host] for c in replicas}:
        host.sync(dep.files)
    for start in range(0, len(replicas), batch):
        group = replicas[start : start + batch]
        previous = {c.name: _running_model(dep, c) for c in group} if service == "frontend" else {}
        drain(dep, group, report)
        for replica in group:
            dep.hosts[replica.host].recreate(replica.name)
        try:
            wait_ready(
                [(dep.hosts[c.host], [c.name]) for c in group],
                f"{service} {start + 1}-{start + len(group)}",
                ready_within_s(group),
                report,
            )
        except RemoteError as error:
            _put_back(hosts_file, dep, group, previous, report)
            raise SyrcadError(
                f"rollout stopped: {error}\nPut back on the previous model; fix and run it again."
            ) from None
        enable(dep, group)
        wait_in_lbs(dep, report, only={c.name for c in group})
        result.replaced += [c.name for c in group]
    write_state(state_path(dep.loaded.path), replace(dep.state, model=None))
    if service == "frontend":
        result.model_ids = {
            facts.model_id(
                dep.hosts[c.host].address, c.port("http").host_port, dep.secrets.rasa_token
            )
            for c in replicas
        }
        if len(result.model_ids) != 1:
            raise SyrcadError(
                f"frontends report different models after the rollout: {sorted(result.model_ids)}"
            )
    return result


def _running_model(dep: Deployment, replica: Container) -> str:
    """The model file a frontend has loaded, as a path inside the project ('' if unknown)."""
    status = facts.rasa_status(
        dep.hosts[replica.host].address, replica.port("http").host_port, dep.secrets.rasa_token
    )
    name = str(status.get("model_file") or "")
    if not name:
        return ""
    configured = PurePosixPath(dep.cluster.services.frontend.model)
    folder = configured.parent if configured.name.endswith(".tar.gz") else configured
    return str(folder / PurePosixPath(name).name)


def _put_back(
    hosts_file: Path,
    dep: Deployment,
    group: Sequence[Container],
    previous: dict[str, str],
    report: Reporter,
) -> None:
    models = {m for m in previous.values() if m}
    if not models:
        return
    pinned = replace(dep.state, model=sorted(models)[0])
    back = prepare(hosts_file, pinned)
    for host in {back.hosts[c.host] for c in group}:
        host.sync(back.files)
    for replica in group:
        back.hosts[replica.host].recreate(replica.name)
    wait_ready(
        [(back.hosts[c.host], [c.name]) for c in group],
        "putting back",
        ready_within_s(group),
        report,
    )
    enable(back, group)
    write_state(state_path(back.loaded.path), pinned)
