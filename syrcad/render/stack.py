"""Stage 3 under Swarm (`engine: swarm`): the cluster as one stack file and the files it uses.

They are rendered once, for the host that founds the swarm: `docker stack deploy` reads them on
this machine and sends them to the swarm as secrets, each named by its content.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from syrcad.config.model import Cluster
from syrcad.config.secrets import Secrets
from syrcad.plan import swarm
from syrcad.plan.placement import AGENT_PORT, INNER_PORT, Placement
from syrcad.plan.readiness import SWARM_AGENT_INTERVAL_S
from syrcad.render.context import swarm_context
from syrcad.render.files import RASA_MODULE_FILES, RenderedFile, variables
from syrcad.render.templates import render_template, static

# (path beside the stack file, template, the service whose presence calls for the file)
STACK_FILES: tuple[tuple[str, str, str], ...] = (
    ("rasa/endpoints.yml", "compose/rasa/endpoints.yml.j2", "frontend"),
    ("rasa/credentials.yml", "compose/rasa/credentials.yml.j2", "frontend"),
    *RASA_MODULE_FILES,
    ("redis/redis.conf", "compose/stores/redis.conf.j2", "redis"),
    ("mongo/initial-password", "compose/stores/initial-password.j2", "mongo"),
    ("postgres/initial-password", "compose/stores/initial-password.j2", "postgres"),
    ("lb/haproxy.cfg", "haproxy/public.cfg.j2", "lb"),
    ("lb/drained_until_ready.lua", "haproxy/drained_until_ready.lua.j2", "lb"),
    ("action-lb/haproxy.cfg", "haproxy/actions.cfg.j2", "lb"),
    ("swarm/leave_lbs_first.py", "compose/swarm/leave_lbs_first.py", "frontend"),
    ("prometheus/prometheus.yml", "compose/prometheus/prometheus.yml.j2", "prometheus"),
    ("prometheus/alerts.yml", "compose/prometheus/alerts.yml.j2", "prometheus"),
)
STACK_FILE = "stack.yml"


@dataclass(frozen=True)
class Pool:
    """A replicated service as an LB finds it: Swarm's DNS name of its tasks, and the port."""

    prefix: str
    slots: int
    dns: str
    port: int
    agent_port: int  # where each task says whether to drain it (compose/swarm/leave_lbs_first.py)
    agent_interval_s: int


@dataclass(frozen=True)
class SwarmObject:
    key: str  # the stack file's name for it
    name: str  # Swarm's name: changes with the content


def render_stack(
    cluster: Cluster, placement: Placement, secrets: Secrets
) -> tuple[RenderedFile, ...]:
    host = swarm.founder(cluster)
    ctx = swarm_context(cluster, placement, secrets, host)
    values = variables(ctx)
    values["resolve_names"] = True
    values["tracker_password_file"] = None  # no rotation under Swarm yet
    values["bot"] = ctx.bots[0]  # one bot: `bots:` is refused under Swarm (config/checks.py)
    # Every file is a secret, in the one folder where Swarm mounts them (swarm_context's).
    secrets_dir = {"haproxy_dir": ctx.config_dir, "prometheus_dir": ctx.config_dir}
    values["inside"] = {**values["inside"], **secrets_dir}  # type: ignore[dict-item]
    values["pools"] = {
        service: Pool(
            service,
            swarm.slots(getattr(cluster.services, service).replicas),
            f"tasks.{swarm.full_name(cluster, service)}",
            INNER_PORT[service],
            AGENT_PORT,
            SWARM_AGENT_INTERVAL_S,
        )
        for service in swarm.REPLICATED
    }
    placed = {c.service for c in placement.containers}
    files: list[RenderedFile] = []
    for path, template, service in STACK_FILES:
        if service not in placed:
            continue
        content = (
            render_template(template, **values) if template.endswith(".j2") else static(template)
        )
        files.append(RenderedFile(host, PurePosixPath(path), content))
    tls = cluster.services.lb.tls
    if tls:
        pem = Path(tls.certificate).expanduser().read_text(encoding="utf-8")
        files.append(RenderedFile(host, PurePosixPath("lb/tls.pem"), pem))
    objects = {
        str(f.path): SwarmObject(
            swarm.object_key(str(f.path)), swarm.object_name(cluster, str(f.path), f.content)
        )
        for f in files
    }
    # The frontends reach the action LB over the overlay network: only its stats are published.
    lb_ports = {
        "lb": placement.of("lb")[0].ports,
        "action-lb": tuple(p for p in placement.of("action-lb")[0].ports if p.purpose == "stats"),
    }
    stack = render_template(
        "compose/stack.yml.j2",
        **values,
        objects=objects,
        stores=[c for c in placement.containers if c.service in swarm.STORES],
        store_addresses=" ".join(swarm.store_addresses(placement)),
        monitoring=[c for c in placement.containers if c.service in swarm.MONITORING],
        lb_ports=lb_ports,
        labels_prefix=swarm.label_prefix(cluster),
        network=swarm.network_name(cluster),
    )
    return (*files, RenderedFile(host, PurePosixPath(STACK_FILE), stack))
