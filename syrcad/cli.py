"""The `syrcad` command line. The one place where errors become messages and exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from syrcad import config, plan, render
from syrcad.apply import conversations, deployment, inspect, journal, planning
from syrcad.apply import top as top_view
from syrcad.apply.deployment import Reporter
from syrcad.apply.execute import Run, execute
from syrcad.apply.hosts import HostHandle
from syrcad.apply.hosts import handles as hosts_of
from syrcad.config.secrets import ensure as ensure_secrets
from syrcad.config.secrets import secrets_path
from syrcad.config.state import SCALABLE, parse_counts, put_back, read_state, state_path
from syrcad.errors import SyrcadError, UsageError
from syrcad.loadtest import LoadOptions, bot_traffic, locust_argv, public_url
from syrcad.plan import commands
from syrcad.plan.steps import Plan
from syrcad.plan.swarm import stack_services
from syrcad.plan.swarm import where as swarm_where
from syrcad.progress import RichReporter

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run Rasa chatbots at scale on on-premise Docker hosts, without Kubernetes.",
)
out = Console()
err = Console(stderr=True)

HostsFile = Annotated[
    Path,
    typer.Option(
        "--hosts", "-H", envvar="SYRCAD_HOSTS", help="The cluster description.", show_default=True
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
BotOption = Annotated[
    str | None,
    typer.Option("--bot", help="One bot of hosts.yml's `bots:` (default: every bot)."),
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the steps it would take; change nothing, take no lock."),
]


LOCK_WAIT_S = {"value": 0.0}  # set by the global --lock-wait option


@app.callback()
def options(
    lock_wait: Annotated[
        float,
        typer.Option(
            "--lock-wait",
            envvar="SYRCAD_LOCK_WAIT",
            min=0,
            help="Seconds to wait for another run's deploy lock before giving up.",
        ),
    ] = 0,
) -> None:
    LOCK_WAIT_S["value"] = lock_wait


def _journal(hosts: Path) -> tuple[config.Loaded, dict[str, HostHandle], Path]:
    """hosts.yml, its host handles, and this machine's audit log of the cluster."""
    loaded = config.load(hosts)
    workspace = deployment.workspace(loaded)
    log = workspace / loaded.cluster.name / journal.AUDIT_FILE
    return loaded, hosts_of(loaded.cluster, workspace), log


@contextmanager
def _changing(hosts: Path) -> Iterator[None]:
    """Around a command that changes the cluster: the deploy lock, and an audit log line."""
    _, handles, local_log = _journal(hosts)

    def waiting(holder: journal.Holder) -> None:
        err.print(f"waiting for the deploy lock: held by {holder}", highlight=False)

    with journal.operation(
        handles, local_log, ["syrcad", *sys.argv[1:]], LOCK_WAIT_S["value"], waiting
    ):
        yield


def _load(hosts: Path) -> tuple[config.Loaded, plan.Placement, config.Cluster]:
    """hosts.yml with the recorded state (scale, pins) applied, its placement, and the cluster
    as the file alone says."""
    loaded = config.load(hosts)
    cluster = read_state(state_path(loaded.path)).applied_to(loaded.cluster)
    with loaded.source.locating():
        placement = plan.place(cluster)
    return config.Loaded(cluster, loaded.source, loaded.path), placement, loaded.cluster


@app.command()
def validate(hosts: HostsFile = Path("hosts.yml")) -> None:
    """Check hosts.yml (shape, roles, addresses, ports) without writing anything."""
    loaded, placement, _ = _load(hosts)
    out.print(
        f"{hosts}: valid — {len(loaded.cluster.hosts)} hosts, {len(placement.containers)} containers"
    )


