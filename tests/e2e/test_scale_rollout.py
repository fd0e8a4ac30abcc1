"""Scale and rollout under continuous load: zero failed requests, no conversation loses an event."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syrcad.render.templates import data_root

from .conftest import E2ECluster, syrcad
from .driver import Driver

pytestmark = pytest.mark.e2e


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


def locust_totals(out: Path) -> tuple[int, int]:
    with (out / "locust_stats.csv").open(encoding="utf-8") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    return int(total["Request Count"]), int(total["Failure Count"])


def test_scale_and_rollout_under_load(cluster: E2ECluster, tmp_path: Path) -> None:
    hosts = str(cluster.hosts_file)
    driver = Driver(cluster.public, workers=3).start()
    locust = start_locust(cluster.public, tmp_path, seconds=3600)
    try:
        time.sleep(10)
        steps = [("frontend=6",), ("frontend=2",), ("action=4",), ("action=2",)]
        for step in steps:
            done = syrcad("scale", *step, "--hosts", hosts)
            print(step, done.stdout.strip().splitlines()[-2:])
        syrcad("train", "--hosts", hosts)
        rolled = syrcad("rollout", "--hosts", hosts)
        assert "every frontend runs model" in rolled.stdout
        time.sleep(5)
    finally:
        driver.stop()
        locust.terminate()  # Locust writes its CSV on the way out
        locust.wait(timeout=120)
    requests_made, failed = locust_totals(tmp_path)
    assert requests_made > 200 and failed == 0, (
        f"{failed} of {requests_made} Locust requests failed"
    )
    assert driver.failures == []
    assert sum(len(m) for m in driver.sent.values()) > 100
    assert driver.lost_or_reordered(cluster.mongo()) == []
    plan = syrcad("plan", "--hosts", hosts).stdout
    assert "frontend-3" not in plan and "action-3" not in plan
