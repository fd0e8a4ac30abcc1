"""syrcad's atomic lock store under same-sender races over two frontends, and its lease when a
frontend dies holding a sender."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from python_on_whales import DockerClient

from .conftest import ROOT, STORES, E2ECluster
from .race import race

# The three-host layout replicates Redis (test_ha.py races over its failover instead); these
# need the one Redis of the local layout.
pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]


def test_atomic_lock_store_under_same_sender_races(cluster: E2ECluster) -> None:
    """syrcad's lock store (the default): one sender's messages reaching two frontends at once
    are all recorded, once each, in order. (Rasa's stock store loses some: rasa issue 9213.)"""
    atomic = race(cluster.frontend_urls(), cluster.trackers())
    print(f"\nsyrcad AtomicRedisLockStore: {atomic}")
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
