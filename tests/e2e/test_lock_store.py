"""Rasa's stock RedisLockStore vs syrcad's atomic one, under same-sender races over two frontends."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import E2ECluster, syrcad
from .race import race

pytestmark = pytest.mark.e2e


def use_lock_store(hosts_file: Path, atomic: bool) -> None:
    document = yaml.safe_load(hosts_file.read_text(encoding="utf-8"))
    document["stores"]["lock"]["atomic"] = atomic
    hosts_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    done = syrcad("up", "--hosts", str(hosts_file))
    assert "restarted: frontend-1, frontend-2" in done.stdout or "recreated" in done.stdout


def test_stock_lock_store_then_atomic_one(cluster: E2ECluster, tmp_path: Path) -> None:
    use_lock_store(cluster.hosts_file, atomic=False)
    try:
        stock = race(cluster.frontend_urls(), cluster.mongo())
        print(f"\nstock RedisLockStore: {stock}")
    finally:
        use_lock_store(cluster.hosts_file, atomic=True)
    atomic = race(cluster.frontend_urls(), cluster.mongo())
    print(f"syrcad AtomicRedisLockStore: {atomic}")
    assert atomic.messages >= 1000
    assert atomic.errors == []
    assert (atomic.lost, atomic.duplicated, atomic.reordered) == (0, 0, 0), str(atomic)
