"""HAProxy's runtime API, reached with `docker exec` inside the LB container.

The API listens on the container's loopback only, so it is never exposed; bash's /dev/tcp is
enough to talk to it, in the official image and in the stand-in alike.
"""

from __future__ import annotations

import csv
import io
from typing import Literal

from syrcad.apply.hosts import HostHandle

RUNTIME_PORT = 9999
_TALK = f'exec 3<>/dev/tcp/127.0.0.1/{RUNTIME_PORT} && printf "%s\\n" "$1" >&3 && cat <&3'

ServerState = Literal["ready", "drain", "maint"]


def runtime(host: HostHandle, lb: str, command: str) -> str:
    """Send one runtime API command to LB container `lb` on `host`; returns its answer."""
    answer = host.run(
        f"HAProxy API of {lb}: {command.split()[0]}",
        lambda d: d.compose.execute(lb, ["bash", "-c", _TALK, "syrcad", command], tty=False),
    )
    return str(answer or "")


def set_state(host: HostHandle, lb: str, backend: str, server: str, state: ServerState) -> None:
    """READY takes traffic; DRAIN takes no new traffic, finishes what it has; MAINT takes none."""
    set_states(host, lb, backend, [server], state)


def set_states(
    host: HostHandle, lb: str, backend: str, servers: list[str], state: ServerState
) -> None:
    """The same for many servers in one round trip (the API takes `;`-separated commands)."""
    if servers:
        runtime(
            host,
            lb,
            "; ".join(f"set server {backend}/{server} state {state}" for server in servers),
        )


def stats(host: HostHandle, lb: str) -> list[dict[str, str]]:
    """`show stat` rows: pxname, svname, status, scur (current sessions), stot, ..."""
    text = runtime(host, lb, "show stat").lstrip("# ")
    return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]


_RELOAD = (
    f"exec 3<>/dev/tcp/127.0.0.1/{RUNTIME_PORT} && echo 'show servers state' >&3 "
    "&& cat <&3 > /var/lib/haproxy/server-state && kill -USR2 1"
)


def reload(host: HostHandle, lb: str) -> None:
    """Hitless reload: save server states (DRAIN, MAINT) for the new workers, then SIGUSR2 the
    master (PID 1). Listeners stay open; old workers finish their requests and exit."""
    host.run(f"reload {lb}", lambda d: d.compose.execute(lb, ["bash", "-c", _RELOAD], tty=False))
