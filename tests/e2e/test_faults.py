"""Faults under load: killed replicas, restarted stores and load balancer; the perimeter."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests
from python_on_whales import DockerClient

from .conftest import LB, PORTS, STORES, E2ECluster, syrcad
from .driver import Driver

pytestmark = pytest.mark.e2e
docker = DockerClient()


def container(service: str) -> str:
    return f"e2e-{service}-1-1"  # compose's name for replica 1 of the cluster "e2e"


def crash(name: str) -> None:
    """kill -9 the container's main process, as a crash would (`docker kill` counts as a
    deliberate stop, after which Docker does not restart the container)."""
    os.kill(docker.container.inspect(name).state.pid, signal.SIGKILL)


def wait_until_all_up(cluster: E2ECluster, timeout: float = 240) -> float:
    """Seconds until every frontend and action server is UP in its LB again."""
    started = time.monotonic()
    time.sleep(3)  # let the LB notice the fault first
    while time.monotonic() - started < timeout:
        done = syrcad("status", "--json", "--hosts", str(cluster.hosts_file), check=False)
        if done.returncode == 0:
            rows = json.loads(done.stdout)["replicas"]
            if all(r["lb"] == "UP" for r in rows if r["service"] in ("frontend", "action")):
                return time.monotonic() - started
        time.sleep(2)
    raise AssertionError("replicas did not all come back UP")


def wait_serving(driver: Driver, since: float, timeout: float = 120) -> float:
    """Seconds from `since` until requests succeed again (five in a row after the last failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last_failure = max([w for w in driver.failed_at if w >= since], default=since)
        if driver.successes_since(last_failure) >= 5:
            return last_failure - since
        time.sleep(0.5)
    raise AssertionError(f"not serving again {timeout}s after the fault")


def test_faults_under_load(cluster: E2ECluster) -> None:
    driver = Driver(cluster.public, workers=4, think_s=0.1).start()
    figures = {}
    try:
        time.sleep(5)
        for service in ("frontend", "action"):
            moment = time.monotonic()
            crash(container(service))
            back = wait_until_all_up(cluster)
            figures[f"kill -9 {service}-1"] = (
                driver.failures_since(moment),
                f"back in LB after {back:.0f}s",
            )
        for store in ("redis", "mongo"):
            moment = time.monotonic()
            docker.restart(container(store))
            outage = wait_serving(driver, moment)
            figures[f"restart {store}"] = (
                driver.failures_since(moment),
                f"serving again after {outage:.1f}s",
            )
        moment = time.monotonic()
        docker.restart(container("lb"))
        outage = wait_serving(driver, moment)
        figures["restart lb"] = (
            driver.failures_since(moment),
            f"traffic flows again after {outage:.1f}s",
        )
    finally:
        driver.stop()
    print()
    for fault, (failed, note) in figures.items():
        print(f"{fault}: {failed} failed requests; {note}")
    assert figures["kill -9 frontend-1"][0] == 0
    assert figures["kill -9 action-1"][0] == 0
    # Redis, Mongo and the LB: errors only while down, and no frontend was restarted for it.
    restarts = {
        c.name: c.restart_count
        for c in docker.container.list(filters=[("label", "io.syrcad.service=frontend")])
        if c.name.startswith("e2e-")
    }
    assert restarts.get("e2e-frontend-2-1", 0) == 0


def test_perimeter(cluster: E2ECluster) -> None:
    """Only the public port answers on an address of this machine outside the cluster network."""
    outside = outside_address()

    def answers(port: int) -> bool:
        with socket.socket() as probe:
            probe.settimeout(2)
            return probe.connect_ex((outside, port)) == 0

    assert answers(LB["public_port"])
    internal = [
        LB["api_port"],
        LB["stats_port"],
        LB["action_stats_port"],
        LB["action_port"],
        PORTS["frontend"],
        PORTS["action"],
        STORES["tracker"]["port"],
        STORES["lock"]["port"],
    ]
    assert [port for port in internal if answers(port)] == []
    # On the public side only the channels, socket.io and health; Rasa's API is refused.
    assert (
        requests.get(
            f"http://{outside}:{LB['public_port']}/conversations/x/tracker", timeout=5
        ).status_code
        == 403
    )
    assert (
        requests.get(f"http://{outside}:{LB['public_port']}/health", timeout=5).status_code == 200
    )
    # Per-client rate limit (300 requests per 10 s by default): 429 with Retry-After beyond it.
    session = requests.Session()
    answers_seen = [
        session.get(f"http://{outside}:{LB['public_port']}/", timeout=5) for _ in range(310)
    ]
    refused = [r for r in answers_seen if r.status_code == 429]
    assert refused and refused[0].headers["Retry-After"] == "10"
    assert (
        requests.get(f"{cluster.public}/", timeout=5).status_code == 200
    )  # another client address
    big = requests.post(f"{cluster.public}/webhooks/rest/webhook", data=b"x" * 70_000, timeout=5)
    assert big.status_code == 413


def outside_address() -> str:
    """An address of this machine that is not the cluster's (127.0.0.1 in the e2e cluster)."""
    listing = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    )
    addresses = [line.split()[3].split("/")[0] for line in listing.stdout.splitlines()]
    return next(a for a in addresses if not a.startswith("127."))
