"""Scale and rollout under continuous load: zero failed requests, no conversation loses an event."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syrcad.apply import facts
from syrcad.render.templates import data_root

from .conftest import LB, E2ECluster, syrcad
from .driver import Driver
from .sockets import SocketDriver

# Proven once, on the local layout: the swarm layout scales and rolls out under load on its own,
# and the three hosts' LB reloads and rolling frontends are exercised there by `up`, `secrets
# rotate` (test_secrets.py) and the HA tests.
pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]


def start_locust(url: str, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(data_root() / "loadtest" / "locustfile.py"),
            "--host",
            url,
            "--headless",
            "--users",
            "8",
            "--spawn-rate",
            "4",
            "--run-time",
            f"{seconds}s",
            "--only-summary",
            "--csv",
            str(out / "locust"),
            "--stop-timeout",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def steps_of(*args: str, hosts: str, dry_run: bool = True) -> list[dict[str, object]]:
    """The steps `syrcad ARGS` plans (--dry-run) or took (its --json report)."""
    done = syrcad(*args, "--hosts", hosts, "--json", *(["--dry-run"] if dry_run else []))
    steps = json.loads(done.stdout)["steps"]
    assert steps, done.stdout
    return list(steps)


def locust_totals(out: Path) -> tuple[int, int]:
    with (out / "locust_stats.csv").open(encoding="utf-8") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    return int(total["Request Count"]), int(total["Failure Count"])


def test_scale_and_rollout_under_load(cluster: E2ECluster, tmp_path: Path) -> None:
    hosts = str(cluster.hosts_file)
    driver = Driver(cluster.public, workers=3).start()
    sockets = SocketDriver(cluster.public, tracker=cluster.user_texts).start()
    locust = start_locust(cluster.public, tmp_path, seconds=3600)
    try:
        time.sleep(10)
        # The steps --dry-run prints are the steps the run takes.
        planned = steps_of("scale", "frontend=3", hosts=hosts)
        assert steps_of("scale", "frontend=3", hosts=hosts, dry_run=False) == planned
        for step in [("frontend=2",), ("action=3",), ("action=2",)]:
            done = syrcad("scale", *step, "--hosts", hosts)
            print(step, done.stdout.strip().splitlines()[-2:])
        # Every action server, then every frontend, replaced one at a time, as the runbook's
        # "After upgrading syrcad" does (the same model: training a new one here would add
        # minutes and nothing to the rollout; test_bots.py rolls out a new one under load).
        done = syrcad("rollout", "--service", "action", "--hosts", hosts)
        print("rollout --service action", done.stdout.strip().splitlines()[-2:])
        planned = steps_of("rollout", hosts=hosts)
        assert planned[-1]["action"] == "check-model"  # the run fails unless all share one model
        assert steps_of("rollout", hosts=hosts, dry_run=False) == planned
        time.sleep(5)
    finally:
        driver.stop()
        sockets.stop()
        locust.terminate()  # Locust writes its CSV on the way out
        locust.wait(timeout=120)
    requests_made, failed = locust_totals(tmp_path)
    assert requests_made > 200 and failed == 0, (
        f"{failed} of {requests_made} Locust requests failed"
    )
    assert driver.failures == []
    assert sum(len(m) for m in driver.sent.values()) > 100
    assert driver.lost_or_reordered(cluster.trackers()) == []
    assert_socket_conversations_went_on(cluster, sockets)
    plan = syrcad("plan", "--hosts", hosts).stdout
    assert "frontend-3" not in plan and "action-3" not in plan


def assert_socket_conversations_went_on(cluster: E2ECluster, sockets: SocketDriver) -> None:
    """Every replica a socket was stuck to was drained or replaced under it: each socket was cut
    and reconnected, its conversations went on from the shared tracker, and only a turn whose
    socket was cut while it waited may have lost its reply (Rasa saved it; the tracker shows it)."""
    assert sockets.errors == []
    for user in sockets.users:
        answered = [t for t in sockets.turns if t.transport == user.transport and t.answered]
        print(
            f"socket.io over {user.transport}: {len(answered)} turns answered, "
            f"{user.disconnects} cuts, {user.connects - 1} reconnects"
        )
        assert user.disconnects >= 1 and user.connects > user.disconnects, user
        assert len(answered) > 20
    unanswered = [t for t in sockets.turns if not t.answered]
    assert all(t.cut for t in unanswered), unanswered
    assert len(unanswered) <= sum(u.disconnects for u in sockets.users), unanswered
    sessions: dict[str, list[str]] = {}
    for turn in sockets.turns:
        sessions.setdefault(turn.session_id, []).append(turn.message)
    for session_id, messages in sessions.items():
        assert cluster.saved_user_texts(session_id, messages) == messages, session_id
    states = facts.lb_servers(
        cluster.address_of("lb-1"), LB["stats_port"], cluster.secrets.stats_password
    )
    socketio = {
        server: state for (backend, server), state in states.items() if backend == "socketio"
    }
    assert socketio == {"frontend-1": "UP", "frontend-2": "UP"}
