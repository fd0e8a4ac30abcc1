"""Rasa's stock RedisLockStore vs syrcad's atomic one, under same-sender races over two frontends;
the atomic one's lease when a frontend dies holding a sender."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from python_on_whales import DockerClient

from .conftest import ROOT, STORES, E2ECluster, syrcad
from .race import race

# The three-host layout replicates Redis, which the stock store cannot follow (test_ha.py races
# over its failover instead); these need the one Redis of the local layout.
pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]


def use_lock_store(hosts_file: Path, atomic: bool) -> None:
    document = yaml.safe_load(hosts_file.read_text(encoding="utf-8"))
    document["stores"]["lock"]["atomic"] = atomic
    hosts_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    done = syrcad("up", "--hosts", str(hosts_file))
    # endpoints.yml is a mounted file: compose keeps the frontends, syrcad restarts them.
    assert "restarted: frontend-1, frontend-2" in done.stdout, done.stdout


def test_stock_lock_store_then_atomic_one(cluster: E2ECluster, tmp_path: Path) -> None:
    use_lock_store(cluster.hosts_file, atomic=False)
    try:
        stock = race(cluster.frontend_urls(), cluster.trackers())
        print(f"\nstock RedisLockStore: {stock}")
    finally:
        use_lock_store(cluster.hosts_file, atomic=True)
    atomic = race(cluster.frontend_urls(), cluster.trackers())
    print(f"syrcad AtomicRedisLockStore: {atomic}")
    assert atomic.messages >= 1000
    assert atomic.errors == []
    assert (atomic.lost, atomic.duplicated, atomic.reordered) == (0, 0, 0), str(atomic)


def test_a_dead_holder_blocks_its_sender_for_one_lease(cluster: E2ECluster) -> None:
    """The lock store module, in the Rasa image, against the cluster's Redis (tests/e2e/
    lock_lease_check.py, lease shortened to 3 s): a sender whose frontend died mid-turn is
    served again after the lease, while a live holder keeps its lock past the lease."""
    output = DockerClient().run(
        cluster.deployment.cluster.images.rasa,
        [
            "/check/lock_lease_check.py",
            cluster.address_of("redis-1"),
            str(STORES["lock"]["port"]),
            cluster.secrets.redis_password,
        ],
        entrypoint="python",
        envs={"PYTHONPATH": "/lock_store"},
        volumes=[
            (ROOT / "compose" / "rasa", "/lock_store", "ro"),
            (Path(__file__).parent, "/check", "ro"),
        ],
        networks=["host"],
        remove=True,
    )
    waited = json.loads(str(output).splitlines()[-1])
    print(f"\nwaited behind a holder: {waited}")
    lease = waited["lease_s"]
    assert lease - 0.5 <= waited["dead"] <= lease + 1.5
    assert waited["live_8s"] >= 7.0  # held past the lease: renewed
    assert 4.0 <= waited["live_8s_lifetime_5s"] <= 6.5  # the lock lifetime still ends a hold
