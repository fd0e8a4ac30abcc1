"""Faults under load: killed replicas, restarted stores and load balancer; the perimeter."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.parse
from datetime import datetime

import pytest
import requests

from .conftest import LB, PORTS, STORES, E2ECluster
from .driver import Driver
from .faults import frontend_trouble, lb_trouble, restart, wait_serving

pytestmark = pytest.mark.e2e


# How long after a restart the last failed request may come. A store is back within a second
# (measured 0.0-0.2 s); a restarted LB serves once its checks see the frontends rise again
# (2 checks 2 s apart) unless the saved server states carry over (measured 0.2-7.3 s).
STORE_OUTAGE_S = 15
LB_OUTAGE_S = 20
HONEST_503 = {"store_unavailable", "no_replica"}  # syrcad_turns.py, haproxy/_macros.cfg.j2


# The three hosts' stores and LBs fail over instead (test_ha.py): a killed Redis primary, a cut
# store host, a cut LB host.
@pytest.mark.local_layout
def test_store_and_lb_restarts_under_load(cluster: E2ECluster) -> None:
    """Redis, Mongo and the public LB restarted in turn under load: errors only while one is
    down, each honest (a 503 from the frontends, never a 200 without the bot's reply)."""
    started = datetime.now()
    driver = Driver(cluster.public, workers=4, think_s=0.1).start()
    faults: list[tuple[str, float, str]] = []  # (fault, when, how long until back)
    outages: dict[str, float] = {}  # from the restart until requests succeed again
    try:
        time.sleep(5)
        for store in ("redis", "mongo"):
            moment = time.monotonic()
            restart(cluster, store)
            outages[store] = wait_serving(driver, moment)
            note = f"serving again after {outages[store]:.1f}s"
            faults.append((f"restart {store}", moment, note))
        moment = time.monotonic()
        restart(cluster, "lb")
        outages["lb"] = wait_serving(driver, moment)
        note = f"traffic flows again after {outages['lb']:.1f}s"
        faults.append(("restart lb", moment, note))
    finally:
        driver.stop()  # waits for requests still under way: they count too
    ends = [when for _, when, _ in faults[1:]] + [time.monotonic()]
    print()
    for (fault, when, note), end in zip(faults, ends, strict=True):
        failed, slowest = driver.during(when, end)
        print(f"{fault}: {len(failed)} failed requests, slowest reply {slowest:.1f}s; {note}")
    # Redis, Mongo and the LB: errors only while down (the last one within the bound after the
    # restart, every request after it served), and no frontend was restarted for it.
    assert outages["redis"] < STORE_OUTAGE_S and outages["mongo"] < STORE_OUTAGE_S, outages
    assert outages["lb"] < LB_OUTAGE_S, outages
    restarts = {c.name: c.restart_count for c in cluster.containers("frontend")}
    assert restarts.get("e2e-frontend-2-1", 0) == 0
    # While a store was down, the frontends said so with a 503 that asks to send again later;
    # while the LB restarted, it refused connections or had no replica UP yet (its own 503).
    lies = [e for e in driver.exchanges if e.empty_200]
    assert lies == [], (lies[:5], frontend_trouble(cluster, started), lb_trouble(cluster, started))
    unexplained = [
        f
        for f in driver.failures
        if f.status is not None
        and not (f.status == 503 and f.failure and f.failure["error"] in HONEST_503)
    ]
    assert unexplained == [], unexplained[:5]
    assert driver.repeated_or_reordered(cluster.trackers()) == []


def test_perimeter(cluster: E2ECluster) -> None:
    """Only the public port answers on each host's address outside the cluster network."""

    def answers(replica: str, port: int) -> bool:
        with socket.socket() as probe:
            probe.settimeout(2)
            return probe.connect_ex((cluster.outside_of(replica), port)) == 0

    assert answers("lb-1", LB["public_port"])
    internal = [
        ("lb-1", LB["api_port"]),
        ("lb-1", LB["stats_port"]),
        ("action-lb-1", LB["action_stats_port"]),
        ("action-lb-1", LB["action_port"]),
        ("frontend-1", PORTS["frontend"]),
        ("action-1", PORTS["action"]),
        ("mongo-1", STORES["tracker"]["port"]),
        ("redis-1", STORES["lock"]["port"]),
    ]
    assert [(replica, port) for replica, port in internal if answers(replica, port)] == []
    outside = cluster.outside_of("lb-1")
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
    assert another_client(cluster, "GET", "/") == 200
    assert another_client(cluster, "POST", "/webhooks/rest/webhook", b"x" * 70_000) == 413


def another_client(cluster: E2ECluster, method: str, path: str, body: bytes | None = None) -> int:
    """A request through the public LB from the layout's second source address: another client."""
    public = urllib.parse.urlsplit(cluster.public)
    connection = http.client.HTTPConnection(
        public.hostname or "",
        public.port,
        timeout=5,
        source_address=(cluster.layout.second_client, 0),
    )
    try:
        connection.request(method, path, body)
        return connection.getresponse().status
    finally:
        connection.close()
