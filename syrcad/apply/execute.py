"""Running a plan: each step of `syrcad.plan.steps` done on its host, in order.

This module decides nothing about what to do; the plan did (`syrcad.apply.planning` read the
facts it was made from). It checks before the first step what the plan needs and can know up
front (`preflight`), then executes the steps; the plan says which may run side by side. When a
step fails, the plan's `on_failure` steps run, then the error is reported, naming the step, and
through its cause the host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from syrcad.apply import (
    facts,
    haproxy,
    preflight,
    replica_set,
    rotate,
    shipping,
    swarm,
    training,
)
from syrcad.apply.deployment import Deployment, Reporter, holding, prepare
from syrcad.apply.hosts import HostHandle, each
from syrcad.apply.waits import drain, enable, wait_in_lbs, wait_ready
from syrcad.config.secrets import document, secrets_path, write_private
from syrcad.config.state import State, state_path, write_state
from syrcad.errors import StepFailed, SyrcadError
from syrcad.plan.placement import Container
from syrcad.plan.readiness import ready_within_s
from syrcad.plan.steps import AS_THEY_WERE, SIDE_BY_SIDE, WITH_VOLUMES, Plan, Step


@dataclass
class Run:
    """What a plan runs against, and what its steps found out and did."""

    dep: Deployment  # the cluster the plan leads to
    report: Reporter
    before: Deployment | None = None  # the cluster as it was (the replicas `scale` removes)
    state: State | None = None  # what `record-state` writes
    started: set[str] = field(default_factory=set)  # containers created or recreated
    created: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    wrote: dict[str, list[str]] = field(default_factory=dict)  # host → files that changed
    models: dict[str, str] = field(default_factory=dict)  # frontend → model file it ran
    model_ids: set[str] = field(default_factory=set)
    trained: dict[str, str] = field(default_factory=dict)  # bot → the model file Rasa wrote
    joined: list[str] = field(default_factory=list)  # hosts that founded or joined the swarm
    done: list[Step] = field(default_factory=list)

    def containers(self, names: Sequence[str]) -> tuple[Deployment, list[Container]]:
        """The deployment that places `names` (the new one, else the old), and their containers."""
        return holding(names, self.dep, self.before)

    @property
    def changed(self) -> bool:
        return any(
            (
                self.wrote,
                self.created,
                self.recreated,
                self.removed,
                self.reloaded,
                self.restarted,
                self.joined,
            )
        )


def execute(plan: Plan, run: Run) -> Run:
    """Run `plan`'s steps in order; on a failure its `on_failure` steps, then the error."""
    preflight.check(plan, run.dep)
    try:
        for group in _parallel_runs(plan.steps):
            if len(group) == 1:
                _do(group[0], run)
            else:
                _side_by_side(group, run)
            run.done += group
    except SyrcadError as error:
        for step in plan.on_failure:
            _do(step, run)
        failed = plan.steps[len(run.done)]  # the first step of the group under way
        undone = [str(s) for s in plan.on_failure]
        raise StepFailed(plan.command, str(failed), error, undone) from None
    return run


def _side_by_side(group: Sequence[Step], run: Run) -> None:
    by_host = {s.host: s for s in group}
    each([run.dep.hosts[h] for h in by_host], lambda host: _do(by_host[host.name], run))


def _parallel_runs(steps: Sequence[Step]) -> list[list[Step]]:
    """Consecutive steps of one action on different hosts, as groups to run side by side."""
    groups: list[list[Step]] = []
    for step in steps:
        last = groups[-1] if groups else None
        if (
            last
            and step.action in SIDE_BY_SIDE
            and (last[0].action, last[0].wave) == (step.action, step.wave)
            and all(s.host and s.host != step.host for s in last)
        ):
            last.append(step)
        else:
            groups.append([step])
    return groups


def _host(run: Run, step: Step) -> HostHandle:
    return run.dep.hosts[step.host]


def _by_host(run: Run, names: Sequence[str]) -> list[tuple[HostHandle, list[str]]]:
    dep, containers = run.containers(names)
    hosts: dict[str, list[str]] = {}
    for c in containers:
        hosts.setdefault(c.host, []).append(c.name)
    return [(dep.hosts[h], n) for h, n in hosts.items()]


def _do(step: Step, run: Run) -> None:
    _ACTIONS[step.action](step, run)


def _ship(step: Step, run: Run) -> None:
    host = _host(run, step)
    local = shipping.local_engine()
    for shipment in shipping.missing(host, step.names, local):
        what = f"{shipment.image} ({shipment.reason})"
        run.report.host(host.name, f"sending {what}")

        def progress(done: int, total: int, what: str = what) -> None:
            run.report.transfer(host.name, what, done, total)

        shipping.ship(host, shipment, progress)


