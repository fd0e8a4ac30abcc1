"""Stage 3: Placement → the files each host needs, and writing them without needless changes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from syrcad.config.model import Cluster, MongoTracker
from syrcad.config.secrets import Secrets
from syrcad.plan import commands, placement, readiness
from syrcad.plan.placement import Placement
from syrcad.render.context import HostContext, host_context
from syrcad.render.templates import render_template, static


@dataclass(frozen=True)
class RenderedFile:
    host: str
    path: PurePosixPath  # relative to the cluster folder on that host
    content: str


# What the templates take from the plan instead of repeating it: ports and paths inside the
# containers, the LB backend names that drain and status use, the check timings.
INSIDE = {
    "rasa_port": placement.RASA_PORT,
    "actions_port": placement.ACTIONS_PORT,
    "redis_port": placement.REDIS_PORT,
    "mongo_port": placement.MONGO_PORT,
    "sentinel_port": placement.SENTINEL_PORT,
    "lb_public_port": placement.LB_PUBLIC_PORT,
    "lb_tls_port": placement.LB_TLS_PORT,
    "lb_api_port": placement.LB_API_PORT,
    "lb_stats_port": placement.LB_STATS_PORT,
    "lb_actions_port": placement.LB_ACTIONS_PORT,
    "prometheus_port": placement.PROMETHEUS_PORT,
    "blackbox_port": placement.BLACKBOX_PORT,
    "model_server_port": placement.MODEL_SERVER_PORT,
    "runtime_port": commands.RUNTIME_PORT,
    "agent_port": placement.AGENT_PORT,
    "breaker_marks": placement.BREAKER_MARKS_INSIDE,
    "server_state_file": commands.SERVER_STATE_FILE,
    "stats_user": placement.STATS_USER,
    "config_dir": placement.CONFIG_INSIDE,
    "haproxy_dir": placement.HAPROXY_CONFIG_INSIDE,
    "prometheus_dir": f"{placement.CONFIG_INSIDE}/prometheus",
}
BACKEND_NAMES = {
    "rest": placement.BALANCED["frontend"][0].name,
    "socketio": placement.BALANCED["frontend"][1].name,
    "actions": placement.BALANCED["action"][0].name,
}
CHECKS = {
    "interval_s": readiness.HEALTHCHECK_INTERVAL_S,
    "retries": readiness.HEALTHCHECK_RETRIES,
    "frontend_start_period_s": readiness.FRONTEND_START_PERIOD_S,
    "action_start_period_s": readiness.ACTION_START_PERIOD_S,
    "store_start_period_s": readiness.STORE_START_PERIOD_S,
    "lb_interval_s": readiness.LB_CHECK_INTERVAL_S,
    "lb_fall": readiness.LB_CHECK_FALL,
    "lb_rise": readiness.LB_CHECK_RISE,
    "lb_connect_timeout_s": readiness.LB_CONNECT_TIMEOUT_S,
    "lb_dead_peer_idle_s": readiness.LB_DEAD_PEER_IDLE_S,
    "lb_dead_peer_interval_s": readiness.LB_DEAD_PEER_INTERVAL_S,
    "lb_dead_peer_probes": readiness.LB_DEAD_PEER_PROBES,
    "store_connect_timeout_s": readiness.STORE_CONNECT_TIMEOUT_S,
    "store_reply_timeout_s": readiness.STORE_REPLY_TIMEOUT_S,
    "primary_down_after_ms": readiness.REDIS_PRIMARY_DOWN_AFTER_S * 1000,
    "failover_timeout_ms": readiness.REDIS_FAILOVER_TIMEOUT_S * 1000,
    "vrrp_advert_s": readiness.VRRP_ADVERT_S,
    "vrrp_garp_refresh_s": readiness.VRRP_GARP_REFRESH_S,
    "leave_lbs_s": readiness.SWARM_LEAVE_LBS_S,
}

TRACKER_PASSWORD_FILE = "rasa/tracker-password"
# syrcad's Python modules for Rasa, shipped as they are beside endpoints.yml (on PYTHONPATH).
RASA_MODULES = (
    "syrcad_event_chunks.py",
    "syrcad_lock_store.py",
    "syrcad_store_breaker.py",
    "syrcad_turns.py",
)
RASA_MODULE_FILES: tuple[tuple[str, str, str], ...] = tuple(
    (f"rasa/{module}", f"compose/rasa/{module}", "frontend") for module in RASA_MODULES
)
# One per bot, named by BotContext.endpoints: its tracker collection and lock key prefix.
ENDPOINTS = "rasa/endpoints.yml"
# (path on the host, template, the service whose presence on a host calls for the file)
HOST_FILES: tuple[tuple[str, str, str | None], ...] = (
    ("compose.yml", "compose/compose.yml.j2", None),
    (ENDPOINTS, "compose/rasa/endpoints.yml.j2", "frontend"),
    ("rasa/credentials.yml", "compose/rasa/credentials.yml.j2", "frontend"),
    *RASA_MODULE_FILES,
    ("redis/redis.conf", "compose/stores/redis.conf.j2", "redis"),
    ("sentinel/sentinel.conf", "compose/stores/sentinel.conf.j2", "sentinel"),
    ("mongo/initial-password", "compose/stores/initial-password.j2", "mongo"),
    ("postgres/initial-password", "compose/stores/initial-password.j2", "postgres"),
    ("lb/haproxy.cfg", "haproxy/public.cfg.j2", "lb"),
    ("action-lb/haproxy.cfg", "haproxy/actions.cfg.j2", "action-lb"),
    ("keepalived/keepalived.conf", "compose/keepalived.conf.j2", "keepalived"),
    ("prometheus/prometheus.yml", "compose/prometheus/prometheus.yml.j2", "prometheus"),
    ("prometheus/alerts.yml", "compose/prometheus/alerts.yml.j2", "prometheus"),
    ("model-server/serve_models.py", "compose/model-server/serve_models.py", "model-server"),
)


def render(cluster: Cluster, placement: Placement, secrets: Secrets) -> tuple[RenderedFile, ...]:
    """Every file of every host, in a stable order.

    >>> [str(f.path) for f in render(cluster, place(cluster), secrets) if f.host == "app1"]
    ['compose.yml', 'rasa/endpoints.yml', 'rasa/credentials.yml', 'lb/haproxy.cfg', ...]
    """
    files: list[RenderedFile] = []
    for host in cluster.hosts:
        if not placement.on(host):
            continue
        ctx = host_context(cluster, placement, secrets, host)
        values = variables(ctx)

        for path, template, needed_by in HOST_FILES:
            if path == ENDPOINTS and ctx.has(needed_by or ""):
                for bot in ctx.bots:
                    content = render_template(template, **values, bot=bot)
                    files.append(RenderedFile(host, PurePosixPath("rasa", bot.endpoints), content))
            elif needed_by is None or ctx.has(needed_by):
                # Files without .j2 are shipped as they are (the lock store module).
                content = (
                    render_template(template, **values)
                    if template.endswith(".j2")
                    else static(template)
                )
                files.append(RenderedFile(host, PurePosixPath(path), content))
        if values["tracker_password_file"] and ctx.has("frontend"):
            password = f"{ctx.secrets.tracker_password}\n"
            files.append(RenderedFile(host, PurePosixPath(TRACKER_PASSWORD_FILE), password))
        if cluster.mongo_replica_set() and ctx.has("mongo"):
            key = f"{ctx.secrets.replica_set_key}\n"
            files.append(RenderedFile(host, PurePosixPath("mongo/replica-set-key"), key))
        tls = cluster.services.lb.tls
        if tls and ctx.has("lb"):
            pem = Path(tls.certificate).expanduser().read_text(encoding="utf-8")
            files.append(RenderedFile(host, PurePosixPath("lb/tls.pem"), pem))
    return tuple(files)


def variables(ctx: HostContext) -> dict[str, object]:
    cluster = ctx.cluster
    project = cluster.project
    # Only hosts running Rasa, actions or the model server mount the project.
    mounting = ctx.has("frontend") or ctx.has("action") or ctx.has("model-server")
    nfs = project.nfs if mounting else None
    nfs_actions_export = None
    if nfs:
        inside = PurePosixPath(project.actions_path()).relative_to(project.path)
        nfs_actions_export = str(PurePosixPath(nfs.export) / inside)
    named_volumes = [
        f"{p.container.name}-{'state' if p.container.service in ('lb', 'action-lb') else 'data'}"
        for p in ctx.containers
        if p.container.service
        in ("mongo", "postgres", "redis", "sentinel", "lb", "action-lb", "prometheus")
    ]
    return {
        **{field.name: getattr(ctx, field.name) for field in dataclasses.fields(ctx)},
        "own": ctx.own,
        "rasa_modules": RASA_MODULES,
        "lb": cluster.services.lb,
        "lb_hosts": list(cluster.hosts_with("lb")),
        "quorum": ctx.quorum,
        "mongo_url": ctx.mongo_url,
        "replica_set": cluster.mongo_replica_set(),
        "postgres": None if isinstance(cluster.stores.tracker, MongoTracker) else ctx.postgres,
        "resolve_names": any(
            t.by_name
            for targets in (*(b.targets for b in ctx.bots), *(p.targets for p in ctx.action_pools))
            for t in targets
        ),
        "project_volume": "project" if nfs else project.path,
        "actions_volume": "actions" if nfs else project.actions_path(),
        "nfs": nfs,
        "nfs_actions_export": nfs_actions_export,
        "named_volumes": named_volumes,
        "mongo_tracker": isinstance(cluster.stores.tracker, MongoTracker),
        "inside": INSIDE,
        "backends": BACKEND_NAMES,
        "checks": CHECKS,
        "pools": None,  # Swarm's replica pools (render/stack.py)
        # syrcad's own PostgreSQL: the frontends read its password again for each connection.
        "tracker_password_file": (
            f"{placement.CONFIG_INSIDE}/{PurePosixPath(TRACKER_PASSWORD_FILE).name}"
            if cluster.tracker_role() == "postgres"
            else None
        ),
    }


def write_tree(root: Path, files: Iterable[RenderedFile]) -> list[Path]:
    """Write `files` under `root/<host>/`; untouched when the content is already there.

    Returns the paths that changed. The tree is private to its owner (files hold secrets);
    folders inside are traversable so containers can read the files mounted from them.
    """
    changed: list[Path] = []
    root.mkdir(parents=True, exist_ok=True)
    for file in files:
        target = root / file.host / file.path
        if _written(target, file):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(file.content, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # atomic: a reloading HAProxy never reads half a file
        changed.append(target)
    for host_dir in {root / f.host for f in files}:
        os.chmod(host_dir, 0o700)
    return changed


def differing(root: Path, files: Iterable[RenderedFile]) -> list[str]:
    """The paths of `files` that `write_tree(root, files)` would write (it writes nothing)."""
    return [str(f.path) for f in files if not _written(root / f.host / f.path, f)]


def _written(target: Path, file: RenderedFile) -> bool:
    return target.is_file() and target.read_text(encoding="utf-8") == file.content