@app.command("plan")
def plan_command(hosts: HostsFile = Path("hosts.yml"), as_json: AsJson = False) -> None:
    """Show where every replica runs: host × service × replica × ports."""
    loaded, placement, file_cluster = _load(hosts)
    if loaded.cluster.engine == "swarm":
        _plan_on_swarm(hosts, loaded.cluster, placement, file_cluster, as_json)
        return
    rows = [
        {
            "host": c.host,
            "address": str(loaded.cluster.hosts[c.host].address),
            "service": c.service,
            **({"bot": c.bot} if c.bot else {}),
            "replica": c.replica,
            "container": c.name,
            "ports": {p.purpose: p.host_port for p in c.ports},
        }
        for c in placement.containers
    ]
    several = bool(loaded.cluster.bots)
    if as_json:
        out.print_json(json.dumps({"cluster": loaded.cluster.name, "containers": rows}))
        return
    table = Table(title=f"cluster {loaded.cluster.name} ({hosts})")
    columns = ("host", "service", *(["bot"] if several else []), "replica", "container", "ports")
    for column in columns:
        table.add_column(column, justify="right" if column == "replica" else "left")
    table.caption = "\n".join(_state_notes(loaded.path, file_cluster)) or None
    for host in loaded.cluster.hosts:
        # A host's replicas grouped by bot: each bot's pool together.
        mine = sorted((r for r in rows if r["host"] == host), key=lambda r: str(r.get("bot", "")))
        for row in mine:
            ports = ", ".join(f"{k} {v}" for k, v in dict(row["ports"]).items())  # type: ignore[call-overload]
            table.add_row(
                f"{host} ({row['address']})",
                str(row["service"]),
                *([str(row.get("bot", "-"))] if several else []),
                str(row["replica"]),
                str(row["container"]),
                ports,
            )
    out.print(table)


def _plan_on_swarm(
    hosts: Path,
    cluster: config.Cluster,
    placement: plan.Placement,
    file_cluster: config.Cluster,
    as_json: bool,
) -> None:
    """Under Swarm, syrcad places only the stores: the rest is Swarm's to schedule."""
    rows = [
        {"service": service, "tasks": tasks, "hosts": list(where), "ports": ports}
        for service, tasks, where, ports in swarm_where(cluster, placement)
    ]
    if as_json:
        out.print_json(json.dumps({"cluster": cluster.name, "engine": "swarm", "services": rows}))
        return
    table = Table(title=f"cluster {cluster.name} on Swarm ({hosts})")
    for column in ("service", "tasks", "hosts", "ports"):
        table.add_column(column)
    table.caption = "\n".join(_state_notes(hosts, file_cluster)) or None
    for row in rows:
        table.add_row(
            str(row["service"]), str(row["tasks"]), ", ".join(row["hosts"]), str(row["ports"])
        )
    out.print(table)


def _state_notes(hosts: Path, file_cluster: config.Cluster) -> list[str]:
    """What the state file beside hosts.yml changes: scaled counts, a pinned model."""
    state = read_state(state_path(hosts))
    notes = [
        f"{name}: {record.replicas} replicas, set by `syrcad scale` in {state_path(hosts)} "
        f"(hosts.yml says {record.file_replicas})"
        for name, record in state.live(file_cluster).items()
    ]
    for bot, model in state.models.items():
        whose = f"bot {bot}'s frontend model" if bot else "frontend model"
        notes.append(f"{whose} pinned to {model} by a failed rollout ({state_path(hosts)})")
    return notes


@app.command("render")
def render_command(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write, one sub-folder per host.")
    ],
    hosts: HostsFile = Path("hosts.yml"),
) -> None:
    """Write every host's files (compose, HAProxy, Rasa endpoints/credentials) to a folder."""
    loaded, placement, _ = _load(hosts)
    secrets = ensure_secrets(secrets_path(loaded.path))
    files = render.render(loaded.cluster, placement, secrets)
    changed = render.write_tree(out_dir, files)
    if changed:
        for path in changed:
            out.print(f"wrote {path}")
    else:
        out.print(f"{out_dir}: up to date ({len(files)} files)")


def _apply(
    hosts: Path, plan: Plan, dry_run: bool, as_json: bool, run: Callable[[Reporter], Run]
) -> Run | None:
    """Print `plan` (--dry-run), or run it under the deploy lock; --json prints the steps."""
    if dry_run:
        would = run(Reporter())  # nothing runs: what the plan would run against
        sends = planning.host_commands(plan, would.dep, would.before)
        _print_plan(plan, _around(hosts), sends, as_json)
        return None
    # With --json, standard output carries the JSON alone; progress goes to standard error.
    with _changing(hosts), RichReporter(err if as_json else out) as reporter:
        done = execute(plan, run(reporter))
    if as_json:
        out.print_json(json.dumps(Plan(plan.command, tuple(done.done)).as_dict()))
    return done


