"""`syrcad top`: what it shows of a cluster under a little traffic, once as JSON for scripts,
and live until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import E2ECluster, new_sender, syrcad
from .driver import TURNS

pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]


def test_top_once_as_json(cluster: E2ECluster) -> None:
    booking, asks_cuisine = TURNS[0]
    for _ in range(20):
        assert cluster.texts(new_sender(), booking)[0].startswith(asks_cuisine)
    # One conversation over its rate limit (services.lb.rate_limit.per_conversation).
    limit = cluster.deployment.cluster.services.lb.rate_limit.per_conversation
    started = time.monotonic()
    answers = [r.status_code for r in cluster.flood(new_sender(), booking, limit + 5)]
    print(
        f"\none sender's {len(answers)} requests at once: {answers.count(429)} refused, {time.monotonic() - started:.1f} s"
    )
    assert answers.count(429) >= 5 and set(answers) <= {200, 429}, answers

    shown = syrcad("top", "--once", "--json", "--window", "60", "--hosts", str(cluster.hosts_file))
    snap = json.loads(shown.stdout)
    print(f"\n{json.dumps(snap, indent=1)}")
    replicas = {r["replica"]: r for r in snap["replicas"]}
    placed = {c.name for c in cluster.deployment.placement.containers}
    assert {"frontend-1", "frontend-2", "action-1", "action-2"} <= set(replicas) <= placed
    for replica in replicas.values():
        assert (replica["container"], replica["lb"]) == ("running", "UP"), replica
    frontends = [r for r in replicas.values() if r["service"] == "frontend"]
    assert len({r["model"] for r in frontends}) == 1 and frontends[0]["model"]
    served = sum(r["requests"] for r in frontends)
    assert served >= 20 + answers.count(200), served
    timed = [r for r in frontends if r["p50_ms"] is not None]
    assert timed and all(0 <= r["p50_ms"] <= r["p99_ms"] for r in timed), timed
    # The window also holds the tests before this one, which may have had 5xx answers.
    assert all(r["errors"] >= 0 for r in replicas.values())
    lbs = {lb["lb"]: lb for lb in snap["lbs"]}
    assert set(lbs) == {"lb-1", "action-lb-1"}
    assert lbs["lb-1"]["limited_clients"] >= 1
    # Counted from the LB's log, which HAProxy writes without ever blocking on it: on a loaded
    # machine it may drop a line (4 of these 5 refusals were in one CI run's log).
    print(f"429s: {answers.count(429)} answered, {lbs['lb-1']['limited']} in top")
    assert lbs["lb-1"]["limited"] >= 1
    stores = {s["store"]: s for s in snap["stores"]}
    tracker = "postgres-1" if cluster.layout.tracker == "postgres" else "mongo-1"
    assert set(stores) == {tracker, "redis-1"}
    assert all(s["reachable"] and s["rtt_ms"] is not None for s in stores.values())


def test_top_live_until_ctrl_c(cluster: E2ECluster) -> None:
    live = subprocess.Popen(
        [sys.executable, "-m", "syrcad.cli", "top", "--interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SYRCAD_HOSTS": str(cluster.hosts_file), "COLUMNS": "200"},
    )
    time.sleep(6)
    live.send_signal(signal.SIGINT)
    out, err = live.communicate(timeout=30)
    assert live.returncode == 0, err
    assert "frontend-1" in out and "load balancers" in out and "Traceback" not in err
