"""What the fault tests do to the cluster, and how they read what came of it."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from .. import testhosts
from ..conftest import ROOT
from .conftest import E2ECluster, container, syrcad
from .driver import Driver


@contextmanager
def link_cut(host: testhosts.TestHost) -> Iterator[float]:
    """The test host's link down for the block (a pulled cable); yields when it went down."""
    cut = time.monotonic()
    testhosts.cut(host)
    try:
        yield cut
    finally:
        testhosts.reconnect(host)


def crash(cluster: E2ECluster, service: str) -> None:
    """kill -9 the container's main process, as a crash would (`docker kill` counts as a
    deliberate stop, after which Docker does not restart the container). The test hosts
    share this machine's process table."""
    docker = cluster.docker(f"{service}-1")
    os.kill(docker.container.inspect(container(service)).state.pid, signal.SIGKILL)


def restart(cluster: E2ECluster, service: str) -> None:
    cluster.docker(f"{service}-1").restart(container(service))


def lb_states(cluster: E2ECluster) -> dict[str, str] | None:
    """Container → state in its LB, for frontends and action servers (None if status failed)."""
    done = syrcad("status", "--json", "--hosts", str(cluster.hosts_file), check=False)
    if done.returncode:
        return None
    rows = json.loads(done.stdout)["replicas"]
    return {r["container"]: r["lb"] for r in rows if r["service"] in ("frontend", "action")}


# A request's termination state and retries in the public LB's log (haproxy/public.cfg.j2).
LB_OUTCOME = re.compile(r" (?P<state>\S{4}) \d+/\d+/\d+/\d+/(?P<retries>\+?\d+) ")
# The message's id, captured in the public LB's log line (%hr).
LB_MESSAGE_ID = re.compile(r" \{([A-Za-z0-9._:-]+)\} ")


def lb_log(cluster: E2ECluster, lb: str, since: datetime) -> list[str]:
    """The lines logged since `since` by replica 1 of `lb` ("lb" or "action-lb")."""
    log = cluster.docker(f"{lb}-1").container.logs(container(lb), since=since)
    assert isinstance(log, str)
    return log.splitlines()


def frontend_trouble(cluster: E2ECluster, since: datetime) -> list[str]:
    """Warnings and errors the frontends logged since `since`. Shown when a check fails."""
    lines = []
    for replica in ("frontend-1", "frontend-2"):
        log = cluster.docker(replica).container.logs(f"e2e-{replica}-1", since=since)
        assert isinstance(log, str)
        lines += [
            f"{replica}: {line}"
            for line in log.splitlines()
            if " ERROR " in line or " WARNING " in line or "Error" in line
        ]
    return lines[-40:]


def lb_trouble(cluster: E2ECluster, since: datetime) -> list[str]:
    """The public LB's log since `since`, less the requests answered at the first attempt:
    retried and cut-off requests, replicas going DOWN and UP. Shown when a check fails."""
    return [
        line
        for line in lb_log(cluster, "lb", since)
        if not (outcome := LB_OUTCOME.search(line))
        or (outcome["state"], outcome["retries"]) != ("----", "0")
    ]


def sent_again_by_lb(
    cluster: E2ECluster, since: datetime, message_ids: set[str] | None = None
) -> list[str]:
    """The public LB's lines since `since` of messages (of these ids, which it logs, if given)
    that it sent to more than one replica: a connection that failed, or a replica lost under
    them."""
    lines = []
    for line in lb_log(cluster, "lb", since):
        logged_id = LB_MESSAGE_ID.search(line)
        outcome = LB_OUTCOME.search(line)
        if not (logged_id and outcome and outcome["retries"] != "0"):
            continue
        if message_ids is None or logged_id[1] in message_ids:
            lines.append(line)
    return lines


def lock_lease_s() -> float:
    """How long a killed frontend's hold on a conversation outlives it: its lock store ticket's
    lease (compose/rasa/syrcad_lock_store.py)."""
    source = (ROOT / "compose" / "rasa" / "syrcad_lock_store.py").read_text(encoding="utf-8")
    lease = re.search(r"^LEASE_S = ([\d.]+)$", source, re.M)
    assert lease, "syrcad_lock_store.py no longer sets LEASE_S"
    return float(lease[1])


def action_calls_cut_off(cluster: E2ECluster, since: datetime, server: str) -> list[str]:
    """The action LB's requests since `since` cut off with `server`: aborted by it (termination
    state S...) or, once the first abort has marked it DOWN, killed by the LB (K..., its
    on-marked-down shutdown-sessions); which of the two a call gets is a race."""
    return [
        line
        for line in lb_log(cluster, "action-lb", since)
        if f" action_servers/{server} " in line
        and (outcome := LB_OUTCOME.search(line))
        and outcome["state"][0] in "SK"
    ]


def wait_until_back_up(cluster: E2ECluster, crashed: str, timeout: float = 240) -> float:
    """Seconds until every replica is UP in its LB again, counted once the LB has seen `crashed`
    DOWN, or after 15 s (well past the checks' fall × inter) for a replica that restarted before
    the LB noticed."""
    started = time.monotonic()
    seen_down = False
    while (elapsed := time.monotonic() - started) < timeout:
        states = lb_states(cluster)
        if states is not None:
            seen_down = seen_down or states.get(crashed) == "DOWN"
            if (seen_down or elapsed > 15) and all(s == "UP" for s in states.values()):
                return elapsed
        time.sleep(1)
    raise AssertionError(f"replicas did not all come back UP (LB saw {crashed} DOWN: {seen_down})")


def wait_serving(driver: Driver, since: float, timeout: float = 120) -> float:
    """Seconds from `since` until requests succeed again (five in a row after the last failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last_failure = max(
            [f.sent_at for f in driver.failures if f.sent_at >= since], default=since
        )
        if driver.successes_since(last_failure) >= 5:
            return last_failure - since
        time.sleep(0.5)
    raise AssertionError(f"not serving again {timeout}s after the fault")