def _around(hosts: Path) -> dict[str, str]:
    """The commands a real run wraps its steps in, on the hosts: the deploy lock, the audit log."""
    _, handles, _ = _journal(hosts)
    lock = journal.DeployLock.of(handles)
    root = str(lock.host.remote_root)
    return {
        f"before, on {lock.host.name}": commands.take_lock(root, lock.folder),
        "after, on every host": commands.append_audit(f"{root}/HOST", journal.AUDIT_FILE),
        f"after, on {lock.host.name}": commands.release_lock(lock.folder),
    }


def _print_plan(plan: Plan, around: dict[str, str], sends: list[list[str]], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({**plan.as_dict(), "sends": sends, "around": around}))
        return
    table = Table(title=f"syrcad {plan.command}: {len(plan.steps)} steps, nothing done yet")
    for column in ("#", "host", "step", "what", "within"):
        table.add_column(column, justify="right" if column in ("#", "within") else "left")
    for number, step in enumerate(plan.steps, start=1):
        what = " ".join(filter(None, [", ".join(step.names), f"({step.note})" * bool(step.note)]))
        within = f"{step.seconds}s" if step.seconds else ""
        table.add_row(str(number), step.host or "(cluster)", step.action, what, within)
    if plan.on_failure:
        table.caption = "if a step fails: " + "; ".join(str(s) for s in plan.on_failure)
    out.print(table)
    for number, commands_sent in enumerate(sends, start=1):
        for command in commands_sent:
            out.print(f"step {number} sends, on {command}", highlight=False, markup=False)
    for when, command in around.items():
        out.print(f"{when}: {command}", highlight=False, markup=False)
    if not plan.facts_read:
        out.print(
            "Facts were not read: some hosts did not answer. The steps come from the rendered "
            "files alone (every image is taken as missing there)."
        )


@app.command()
def up(
    hosts: HostsFile = Path("hosts.yml"), dry_run: DryRun = False, as_json: AsJson = False
) -> None:
    """Render and deploy the cluster; waits until every replica is ready in its load balancer."""
    dep = deployment.prepare(hosts)
    run = _apply(hosts, planning.up(dep), dry_run, as_json, lambda report: Run(dep, report))
    if run is None or as_json:
        return
    swarm = dep.cluster.engine == "swarm"
    if run.changed:
        for label, names in (
            ("joined the swarm", run.joined),
            ("wrote", [path for paths in run.wrote.values() for path in paths] if swarm else []),
            ("created", run.created),
            ("recreated", run.recreated),
            ("removed (compose ran them)" if swarm else "removed", run.removed),
            ("reloaded", run.reloaded),
            ("restarted", run.restarted),
        ):
            if names:
                out.print(f"{label}: {', '.join(names)}")
        if swarm:
            out.print("Stack deployed; Swarm replaced the tasks whose definition changed.")
    elif swarm:
        services = stack_services(dep.placement)
        out.print(f"Nothing to change: the stack's {len(services)} services are as hosts.yml says.")
    else:
        out.print(
            f"Nothing to change: {len(dep.placement.containers)} containers already up to date."
        )
    _print_urls(dep)


def _print_urls(dep: deployment.Deployment) -> None:
    public = public_url(dep.cluster, dep.placement)
    out.print(f"Public URL:  {public}/webhooks/rest/webhook  (socket.io: {public}/socket.io/)")
    for lb in dep.placement.of("lb"):
        address = dep.hosts[lb.host].address
        out.print(
            f"Rasa API:    http://{address}:{lb.port('api').host_port}  (auth token in "
            f"{secrets_path(dep.loaded.path)})"
        )
        out.print(
            f"LB stats:    http://{address}:{lb.port('stats').host_port}/stats  (user admin), "
            f"metrics: /metrics"
        )
    for prometheus in dep.placement.of("prometheus"):
        address = dep.hosts[prometheus.host].address
        out.print(
            f"Prometheus:  http://{address}:{prometheus.port('http').host_port}/alerts  "
            "(alert rules; Grafana dashboard: compose/prometheus/grafana-dashboard.json)"
        )
    out.print(
        f"Load test:   syrcad loadtest --hosts {dep.loaded.path}   "
        f"(or: locust -f loadtest/locustfile.py --host {public})"
    )
    out.print(
        f'Try it:      curl -s {public}/webhooks/rest/webhook -d \'{{"sender": "me", '
        f'"message": "book a table"}}\''
    )