def _write_files(step: Step, run: Run) -> None:
    host = _host(run, step)
    files = (run.before or run.dep).files if step.note == AS_THEY_WERE else run.dep.files
    run.report.host(host.name, "writing files")
    changed = host.sync(files)
    if changed:
        run.wrote[host.name] = changed
        run.report.step(f"{host.name}: wrote {', '.join(changed)}")


def _start(step: Step, run: Run) -> None:
    host = _host(run, step)
    run.report.host(host.name, f"starting {', '.join(step.names)}")
    before = facts.containers(host)
    host.start(step.names)
    after = facts.containers(host)
    for name, fact in after.items():
        if name not in before:
            run.created.append(name)
            run.started.add(name)
        elif before[name].id != fact.id:
            run.recreated.append(name)
            run.started.add(name)


def _recreate(step: Step, run: Run) -> None:
    for name in step.names:
        _host(run, step).recreate(name)
        run.started.add(name)


def _restart_kept(step: Step, run: Run) -> None:
    """Frontends compose kept read their config files only at boot."""
    host = _host(run, step)
    for name in step.names:
        if name not in run.started:
            host.restart(name)
            wait_ready([(host, [name])], name, step.seconds, run.report)
            run.restarted.append(name)


def _wait_ready(step: Step, run: Run) -> None:
    wait_ready(_by_host(run, step.names), _stage(run, step.names), step.seconds, run.report)


def _stage(run: Run, names: Sequence[str]) -> str:
    _, containers = run.containers(names)
    return "/".join(dict.fromkeys(c.service for c in containers))


def _drain(step: Step, run: Run) -> None:
    dep, containers = run.containers(step.names)
    drain(dep, containers, run.report)


def _enable(step: Step, run: Run) -> None:
    dep, containers = run.containers(step.names)
    enable(dep, containers)


def _reload(step: Step, run: Run) -> None:
    for lb in step.names:
        if lb not in run.started:  # a container started anew read the new config already
            haproxy.reload(_host(run, step), lb)
            run.reloaded.append(lb)


def _wait_in_lbs(step: Step, run: Run) -> None:
    wait_in_lbs(run.dep, run.report, step.seconds, only=set(step.names))


def _remove_orphans(step: Step, run: Run) -> None:
    host = _host(run, step)
    before = facts.containers(host)
    host.remove_orphans()
    run.removed += sorted(set(before) - set(facts.containers(host)))


def _stop(step: Step, run: Run) -> None:
    host = _host(run, step)
    run.report.host(host.name, "stopping")
    host.sync(run.dep.files)  # compose reads the project's file, which a fresh checkout lacks
    host.run(
        "stop containers",
        lambda d: d.compose.down(
            remove_orphans=True, volumes=step.note == WITH_VOLUMES, quiet=True
        ),
    )
    run.report.host(host.name, "stopped", finished=True)


def _record_state(step: Step, run: Run) -> None:
    assert run.state is not None, "a plan that records state runs with one"
    write_state(state_path(run.dep.loaded.path), run.state)


def _read_models(step: Step, run: Run) -> None:
    _, containers = run.containers(step.names)
    run.models = {replica.name: _running_model(run.dep, replica) for replica in containers}


def _running_model(dep: Deployment, replica: Container) -> str:
    """The model file a frontend has loaded, as a path inside the project ('' if unknown)."""
    status = facts.rasa_status(
        dep.hosts[replica.host].address, replica.port("http").host_port, dep.secrets.rasa_token
    )
    name = str(status.get("model_file") or "")
    if not name:
        return ""
    configured = PurePosixPath(dep.cluster.frontend_of(replica.bot).model)
    folder = configured.parent if configured.name.endswith(".tar.gz") else configured
    return str(folder / PurePosixPath(name).name)


def _check_model(step: Step, run: Run) -> None:
    """Every frontend of a bot runs one model."""
    by_bot: dict[str, set[str]] = {}
    if run.dep.cluster.engine == "swarm":
        by_bot[""] = set(swarm.model_ids(run.dep).values())
    else:
        dep, containers = run.containers(step.names)
        for c in containers:
            model = facts.model_id(
                dep.hosts[c.host].address, c.port("http").host_port, dep.secrets.rasa_token
            )
            by_bot.setdefault(c.bot, set()).add(model)
    run.model_ids = set().union(*by_bot.values())
    for bot, models in by_bot.items():
        if len(models) != 1:
            whose = f"bot {bot}'s frontends" if bot else "frontends"
            raise SyrcadError(
                f"{whose} report different models after the rollout: {sorted(models)}"
            )


