"""HAProxy's runtime API, reached with `docker exec` inside the LB container.

The API listens on the container's loopback only, so it is never exposed; the commands that
talk to it are `syrcad.plan.commands`'.
"""

from __future__ import annotations

import csv
import io
from typing import Literal

from syrcad.apply.hosts import HostHandle
from syrcad.plan import commands

ServerState = Literal["ready", "drain", "maint"]


def runtime(host: HostHandle, lb: str, command: str) -> str:
    """Send one runtime API command to LB container `lb` on `host`; returns its answer."""
    answer = host.run(
        f"HAProxy API of {lb}: {command.split()[0]}",
        lambda d: d.compose.execute(lb, [*commands.haproxy_api(), command], tty=False),
    )
    return str(answer or "")


def set_state(host: HostHandle, lb: str, backend: str, server: str, state: ServerState) -> None:
    """READY takes traffic; DRAIN takes no new traffic, finishes what it has; MAINT takes none."""
    set_states(host, lb, backend, [server], state)


def set_states(
    host: HostHandle, lb: str, backend: str, servers: list[str], state: ServerState
) -> None:
    """`commands.set_servers` for many servers in one round trip."""
    if servers:
        runtime(host, lb, commands.set_servers(backend, servers, state))


def move_clients(host: HostHandle, lb: str, backend: str, servers: list[str]) -> None:
    """`commands.move_clients`: the servers' sticky clients reconnect to other replicas."""
    if servers:
        runtime(host, lb, commands.move_clients(backend, servers))


def stats(host: HostHandle, lb: str) -> list[dict[str, str]]:
    """`show stat` rows: pxname, svname, status, scur (current sessions), stot, ..."""
    text = runtime(host, lb, "show stat").lstrip("# ")
    return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]


def reload(host: HostHandle, lb: str) -> None:
    """Hitless reload: save server states (DRAIN, MAINT) for the new workers, then SIGUSR2 the
    master (PID 1). Listeners stay open; old workers finish their requests and exit."""
    host.run(
        f"reload {lb}",
        lambda d: d.compose.execute(lb, list(commands.haproxy_reload()), tty=False),
    )