@app.command()
def down(
    hosts: HostsFile = Path("hosts.yml"),
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also delete the Mongo and Redis data.")
    ] = False,
    leave: Annotated[
        bool, typer.Option("--leave", help="engine: swarm: every host also leaves the swarm.")
    ] = False,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Stop and remove the cluster's containers (keeps the store volumes unless --volumes)."""
    dep = deployment.prepare(hosts)
    engine = dep.cluster.engine
    if leave and engine != "swarm":
        raise UsageError(f"--leave: {hosts} runs on engine {engine}, not in a swarm")
    plan = planning.down(dep, volumes, leave)
    if _apply(hosts, plan, dry_run, as_json, lambda report: Run(dep, report)) and not as_json:
        what = "Stack removed from the swarm" if engine == "swarm" else "Cluster stopped"
        out.print(
            what
            + (" and its data deleted" if volumes else "; Mongo and Redis data kept")
            + ("; every host left the swarm." if leave else ".")
        )


@app.command()
def ps(hosts: HostsFile = Path("hosts.yml"), as_json: AsJson = False) -> None:
    """Containers per host and replica: state and health."""
    _status_table(hosts, as_json, with_lb=False)


@app.command()
def status(
    hosts: HostsFile = Path("hosts.yml"), bot: BotOption = None, as_json: AsJson = False
) -> None:
    """Per replica: container state, load-balancer state (UP/DOWN/DRAIN) and loaded model id."""
    _status_table(hosts, as_json, with_lb=True, bot=bot)


def _status_table(hosts: Path, as_json: bool, with_lb: bool, bot: str | None = None) -> None:
    dep = deployment.prepare(hosts)
    if bot is not None:
        planning.known_bot(dep.cluster, bot)
    several = bool(dep.cluster.bots)
    rows = [
        row.as_dict(with_lb, with_bot=several)
        for row in inspect.status(dep, with_lb=with_lb)
        if bot is None or row.bot in (bot, "")
    ]
    engine = dep.cluster.engine
    if as_json:
        out.print_json(
            json.dumps({"cluster": dep.cluster.name, "engine": engine, "replicas": rows})
        )
        return
    table = Table(title=f"cluster {dep.cluster.name} (engine: {engine})")
    for column in rows[0] if rows else ("host", "container"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    out.print(table)


@app.command()
def top(
    hosts: HostsFile = Path("hosts.yml"),
    once: Annotated[bool, typer.Option("--once", help="One snapshot, then exit.")] = False,
    as_json: AsJson = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between refreshes.")
    ] = 2.0,
    window: Annotated[
        float,
        typer.Option("--window", min=1, help="Seconds of LB log behind rates and percentiles."),
    ] = 10.0,
) -> None:
    """Live view until Ctrl-C: per replica its LB state, requests in progress and queued, rate,
    5xx rate, p50/p99 (HAProxy's timers), model; per LB sessions, queue, rate-limited clients;
    per store reachability and connect time."""
    if as_json and not once:
        raise UsageError("--json needs --once (one snapshot for a script)")
    dep = deployment.prepare(hosts)
    if once:
        snap = top_view.snapshot(dep, window)
        if as_json:
            out.print_json(json.dumps(snap.as_dict()))
        else:
            out.print(_top_tables(snap))
        return
    with Live(_top_tables(top_view.snapshot(dep, window)), console=out, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_top_tables(top_view.snapshot(dep, window)))
        except KeyboardInterrupt:
            pass


