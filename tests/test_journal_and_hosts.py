"""The deploy lock, the audit log and parallel host work, on hosts that share this disk."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from syrcad.apply import journal
from syrcad.apply.hosts import HostHandle, each
from syrcad.errors import HostsFailed, LockHeld, RemoteError


def local_host(root: Path, name: str = "h1") -> HostHandle:
    return HostHandle(name, "127.0.0.1", "unix:///var/run/docker.sock", root, root, "c")


def test_lock_is_exclusive_names_its_holder_and_releases(tmp_path: Path) -> None:
    lock = journal.DeployLock(local_host(tmp_path / "cluster"))
    alice = journal.Holder("alice@ops1", "syrcad up", "2026-01-01T00:00:00Z", 1)
    bob = journal.Holder("bob@ops2", "syrcad scale frontend=3", "2026-01-01T00:01:00Z", 2)
    assert lock.try_acquire(alice) is None
    assert lock.try_acquire(bob) == alice
    assert lock.holder() == alice
    started = time.monotonic()
    with pytest.raises(LockHeld, match=r"locked by alice@ops1 \(pid 1\) since 2026"):
        lock.acquire(bob, wait_s=1)
    assert time.monotonic() - started >= 1
    lock.release()
    assert lock.holder() is None
    assert lock.try_acquire(bob) is None


def test_operation_audits_success_failure_and_refusal(tmp_path: Path) -> None:
    hosts = {"h1": local_host(tmp_path / "cluster")}
    log = tmp_path / "audit.log"
    with journal.operation(hosts, log, ["syrcad", "up"], 0):
        pass
    with pytest.raises(ValueError), journal.operation(hosts, log, ["syrcad", "scale"], 0):
        raise ValueError("boom")
    lock = journal.DeployLock(hosts["h1"])
    lock.try_acquire(journal.Holder("x@y", "syrcad up", "now", 3))
    with pytest.raises(LockHeld), journal.operation(hosts, log, ["syrcad", "down"], 0):
        pass
    results = [(e.command, e.result.split(":")[0]) for e in journal.read(log.read_text())]
    assert results == [("syrcad up", "ok"), ("syrcad scale", "failed"), ("syrcad down", "refused")]
    on_host = journal.read_host(hosts["h1"], 10)
    assert [e.command for e in on_host] == ["syrcad up", "syrcad scale"]  # refusals stay local


def test_each_runs_hosts_at_once_and_reports_every_failure(tmp_path: Path) -> None:
    hosts = [local_host(tmp_path, f"h{i}") for i in range(3)]
    running: set[str] = set()
    overlap = threading.Event()

    def work(host: HostHandle) -> str:
        running.add(host.name)
        if len(running) == 3:
            overlap.set()
        overlap.wait(5)
        if host.name != "h0":
            raise RemoteError(host.name, ["x"], 1, step="start frontend-1")
        return host.name

    with pytest.raises(HostsFailed) as failed:
        each(hosts, work)
    assert overlap.is_set()
    assert str(failed.value).splitlines()[0] == "2 hosts failed:"
    assert "h1: start frontend-1 failed (exit 1)" in str(failed.value)
    assert "h2: start frontend-1 failed (exit 1)" in str(failed.value)
    assert each(hosts, lambda h: h.name) == {"h0": "h0", "h1": "h1", "h2": "h2"}
