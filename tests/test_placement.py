from __future__ import annotations

from pathlib import Path

import pytest

from syrcad.config import Cluster, load
from syrcad.config.model import Tls
from syrcad.plan import place
from syrcad.plan.placement import spread

from .conftest import EXAMPLES


def cluster_with(frontends: int, actions: int = 2, hosts: int = 3) -> Cluster:
    return Cluster.model_validate(
        {
            "hosts": {
                **{
                    f"app{n}": {"address": f"10.0.0.{n}", "roles": ["frontend", "action", "lb"]}
                    for n in range(1, hosts + 1)
                },
                "store": {"address": "10.0.0.99", "roles": ["mongo", "redis"]},
            },
            "project": {"path": "/srv/bot"},
            "services": {"frontend": {"replicas": frontends}, "action": {"replicas": actions}},
        }
    )


def frontend_slots(cluster: Cluster) -> dict[str, tuple[str, int]]:
    return {c.name: (c.host, c.port("http").host_port) for c in place(cluster).of("frontend")}


def test_spread_is_round_robin_in_file_order() -> None:
    assert spread(5, ("a", "b", "c")) == [
        (1, "a", 0),
        (2, "b", 0),
        (3, "c", 0),
        (4, "a", 1),
        (5, "b", 1),
    ]


@pytest.mark.parametrize(("smaller", "larger"), [(1, 2), (2, 8), (3, 4), (7, 30)])
def test_raising_a_count_never_moves_a_replica(smaller: int, larger: int) -> None:
    before, after = frontend_slots(cluster_with(smaller)), frontend_slots(cluster_with(larger))
    assert {name: after[name] for name in before} == before


def test_lowering_a_count_removes_the_newest_first() -> None:
    assert sorted(frontend_slots(cluster_with(3)), key=lambda n: int(n.split("-")[1])) == [
        "frontend-1",
        "frontend-2",
        "frontend-3",
    ]
    assert set(frontend_slots(cluster_with(8))) - set(frontend_slots(cluster_with(3))) == {
        f"frontend-{n}" for n in range(4, 9)
    }


def test_ports_are_unique_per_host() -> None:
    placement = place(cluster_with(frontends=9, actions=6))
    for host in ("app1", "app2", "app3", "store"):
        ports = [p.host_port for c in placement.on(host) for p in c.ports]
        assert len(ports) == len(set(ports)), host


def test_replica_ports_count_up_from_the_base_on_each_host() -> None:
    assert frontend_slots(cluster_with(5)) == {
        "frontend-1": ("app1", 5005),
        "frontend-2": ("app2", 5005),
        "frontend-3": ("app3", 5005),
        "frontend-4": ("app1", 5006),
        "frontend-5": ("app2", 5006),
    }


def test_public_port_only_on_the_public_lb() -> None:
    placement = place(load(EXAMPLES / "hosts.yml").cluster)
    public = [(c.name, p.purpose) for c in placement.containers for p in c.ports if p.public]
    assert public == [("lb-1", "http")]


def test_example_plan(tmp_path: Path) -> None:
    placement = place(load(EXAMPLES / "hosts.yml").cluster)
    assert [(c.host, c.name) for c in placement.containers] == [
        ("store1", "mongo-1"),
        ("store1", "redis-1"),
        ("app1", "action-1"),
        ("app2", "action-2"),
        ("app1", "frontend-1"),
        ("app2", "frontend-2"),
        ("app1", "frontend-3"),
        ("app2", "frontend-4"),
        ("app1", "action-lb-1"),
        ("app1", "lb-1"),
    ]


def test_tls_port_is_public_on_the_lb() -> None:
    cluster = cluster_with(2)
    lb = cluster.services.lb.model_copy(update={"tls": Tls(certificate="x.pem", port=8443)})
    tls_cluster = cluster.model_copy(
        update={"services": cluster.services.model_copy(update={"lb": lb})}
    )
    ports = {
        (p.purpose, p.host_port, p.public) for c in place(tls_cluster).of("lb") for p in c.ports
    }
    assert ("https", 8443, True) in ports