def _top_tables(snap: top_view.Snapshot) -> Group:
    def number(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:g}{unit}"

    replicas = Table(
        title=f"cluster {snap.cluster} (engine: {snap.engine}), "
        f"{time.strftime('%H:%M:%S')}; rates and percentiles over the last {snap.window_s:g} s",
        title_justify="left",
    )
    for column in ("replica", "host", "container", "lb", "now", "queued", "req/s", "5xx/s"):
        replicas.add_column(column, justify="right" if column[0] in "nqr5" else "left")
    for column in ("p50", "p99", "model"):
        replicas.add_column(column, justify="left" if column == "model" else "right")
    for r in snap.replicas:
        replicas.add_row(
            r.replica,
            r.host,
            r.container,
            r.lb,
            str(r.current),
            str(r.queued),
            number(r.rate),
            number(r.errors),
            number(r.p50_ms, " ms"),
            number(r.p99_ms, " ms"),
            r.model or "-",
        )
    lbs = Table(title="load balancers", title_justify="left")
    for column in ("lb", "host", "sessions", "queued", "rate-limited clients", "429s"):
        lbs.add_column(column, justify="left" if column in ("lb", "host") else "right")
    for lb in snap.lbs:
        lbs.add_row(
            lb.lb,
            lb.host,
            str(lb.sessions),
            str(lb.queued),
            str(lb.limited_clients),
            str(lb.limited),
        )
    stores = Table(title="stores (a TCP connect from here)", title_justify="left")
    for column in ("store", "host", "address", "reachable", "connect"):
        stores.add_column(column)
    for s in snap.stores:
        stores.add_row(
            s.store, s.host, s.target, "yes" if s.reachable else "NO", number(s.rtt_ms, " ms")
        )
    return Group(replicas, lbs, stores)


