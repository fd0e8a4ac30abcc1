"""Prometheus's HTTP API, as the monitoring tests read it (test_monitoring.py, test_swarm.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from .conftest import PROMETHEUS_PORT, E2ECluster

T = TypeVar("T")


def api(cluster: E2ECluster, path: str, **params: str) -> Any:
    url = f"http://{cluster.address_of('prometheus-1')}:{PROMETHEUS_PORT}/api/v1/{path}"
    answer = requests.get(url, params=params, timeout=10)
    answer.raise_for_status()
    return answer.json()["data"]


def within(seconds: float, probe: Callable[[], T | None], what: str) -> tuple[T, float]:
    started = time.monotonic()
    while (found := probe()) is None:
        assert time.monotonic() - started < seconds, f"not within {seconds} s: {what}"
        time.sleep(1)
    return found, time.monotonic() - started


def all_targets_up(cluster: E2ECluster) -> list[dict[str, Any]] | None:
    targets: list[dict[str, Any]] = api(cluster, "targets")["activeTargets"]
    return targets if targets and all(t["health"] == "up" for t in targets) else None
