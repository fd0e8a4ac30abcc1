"""High availability on the three test hosts (hosts layout): the lock store's Redis replicated
with Sentinels on node1 (the primary) and node3, and a cut of the store host.

Each fault comes under load, and each test asserts the bound it promises and prints the figure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from syrcad.plan import readiness

from .. import testhosts
from .conftest import STORES, E2ECluster, container
from .driver import Driver
from .race import RaceResult, race

pytestmark = [pytest.mark.e2e, pytest.mark.hosts_layout]

PRIMARY_NAME = "syrcad"  # stores.lock.primary_name's default
# After the Sentinels agree the primary is lost, the promotion and the frontends' reconnection.
FAILOVER_SLACK_S = 5.0


def sentinel(cluster: E2ECluster, name: str) -> redis.Redis:
    return redis.Redis(
        host=cluster.address_of(name), port=STORES["lock"]["sentinel_port"], socket_timeout=5
    )


def primary(cluster: E2ECluster, asking: str = "sentinel-2") -> str:
    """The Redis a Sentinel names the primary: redis-1 or redis-2."""
    address, port = sentinel(cluster, asking).sentinel_get_master_addr_by_name(PRIMARY_NAME)
    assert port == STORES["lock"]["port"]
    return next(r for r in ("redis-1", "redis-2") if cluster.address_of(r) == address)


def member(cluster: E2ECluster, name: str) -> Any:
    return redis.Redis(
        host=cluster.address_of(name),
        port=STORES["lock"]["port"],
        password=cluster.secrets.redis_password,
        socket_timeout=5,
    )


def wait_until(check: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic()
        except (redis.RedisError, StopIteration):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_the_lock_store_follows_a_failover_of_the_redis_primary(cluster: E2ECluster) -> None:
    """Same-sender races over both frontends while the Redis primary is killed: the Sentinels
    promote the replica, the lock store follows; messages are refused only during the failover,
    and no tracker loses, repeats or reorders a message."""
    assert primary(cluster) == "redis-1"
    engine = cluster.docker("redis-1")
    results: list[RaceResult] = []
    racer = threading.Thread(
        target=lambda: results.append(
            race(cluster.frontend_urls(), cluster.trackers(), senders=40, rounds=15, parallel=6)
        )
    )
    racer.start()
    try:
        time.sleep(5)
        killed = time.monotonic()
        engine.kill(container("redis"))  # through Docker: it stays down, as a lost host's would
        promoted = wait_until(lambda: primary(cluster) == "redis-2", 60, "redis-2 promoted")
        racer.join(timeout=900)
    finally:
        engine.start(container("redis"))
    # The old primary returns as a replica of the new one (the Sentinels reconfigure it).
    wait_until(
        lambda: member(cluster, "redis-1").info("replication")["role"] == "slave", 60, "rejoined"
    )
    (result,) = results
    settled = promoted + FAILOVER_SLACK_S
    outside = [e for e in result.errors if not killed <= e.at <= settled]
    window = max((e.at for e in result.errors), default=killed) - killed
    print(
        f"\nRedis primary killed: redis-2 promoted after {promoted - killed:.1f}s; {result}; "
        f"refusals ended {window:.1f}s after the kill"
    )
    assert result.messages >= 1000
    assert (result.lost, result.duplicated, result.reordered) == (0, 0, 0), str(result)
    assert result.recorded_refused == 0, str(result)
    assert promoted - killed < readiness.REDIS_PRIMARY_DOWN_AFTER_S + 10
    assert outside == [], outside[:5]


def test_a_store_host_cut_is_answered_with_503s_and_served_again_after(
    cluster: E2ECluster,
) -> None:
    """node3 (Mongo, a Redis, a Sentinel) loses its link for 20 s under load: every message
    meanwhile gets a 503 with Retry-After, never a 200 without its reply; nothing half-written
    stays in a tracker; within 5 s of the link's return messages are served again."""
    assert cluster.layout.test_hosts is not None
    node3 = cluster.layout.test_hosts.by_name("node3")
    driver = Driver(cluster.public, workers=4, think_s=0.1).start()
    try:
        time.sleep(5)
        cut = time.monotonic()
        testhosts.cut(node3)
        try:
            time.sleep(20)
        finally:
            testhosts.reconnect(node3)
        back = time.monotonic()
        served_again = wait_until(lambda: driver.successes_since(back) > 0, 60, "served again")
        time.sleep(10)
    finally:
        driver.stop()
    during = [e for e in driver.failures if cut <= e.sent_at + e.took_s <= served_again]
    errors = sorted({f"{e.status} {(e.failure or {}).get('error', e.error)}" for e in during})
    print(
        f"\nstore host cut for {back - cut:.0f}s: {len(during)} messages refused ({errors}); "
        f"served again {served_again - back:.1f}s after the link returned"
    )
    assert during, "the cut refused nothing: it did not happen"
    assert not any(e.empty_200 for e in driver.exchanges)
    assert all(e.status == 503 and e.retry_after_s > 0 for e in during), during[:5]
    assert all((e.failure or {}).get("error") == "store_unavailable" for e in during), during[:5]
    assert served_again - back < 5 + readiness.STORE_CONNECT_TIMEOUT_S
    assert [e for e in driver.failures if e.sent_at > served_again] == []
    trackers = cluster.trackers()
    assert driver.repeated_or_reordered(trackers) == []
    broken = {f.sender for f in driver.failures}
    whole = [p for p in driver.lost_or_reordered(trackers) if p.split(":")[0] not in broken]
    assert whole == [], whole[:5]