@app.command()
def logs(
    service: Annotated[
        str, typer.Argument(help="A service (frontend, action, lb, …) or one replica (frontend-2).")
    ],
    hosts: HostsFile = Path("hosts.yml"),
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[int, typer.Option("--tail", help="Lines from the end of each log.")] = 100,
    bot: BotOption = None,
) -> None:
    """Print the logs of a service's containers on every host (one bot's frontends with --bot)."""
    dep = deployment.prepare(hosts)
    if bot is not None:
        planning.known_bot(dep.cluster, bot)
    for line in inspect.logs(dep, service, follow=follow, tail=tail, bot=bot):
        out.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def train(
    hosts: HostsFile = Path("hosts.yml"),
    bot: BotOption = None,
    then_rollout: Annotated[
        bool,
        typer.Option(
            "--rollout", help="Then take the new model to the bot's frontends, one at a time."
        ),
    ] = False,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Train the bot (or each bot) in a one-off container on the training host; the model is
    written into the bot's shared project."""
    dep = deployment.prepare(hosts)
    run = _apply(hosts, planning.train(dep, bot), dry_run, as_json, lambda report: Run(dep, report))
    if run and not as_json:
        for name, model in run.trained.items():
            whose = f"bot {name}: " if name else ""
            out.print(f"{whose}trained {model or 'a new model'} in {dep.cluster.project_of(name)}")
    if then_rollout and (run or dry_run):
        rollout(hosts, "frontend", batch=1, bot=bot, dry_run=dry_run, as_json=as_json)


@app.command("scale")
def scale_command(
    assignments: Annotated[
        list[str],
        typer.Argument(help="SERVICE=COUNT, e.g. frontend=8 action=3", show_default=False),
    ],
    hosts: HostsFile = Path("hosts.yml"),
    bot: BotOption = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Change replica counts under traffic: new replicas join their LB once ready, removed ones drain first."""
    counts = parse_counts(assignments)
    plan, old, new, state = planning.scale(hosts, counts, bot)
    started = time.monotonic()
    run = _apply(
        hosts, plan, dry_run, as_json, lambda report: Run(new, report, before=old, state=state)
    )
    if run is None or as_json:
        return
    if new.cluster.engine == "swarm":
        for name, count in counts.items():
            was = getattr(old.cluster.services, name).replicas
            out.print(
                f"{name}: {was} → {count} tasks, all serving after {time.monotonic() - started:.1f}s"
            )
        out.print(
            f"Recorded in {state_path(hosts)}; `syrcad up` keeps it until you change the count in {hosts}."
        )
        return
    before, after = ({c.name for c in d.placement.containers} for d in (old, new))
    added = [c.name for c in new.placement.containers if c.name not in before]
    removed = [c.name for c in old.placement.containers if c.name not in after]
    if added:
        out.print(
            f"added: {', '.join(added)} (serving {time.monotonic() - started:.1f}s after the command)"
        )
    if removed:
        out.print(f"removed: {', '.join(removed)}")
    if not (added or removed):
        out.print("Nothing to change.")
    out.print(
        f"Recorded in {state_path(hosts)}; `syrcad up` keeps it until you change the count in {hosts}."
    )


@app.command()
def rollout(
    hosts: HostsFile = Path("hosts.yml"),
    service: Annotated[
        str, typer.Option(help="frontend (new model or image) or action (new image/code).")
    ] = "frontend",
    batch: Annotated[int, typer.Option(min=1, help="Replicas replaced at a time.")] = 1,
    bot: BotOption = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Replace replicas a batch at a time (drain, recreate, ready, enable) for a new model or image."""
    if service not in SCALABLE:
        raise UsageError(f"--service {service}: expected one of {', '.join(SCALABLE)}")
    plan, dep, state = planning.rollout(hosts, service, batch, bot)
    run = _apply(hosts, plan, dry_run, as_json, lambda report: Run(dep, report, state=state))
    if run is None or as_json:
        return
    if dep.cluster.engine == "swarm":
        out.print(f"Swarm replaced every task of {service}, {batch} at a time")
    else:
        out.print(f"replaced: {', '.join(c.name for c in dep.placement.of(service, bot))}")
    if len(run.model_ids) == 1:
        whose = f"bot {bot}'s" if bot else "every"
        out.print(f"{whose} frontend runs model {next(iter(run.model_ids))}")
    elif run.model_ids:
        out.print(f"each bot's frontends run one model: {', '.join(sorted(run.model_ids))}")


@app.command()
def loadtest(
    hosts: HostsFile = Path("hosts.yml"),
    headless: Annotated[
        bool, typer.Option("--headless", help="No web UI: run, write CSV + HTML, exit.")
    ] = False,
    users: Annotated[
        int, typer.Option("--users", "-u", min=1, help="Simulated users (conversations).")
    ] = 20,
    spawn_rate: Annotated[
        float, typer.Option("--spawn-rate", "-r", min=0.1, help="Users started per second.")
    ] = 5,
    run_time: Annotated[
        str, typer.Option("--run-time", "-t", help="How long, headless: 30s, 5m, 1h.")
    ] = "1m",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the CSV and HTML report.")
    ] = Path("loadtest-results"),
    max_fail_ratio: Annotated[
        float, typer.Option(help="Fail (exit 1) above this failure ratio.")
    ] = 0.01,
    max_p95_ms: Annotated[
        float, typer.Option(help="Fail (exit 1) above this p95 in ms; 0 = no limit.")
    ] = 0,
    web_port: Annotated[int, typer.Option(help="Port of the Locust web UI.")] = 8089,
    bot: BotOption = None,
) -> None:
    """Load-test the cluster's public URL with Locust: the web UI, or --headless with a report.
    With bots, the users speak each bot's language in turn (or talk to one bot: --bot)."""
    loaded, placement, _ = _load(hosts)
    if bot is not None:
        planning.known_bot(loaded.cluster, bot)
    languages, path_prefix = bot_traffic(loaded.cluster, bot)
    options = LoadOptions(
        headless,
        users,
        spawn_rate,
        run_time,
        out_dir,
        max_fail_ratio,
        max_p95_ms,
        web_port,
        languages,
        path_prefix,
    )
    url = public_url(loaded.cluster, placement)
    if headless:
        out_dir.mkdir(parents=True, exist_ok=True)
        out.print(f"Load test of {url}: {users} users, {run_time}; report in {out_dir}/")
    else:
        out.print(f"Locust web UI: http://127.0.0.1:{web_port}  (target {url})")
    code = subprocess.call(locust_argv(url, options))
    if code:
        raise typer.Exit(code)


secrets_app = typer.Typer(no_args_is_help=True, help="The cluster's secrets (never printed).")
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def secrets_rotate(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Which (default: all): rasa_token, jwt_secret, "
            "tracker_password, redis_password, stats_password."
        ),
    ] = None,
    hosts: HostsFile = Path("hosts.yml"),
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Replace secrets with new random ones, without downtime (frontends roll one at a time)."""
    if config.load(hosts).cluster.engine == "swarm":
        raise UsageError("secrets rotate runs with engine: compose only, for now")
    plan, old, new = planning.rotate(hosts, names or [])
    run = _apply(hosts, plan, dry_run, as_json, lambda report: Run(new, report, before=old))
    if run and not as_json:
        rotated = next(s.names for s in plan.steps if s.action == "write-secrets")
        out.print(f"rotated: {', '.join(rotated)} (new values in {secrets_path(hosts)})")


images_app = typer.Typer(no_args_is_help=True, help="Images for machines without a registry.")
app.add_typer(images_app, name="images")


@images_app.command("build")
def images_build(
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            envvar=["SYRCAD_CA_BUNDLE", "PIP_CERT"],
            exists=True,
            dir_okay=False,
            help="CA certificates for pip behind a TLS-intercepting proxy.",
        ),
    ] = None,
    mirror: Annotated[
        str | None, typer.Option("--mirror", help="Debian mirror (default: this machine's).")
    ] = None,
) -> None:
    """Build the stand-in images (Rasa, rasa-sdk, HAProxy, Redis, Mongo) from Debian packages."""
    from python_on_whales import DockerClient

    from syrcad.apply import images

    images.build_all(DockerClient(), ca_bundle, mirror, lambda line: out.print(line))


@images_app.command("push")
def images_push(
    hosts: HostsFile = Path("hosts.yml"), dry_run: DryRun = False, as_json: AsJson = False
) -> None:
    """Send each host the images it lacks (or holds under another id), over its SSH connection."""
    dep = deployment.prepare(hosts)
    plan = planning.push(dep)
    run = _apply(hosts, plan, dry_run, as_json, lambda report: Run(dep, report))
    if run and not as_json:
        sent = [f"{s.host}: {image}" for s in plan.steps for image in s.names]
        out.print("sent: " + ", ".join(sent) if sent else "Every host has its images.")


@app.command()
def backup(
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="The backup file to write (gzip JSON lines).")
    ],
    hosts: HostsFile = Path("hosts.yml"),
    bot: BotOption = None,
) -> None:
    """Every conversation (tracker events) and the cluster's state file, into one file; with
    bots, one bot's conversations (--bot) per file."""
    dep = deployment.prepare(hosts)
    chosen = _one_bot(dep.cluster, bot, "backed up")
    state = state_path(hosts)
    started = time.monotonic()
    counts = conversations.backup(
        dep, out_file, state.read_text(encoding="utf-8") if state.exists() else None, chosen
    )
    whose = f" (bot {chosen})" if chosen else ""
    out.print(
        f"Backed up {counts.conversations} conversations ({counts.events} events) of cluster"
        f" {dep.cluster.name}{whose} to {out_file} in {time.monotonic() - started:.1f} s."
    )


