"""Facts read from a running cluster: containers, LB server states, loaded models."""

from __future__ import annotations

import base64
import csv
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from python_on_whales import DockerClient

from syrcad.apply.hosts import HostHandle
from syrcad.plan.placement import STATS_USER

SERVICE_LABEL = "com.docker.compose.service"


@dataclass(frozen=True)
class ContainerFact:
    host: str
    name: str  # compose service name, e.g. frontend-2
    id: str
    state: str  # running, exited, restarting, ...
    health: str  # healthy, starting, unhealthy, or "" without a healthcheck
    restarts: int

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "")


def containers(host: HostHandle) -> dict[str, ContainerFact]:
    """The cluster's containers on `host`, by compose service name (compose file not needed)."""

    def read(docker: DockerClient) -> dict[str, ContainerFact]:
        found = docker.container.list(
            all=True, filters=[("label", f"com.docker.compose.project={host.project}")]
        )
        facts = {}
        for c in found:
            name = (c.config.labels or {}).get(SERVICE_LABEL, c.name)
            health = c.state.health.status if c.state.health else ""
            facts[name] = ContainerFact(
                host.name, name, c.id, c.state.status or "", health or "", c.restart_count or 0
            )
        return facts

    return host.run("list containers", read)


def http_get(
    url: str, auth: tuple[str, str] | None = None, timeout: float = 3.0
) -> tuple[int, bytes]:
    """GET `url`; (status, body), or (0, b"") when nothing answers."""
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


def lb_stats(address: str, port: int, password: str) -> list[dict[str, str]]:
    """The LB's stats CSV, a row per frontend, backend and server; [] if it does not answer."""
    status, body = http_get(f"http://{address}:{port}/stats;csv", auth=(STATS_USER, password))
    if status != 200:
        return []
    return list(csv.DictReader(io.StringIO(body.decode().lstrip("# "))))


def lb_servers(address: str, port: int, password: str) -> dict[tuple[str, str], str]:
    """(backend, server) → HAProxy status (UP, DOWN, DRAIN, MAINT, ...) from the stats CSV."""
    return {
        (row["pxname"], row["svname"]): row["status"].split(" ")[0]
        for row in lb_stats(address, port, password)
        if row["svname"] not in ("FRONTEND", "BACKEND")
    }


def rasa_status(address: str, port: int, token: str) -> dict[str, object]:
    """A frontend's /status (model_file, model_id, ...); {} if no model or unreachable."""
    status, body = http_get(f"http://{address}:{port}/status?token={token}")
    if status != 200:
        return {}
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def model_id(address: str, port: int, token: str) -> str:
    """The model a Rasa frontend has loaded ("" if none or unreachable)."""
    return str(rasa_status(address, port, token).get("model_id") or "")