def _put_back(step: Step, run: Run) -> None:
    """A failed rollout batch back on the model it ran before, pinned in the state file."""
    models = {m for m in run.models.values() if m}
    if not models:
        return
    batch = [c for c in run.dep.placement.of("frontend") if c.name in run.models]
    # A batch is one bot's (steps.rollout): its pin joins the other bots'.
    bot = batch[0].bot if batch else ""
    pinned = State(run.dep.state.scale, {**run.dep.state.models, bot: sorted(models)[0]})
    back = prepare(run.dep.loaded.path, pinned)
    for host in {back.hosts[c.host] for c in batch}:
        host.sync(back.files)
    for replica in batch:
        back.hosts[replica.host].recreate(replica.name)
    wait_ready(
        [(back.hosts[c.host], [c.name]) for c in batch],
        "putting back",
        ready_within_s(batch),
        run.report,
    )
    enable(back, batch)
    write_state(state_path(back.loaded.path), pinned)


def _pause_checks(step: Step, run: Run) -> None:
    rotate.health_checks(run.dep, "disable")


def _resume_checks(step: Step, run: Run) -> None:
    rotate.health_checks(run.dep, "enable")


def _store_password(step: Step, run: Run) -> None:
    assert run.before is not None, "rotating needs the secrets as they were"
    rotate.store_password(run.before, run.dep, step.note, step.names)
    run.report.step(f"{', '.join(step.names)}: password {step.note}")


def _init_replica_set(step: Step, run: Run) -> None:
    run.report.step(replica_set.ensure(run.dep, step.note, step.seconds))


def _init_swarm(step: Step, run: Run) -> None:
    swarm.init(_host(run, step))
    run.joined.append(step.host)


def _join_swarm(step: Step, run: Run) -> None:
    founder = swarm.manager(run.dep)
    swarm.join(_host(run, step), founder, step.note)
    run.joined.append(step.host)


def _label_nodes(step: Step, run: Run) -> None:
    swarm.label(run.dep, step.names)


def _stop_compose(step: Step, run: Run) -> None:
    run.removed += swarm.stop_compose(_host(run, step))


def _deploy_stack(step: Step, run: Run) -> None:
    run.report.host(step.host, "deploying the stack")
    swarm.deploy(run.dep)


def _wait_converged(step: Step, run: Run) -> None:
    # A scale's steps name the replica counts given to Swarm so far (`frontend=4 action=2`).
    given = dict(pair.split("=") for pair in step.note.split())
    counts = {service: int(replicas) for service, replicas in given.items()}
    swarm.wait_converged(run.dep, step.seconds, run.report, counts)


def _scale_service(step: Step, run: Run) -> None:
    for service in step.names:
        swarm.scale(run.dep, service, int(step.note))


def _update_service(step: Step, run: Run) -> None:
    for service in step.names:
        run.report.step(f"rolling {service} over, {step.note} at a time")
        swarm.update(run.dep, service, int(step.note))
        run.recreated.append(service)


def _remove_stack(step: Step, run: Run) -> None:
    swarm.remove(run.dep, step.seconds)


def _remove_volumes(step: Step, run: Run) -> None:
    swarm.remove_volumes(_host(run, step))


def _leave_swarm(step: Step, run: Run) -> None:
    swarm.leave(_host(run, step))


def _write_secrets(step: Step, run: Run) -> None:
    write_private(secrets_path(run.dep.loaded.path), document(run.dep.secrets))


def _train(step: Step, run: Run) -> None:
    bot = next(iter(step.names), "")
    run.trained[bot] = training.train(run.dep, _host(run, step), run.report, bot)


_ACTIONS: dict[str, Callable[[Step, Run], None]] = {
    "ship-images": _ship,
    "write-files": _write_files,
    "start": _start,
    "recreate": _recreate,
    "restart-kept": _restart_kept,
    "wait-ready": _wait_ready,
    "drain": _drain,
    "enable": _enable,
    "reload-lb": _reload,
    "wait-in-lbs": _wait_in_lbs,
    "remove-orphans": _remove_orphans,
    "stop": _stop,
    "record-state": _record_state,
    "read-models": _read_models,
    "check-model": _check_model,
    "put-back": _put_back,
    "pause-checks": _pause_checks,
    "resume-checks": _resume_checks,
    "store-password": _store_password,
    "write-secrets": _write_secrets,
    "train": _train,
    "init-replica-set": _init_replica_set,
    "init-swarm": _init_swarm,
    "join-swarm": _join_swarm,
    "label-nodes": _label_nodes,
    "stop-compose": _stop_compose,
    "deploy-stack": _deploy_stack,
    "wait-converged": _wait_converged,
    "scale-service": _scale_service,
    "update-service": _update_service,
    "remove-stack": _remove_stack,
    "remove-volumes": _remove_volumes,
    "leave-swarm": _leave_swarm,
}