def _one_bot(cluster: config.Cluster, bot: str | None, done: str) -> str:
    """The bot a command on conversations acts on: `bot`, or the only one."""
    if bot is not None:
        planning.known_bot(cluster, bot)
        return bot
    if cluster.bots:
        raise UsageError(
            f"each bot's conversations are {done} on their own: give --bot, one of: "
            f"{', '.join(cluster.bots)}"
        )
    return ""


@app.command()
def restore(
    backup_file: Annotated[Path, typer.Argument(help="A file written by `syrcad backup`.")],
    hosts: HostsFile = Path("hosts.yml"),
    bot: BotOption = None,
) -> None:
    """Load a backup's conversations into the tracker store (Mongo or PostgreSQL, this cluster
    or another; with bots, as one bot's: --bot). Safe to repeat: a conversation the store holds
    as backed up is left alone, one that went on since is kept as it is. The state file comes
    back where there is none."""
    header, counts = conversations.read_header(backup_file)
    dep = deployment.prepare(hosts)
    chosen = _one_bot(dep.cluster, bot, "restored")
    started = time.monotonic()
    with _changing(hosts):
        summary = conversations.restore(dep, backup_file, chosen)
    out.print(
        f"Restored into cluster {dep.cluster.name} from {header.cluster}'s backup of"
        f" {header.created} ({counts.conversations} conversations) in"
        f" {time.monotonic() - started:.1f} s: {summary['restored']} restored,"
        f" {summary['appended']} continued, {summary['unchanged']} already there,"
        f" {summary['kept']} kept as the store has them (they went on after the backup);"
        f" {summary['events']} events written."
    )
    if header.state is None:
        return
    state = state_path(hosts)
    outcome = put_back(state, header.state)
    if outcome == "restored":
        out.print(f"State file restored: {state} (run `syrcad up` to apply it).")
    elif outcome == "kept":
        out.print(f"{state} differs from the backup's; kept as it is.")


