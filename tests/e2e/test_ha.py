"""High availability on the three test hosts (hosts layout): the LB hosts node1 and node2 on
one virtual address, Redis replicated with Sentinels on all three (node3's the primary), and a
cut of the store host (node3: Mongo, the Redis primary).

Each fault comes under load; each test asserts the bound it promises and prints the figure.
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
from .driver import Driver, Prober
from .faults import link_cut
from .race import RaceResult, race

pytestmark = [pytest.mark.e2e, pytest.mark.hosts_layout]

PRIMARY_NAME = "syrcad"  # stores.lock.primary_name's default
REDIS = ("redis-1", "redis-2", "redis-3")
# After the Sentinels agree the primary is lost: the promotion, the frontends' reconnection.
FAILOVER_SLACK_S = 5.0


def sentinels(cluster: E2ECluster) -> list[redis.Redis]:
    return [
        redis.Redis(
            host=cluster.address_of(f"sentinel-{n}"),
            port=STORES["lock"]["sentinel_port"],
            socket_timeout=2,
            decode_responses=True,
        )
        for n in (1, 2, 3)
    ]


def primary(cluster: E2ECluster) -> str:
    """The Redis that the Sentinels a test can reach name the primary (they agree)."""
    named = set()
    for sentinel in sentinels(cluster):
        try:
            named.add(tuple(sentinel.sentinel_get_master_addr_by_name(PRIMARY_NAME)))
        except redis.ConnectionError:
            continue  # on a host that is cut off
    assert len(named) == 1, named
    ((address, port),) = named
    assert int(port) == STORES["lock"]["port"]
    return next(r for r in REDIS if cluster.address_of(r) == address)


def member(cluster: E2ECluster, name: str) -> Any:
    return redis.Redis(
        host=cluster.address_of(name),
        port=STORES["lock"]["port"],
        password=cluster.secrets.redis_password,
        socket_timeout=5,
        decode_responses=True,
    )


def wait_until(check: Any, timeout: float, what: str) -> float:
    """Poll `check` until it is true; when that was."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic()
        except (redis.RedisError, AssertionError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def promote(cluster: E2ECluster, wanted: str) -> None:
    """Make `wanted` the primary again, as an operator would: the other replicas may not be
    promoted (replica-priority 0) while a Sentinel fails the primary over, then may again."""
    current = primary(cluster)
    if current == wanted:
        return
    others = [r for r in REDIS if r not in (wanted, current)]
    for name in others:
        member(cluster, name).config_set("replica-priority", 0)
    try:
        wait_until(
            # No link status yet while the Sentinels have not turned the old primary into a
            # replica of the new one.
            lambda: member(cluster, wanted).info("replication").get("master_link_status") == "up",
            60,
            f"{wanted} in sync",
        )
        sentinels(cluster)[0].execute_command("SENTINEL", "FAILOVER", PRIMARY_NAME)
        wait_until(lambda: primary(cluster) == wanted, 60, f"{wanted} promoted")
    finally:
        for name in others:
            member(cluster, name).config_set("replica-priority", 100)


def holds_virtual_address(host: testhosts.TestHost) -> bool:
    shown = testhosts.sh("ip", "-n", host.netns, "-o", "addr", "show", "dev", "eth0", quiet=True)
    return f" {testhosts.VIRTUAL_ADDRESS}/" in shown.stdout


def test_cutting_the_active_lb_host_moves_the_virtual_address(cluster: E2ECluster) -> None:
    """node1 holds the virtual address; its link is cut under load: node2 takes the address
    over and traffic flows again within 5 s; the requests that fail are at most those that
    were under way on node1 at the cut."""
    assert cluster.layout.test_hosts is not None
    node1, node2 = (cluster.layout.test_hosts.by_name(n) for n in ("node1", "node2"))
    assert holds_virtual_address(node1) and not holds_virtual_address(node2)
    driver = Driver(cluster.public, workers=3, think_s=0.2).start()
    prober = Prober(cluster.public, every_s=0.5, timeout_s=10).start()
    try:
        time.sleep(5)
        with link_cut(node1) as cut:
            taken_over = wait_until(lambda: holds_virtual_address(node2), 30, "node2 took over")
            time.sleep(20)
        back = time.monotonic()
        time.sleep(15)
    finally:
        prober.stop()
        driver.stop()
    flows_again = prober.first_answer_after(cut)
    # What the cut caught: requests under way from the cut until node2 held the address.
    failed_at_cut, _ = driver.during(cut, taken_over)
    caught = driver.under_way(cut, taken_over)
    after = [e for e in driver.failures if e.sent_at > taken_over]
    print(
        f"\nactive LB host cut: node2 held the address {taken_over - cut:.1f}s after the cut, "
        f"traffic flowed again after {flows_again:.1f}s; {len(failed_at_cut)} requests failed of "
        f"{caught} under way then; {len(after)} failed after"
    )
    for e in driver.failures:
        print(f"  {e.sent_at - cut:.1f}s {e.message!r}: {e.status} {e.failure or e.error}")
    assert flows_again < 5, flows_again
    assert len(failed_at_cut) <= caught, failed_at_cut
    assert all(e.cut_off for e in after), after  # a replica on node1, cut off: honest and fast
    assert not any(e.empty_200 for e in driver.exchanges)
    assert driver.successes_since(back + 10) > 0
    assert driver.repeated_or_reordered(cluster.trackers()) == []


def test_the_lock_store_follows_a_failover_of_the_redis_primary(cluster: E2ECluster) -> None:
    """Same-sender races over both frontends while the Redis primary is killed: the Sentinels
    promote a replica, the lock store follows; messages are refused only during the failover,
    and no tracker loses, repeats or reorders a message."""
    assert primary(cluster) == "redis-1"
    engine = cluster.docker("redis-1")
    results: list[RaceResult] = []
    promoted_at: list[float] = []

    def keep_racing() -> None:
        """Races, one after another, until one has run wholly after the promotion."""
        while not (promoted_at and results and results[-1].started > promoted_at[0]):
            results.append(
                race(cluster.frontend_urls(), cluster.trackers(), senders=12, rounds=8, parallel=6)
            )

    racer = threading.Thread(target=keep_racing)
    racer.start()
    try:
        time.sleep(5)
        killed = time.monotonic()
        engine.kill(container("redis"))  # through Docker: it stays down, as a lost host's would
        promoted = wait_until(lambda: primary(cluster) != "redis-1", 60, "a replica promoted")
        promoted_at.append(promoted)
        racer.join(timeout=900)
    finally:
        engine.start(container("redis"))
    new_primary = primary(cluster)
    # The old primary returns as a replica of the new one (the Sentinels reconfigure it); then
    # it is made the primary again, for the tests after this one.
    wait_until(lambda: member(cluster, "redis-1").info("replication")["role"] == "slave", 60, "")
    promote(cluster, "redis-1")
    result = RaceResult()
    for each in results:
        result.add(each)
    after = results[-1]
    settled = promoted + FAILOVER_SLACK_S
    outside = [e for e in result.errors if not killed <= e.at <= settled]
    window = max((e.at for e in result.errors), default=killed) - killed
    print(
        f"\nRedis primary killed: {new_primary} promoted after {promoted - killed:.1f}s; "
        f"{len(results)} races, {result}; refusals ended {window:.1f}s after the kill; "
        f"the race after the promotion: {after}"
    )
    # The kill must land on a race under way; how many races that takes depends on timing.
    spans = [(round(each.started - killed, 1), round(each.ended - killed, 1)) for each in results]
    assert any(start < 0 < end for start, end in spans), f"races relative to the kill: {spans}"
    assert after.errors == [] and after.messages > 0, str(after)
    assert (result.lost, result.duplicated, result.reordered) == (0, 0, 0), str(result)
    assert result.recorded_refused == 0, str(result)
    assert promoted - killed < readiness.REDIS_PRIMARY_DOWN_AFTER_S + 10
    assert outside == [], outside[:5]


def test_a_store_host_cut_is_answered_with_503s_and_served_again_after(
    cluster: E2ECluster,
) -> None:
    """node3 (Mongo, the Redis primary, a Sentinel) loses its link for 20 s under load: every
    message sent meanwhile gets a 503 with Retry-After, never a 200 without its reply, nor a
    late 200; those sent once the first store calls into the cut have timed out (each frontend
    process's breaker opens, syrcad_store_breaker.py) get it at once; nothing half-written stays
    in a tracker; messages are served again within 5 s of the link's return (the lock store
    meanwhile fails over to another Redis)."""
    assert cluster.layout.test_hosts is not None
    node3 = cluster.layout.test_hosts.by_name("node3")
    # Paced below the LB's per-address rate limit, which this machine's clients share: refusals
    # take milliseconds once the breakers are open, and the load is at full speed again after.
    driver = Driver(cluster.public, workers=4, think_s=0.2).start()
    prober = Prober(cluster.public, timeout_s=15).start()
    try:
        time.sleep(5)
        with link_cut(node3) as cut:
            time.sleep(20)
        back = time.monotonic()
        time.sleep(15)
    finally:
        prober.stop()
        driver.stop()
    served_again = prober.first_answer_after(back)
    during = [e for e in driver.failures if cut <= e.sent_at + e.took_s <= back + served_again]
    errors = sorted({f"{e.status} {(e.failure or {}).get('error', e.error)}" for e in during})
    # A store call sent into the cut fails after the store's timeouts; the breakers open then.
    breakers_open = cut + readiness.STORE_REPLY_TIMEOUT_S + readiness.STORE_CONNECT_TIMEOUT_S
    sent_in_cut = [e for e in prober.exchanges if cut + 1 < e.sent_at < back]
    sent_once_open = [e for e in sent_in_cut if e.sent_at > breakers_open]
    print(
        f"\nstore host cut for {back - cut:.0f}s: {len(during)} of the load's messages refused "
        f"({errors}); {len(sent_in_cut)} probes sent in the cut, refused after at most "
        f"{max(e.took_s for e in sent_in_cut):.1f}s, after at most "
        f"{max((e.took_s for e in sent_once_open), default=0):.2f}s once the breakers were open; "
        f"served again {served_again:.1f}s after the link returned"
    )
    after_return = [e for e in prober.exchanges if e.sent_at > back]
    outcomes = sorted(
        {f"{e.status} {(e.failure or {}).get('error', e.error)}" for e in after_return if e.failed}
    )
    print(f"probes sent after the return: {len(after_return)}, failed with {outcomes}")
    # Before the assertions, so that the tests after this one find redis-1 the primary again.
    promote(cluster, "redis-1")
    assert len(sent_once_open) >= 10, "too few probes sent once the breakers were open"
    served = [e for e in driver.exchanges + sent_in_cut if cut + 1 < e.sent_at < back]
    served = [e for e in served if not e.failed]
    assert served == [], f"sent while the store host was cut, and served: {served[:3]}"
    refusals = during + sent_in_cut
    assert all(e.status == 503 and e.retry_after_s > 0 for e in refusals), refusals[:5]
    reasons = {(e.failure or {}).get("error") for e in refusals}
    assert reasons == {"store_unavailable"}, refusals[:5]
    # At once, but a message may still wait in the LB's queue for a turn sent into the cut.
    assert all(e.took_s < 2 for e in sent_once_open), sent_once_open[:5]
    assert not any(e.empty_200 for e in driver.exchanges)
    assert served_again < 5, f"{served_again}: probes sent after the return got {outcomes}"
    # The old primary, back, answers a frontend's old connection once more before the Sentinels
    # demote it: that message is refused too (503), and sent again.
    late = [e for e in driver.failures if e.sent_at > back + served_again]
    assert all(e.status == 503 for e in late) and len(late) <= driver.workers, late
    trackers = cluster.trackers()
    assert driver.repeated_or_reordered(trackers) == []
    broken = {f.sender for f in driver.failures}
    whole = [p for p in driver.lost_or_reordered(trackers) if p.split(":")[0] not in broken]
    assert whole == [], whole[:5]
