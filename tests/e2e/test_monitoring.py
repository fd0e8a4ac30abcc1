"""`monitoring: {prometheus: true}`: Prometheus scrapes both LBs and probes the stores, every
series of the shipped Grafana dashboard exists, and a stopped frontend fires the replica-DOWN
alert, which resolves once the replica is back (read through Prometheus's HTTP API)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import ROOT, E2ECluster, container
from .prometheus import all_targets_up, api, within

pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]

DASHBOARD = ROOT / "compose" / "prometheus" / "grafana-dashboard.json"
# HAProxy marks a replica DOWN after its failed checks; then a scrape, a rule evaluation (5 s
# each) and the rule's `for: 10s`.
FIRES_WITHIN_S = 60
# Back: Rasa loads its model, HAProxy's rising checks, a scrape and an evaluation.
RESOLVES_WITHIN_S = 240

DOWN_ALERTS = ("ReplicaDown", "BackendWithoutHealthyServer", "StoreUnreachable", "LbUnreachable")


def firing(cluster: E2ECluster, names: tuple[str, ...]) -> list[str]:
    return [
        a["labels"]["alertname"]
        for a in api(cluster, "alerts")["alerts"]
        if a["labels"]["alertname"] in names and a["state"] == "firing"
    ]


def replica_down(cluster: E2ECluster, server: str) -> list[dict[str, Any]]:
    return [
        a
        for a in api(cluster, "alerts")["alerts"]
        if a["labels"]["alertname"] == "ReplicaDown" and a["labels"].get("server") == server
    ]


def test_prometheus_scrapes_every_lb_and_store(cluster: E2ECluster) -> None:
    store = "postgres-1" if cluster.layout.tracker == "postgres" else "mongo-1"

    targets, took = within(60, lambda: all_targets_up(cluster), "every target up")
    print(f"\n{len(targets)} targets up after {took:.0f} s")
    scraped = {t["labels"].get("lb") or t["labels"].get("store") for t in targets}
    assert {"lb-1", "action-lb-1", store, "redis-1"} <= scraped
    # Nothing is down. (The 5xx and queue alerts may still see the fault tests' last minute.)
    _, settled = within(
        60,
        lambda: True if not firing(cluster, DOWN_ALERTS) else None,
        f"no {DOWN_ALERTS} alert firing: {firing(cluster, DOWN_ALERTS)}",
    )
    print(f"no alert of a component down ({settled:.0f} s)")

    # The dashboard shipped for Grafana draws series that exist.
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        for target in panel["targets"]:
            result = api(cluster, "query", query=target["expr"])["result"]
            assert result, f"no series for panel {panel['title']!r}: {target['expr']}"


def test_a_stopped_frontend_fires_replica_down_until_it_is_back(cluster: E2ECluster) -> None:
    engine = cluster.docker("frontend-1")
    engine.container.stop(container("frontend"))
    try:
        # One alert per backend the replica serves: the REST backend's and socket.io's are checked
        # on their own, so one may fire a scrape before the other.
        def firing_in_rest_backend() -> list[dict[str, Any]] | None:
            alerts = [a for a in replica_down(cluster, "frontend-1") if a["state"] == "firing"]
            return alerts if "frontends" in {a["labels"]["proxy"] for a in alerts} else None

        alerts, fired_s = within(
            FIRES_WITHIN_S,
            firing_in_rest_backend,
            "ReplicaDown for frontend-1 in backend frontends fired",
        )
        summaries = "; ".join(a["annotations"]["summary"] for a in alerts)
        print(f"\nReplicaDown fired {fired_s:.0f} s after frontend-1 stopped: {summaries}")
    finally:
        engine.container.start(container("frontend"))
    _, resolved_s = within(
        RESOLVES_WITHIN_S,
        lambda: True if not replica_down(cluster, "frontend-1") else None,
        "ReplicaDown for frontend-1 resolved",
    )
    print(f"resolved {resolved_s:.0f} s after frontend-1 started again")