@app.command()
def audit(
    hosts: HostsFile = Path("hosts.yml"),
    host: Annotated[
        str | None, typer.Option("--host", help="Read the log kept on this host instead.")
    ] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Last entries.")] = 20,
    as_json: AsJson = False,
) -> None:
    """Who changed the cluster, when, with what command, and how it ended."""
    loaded, handles, log = _journal(hosts)
    if host is None:
        text = log.read_text(encoding="utf-8") if log.exists() else ""
        entries = journal.read(text)[-lines:]
        where = str(log)
    else:
        if host not in handles:
            raise UsageError(f"--host {host}: not a host of {hosts} ({', '.join(handles)})")
        entries = journal.read_host(handles[host], lines)
        where = host
    if as_json:
        out.print_json(json.dumps([dataclasses.asdict(e) for e in entries]))
        return
    table = Table(title=f"audit log of cluster {loaded.cluster.name} ({where})")
    for column in ("when (UTC)", "who", "command", "result", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for entry in entries:
        table.add_row(entry.at, entry.who, entry.command, entry.result, f"{entry.seconds:.1f}")
    out.print(table)


lock_app = typer.Typer(no_args_is_help=True, help="The deploy lock (one change at a time).")
app.add_typer(lock_app, name="lock")


@lock_app.command("status")
def lock_status(hosts: HostsFile = Path("hosts.yml")) -> None:
    """Who holds the cluster's deploy lock, if anyone."""
    _, handles, _ = _journal(hosts)
    holder = journal.DeployLock.of(handles).holder()
    out.print(f"locked by {holder}" if holder else "not locked")


@lock_app.command("release")
def lock_release(hosts: HostsFile = Path("hosts.yml")) -> None:
    """Remove a lock left by a run that died (check `syrcad lock status` first)."""
    _, handles, local_log = _journal(hosts)
    lock = journal.DeployLock.of(handles)
    holder = lock.holder()
    lock.release()
    journal.record(
        list(handles.values()), local_log, "syrcad lock release", f"released: {holder}", 0.0
    )
    out.print(f"released (was held by {holder})" if holder else "was not locked")


@app.command()
def schema() -> None:
    """Print the JSON Schema of hosts.yml, for editor completion."""
    out.print_json(json.dumps(config.Cluster.model_json_schema()))


def main() -> None:
    """Entry point: run the app, turn every known error into a message and an exit code.

    Usage errors (exit 2) and Ctrl-C are Typer's own; everything syrcad raises ends here.
    """
    try:
        app()
    except SyrcadError as error:
        err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except Exception as error:  # a bug of ours: say so plainly; the traceback is opt-in
        if os.environ.get("SYRCAD_DEBUG"):
            raise
        err.print(
            f"[bold red]internal error:[/] {escape(type(error).__name__)}: {escape(str(error))}\n"
            "This is a bug in syrcad. Run again with SYRCAD_DEBUG=1 for the traceback.",
            highlight=False,
        )
        sys.exit(70)


if __name__ == "__main__":
    main()
