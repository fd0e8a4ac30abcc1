"""`syrcad backup` and `syrcad restore`: thousands of conversations out, the cluster destroyed
with its volumes, brought up again, and every conversation back event for event, going on where
it stopped. Run on the local layout with each tracker store (CI runs it with --tracker postgres
too; there the store is emptied in place instead: what differs is the restore's SQL writes, and
destroying and rebuilding a cluster again would take minutes more); the file is read and written
through a frontend, as on any layout."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import OUTPUTS, E2ECluster, MongoTrackers, PostgresTrackers, new_sender, syrcad
from .driver import TURNS

pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]

COPIES = 150  # of each conversation held through Rasa: 20 × 150 = 3000 more, straight in the store
# What syrcad may hold beyond its own size while it streams a backup: one conversation at a time.
STREAMED_MB = 30


def with_peak_memory(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`syrcad ARGS`, and its peak resident memory (MB): measured by a parent of its own, whose
    only child it is."""
    measure = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(done.stderr); sys.stdout.write(done.stdout); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "sys.exit(done.returncode)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "-m", "syrcad.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    OUTPUTS.append(done.stdout + done.stderr)
    assert done.returncode == 0, f"syrcad {' '.join(args)}: {done.stdout}\n{done.stderr}"
    *output, peak_kb = done.stdout.rstrip("\n").split("\n")
    done.stdout = "\n".join(output)
    return done, int(peak_kb) / 1024


def test_backup_then_restore_into_a_destroyed_and_rebuilt_cluster(
    cluster: E2ECluster, tmp_path: Path
) -> None:
    hosts = ["--hosts", str(cluster.hosts_file)]
    # Through Rasa: 10 bookings done, 10 stopped inside the form (the cuisine given, not the size).
    done = [new_sender() for _ in range(10)]
    stopped = [new_sender() for _ in range(10)]
    for sender in done + stopped:
        for message, reply in TURNS if sender in done else TURNS[:2]:
            assert cluster.texts(sender, message)[0].startswith(reply)
    store = cluster.store()
    store.copy(done + stopped, COPIES)
    before = store.everything()
    assert len(before) >= 20 * (COPIES + 1), len(before)
    events = sum(len(e) for e in before.values())

    backup = tmp_path / "conversations.jsonl.gz"
    taken, backup_mb = with_peak_memory("backup", "--out", str(backup), *hosts)
    baseline_mb = with_peak_memory("plan", *hosts)[1]
    print(
        f"\n{taken.stdout.strip()} ({backup.stat().st_size / 1e6:.1f} MB); syrcad's peak memory"
        f" {backup_mb:.0f} MB, {baseline_mb:.0f} MB for `syrcad plan`"
    )
    assert f"Backed up {len(before)} conversations ({events} events)" in taken.stdout
    # Streamed: holding the conversations (tens of MB of JSON) would take far more.
    assert backup_mb < baseline_mb + STREAMED_MB

    if isinstance(store, PostgresTrackers):
        store.empty()
    else:
        syrcad("down", "--volumes", *hosts)
        started = time.monotonic()
        syrcad("up", *hosts)
        print(f"cluster destroyed and brought up again in {time.monotonic() - started:.0f} s")
    assert store.everything() == {}, "the conversations outlived the volumes"

    restored, restore_mb = with_peak_memory("restore", str(backup), *hosts)
    print(f"{restored.stdout.strip()} (peak memory {restore_mb:.0f} MB)")
    assert restore_mb < baseline_mb + STREAMED_MB
    assert f"{len(before)} restored" in restored.stdout
    assert store.everything() == before
    if isinstance(store, MongoTrackers):  # the frontends' chunks, as a restore writes them
        assert store.out_of_layout() == []

    again = syrcad("restore", str(backup), *hosts)
    assert f"0 restored, 0 continued, {len(before)} already there" in again.stdout
    assert store.everything() == before

    # The form remembers its slot: the size alone completes the booking of the cuisine given
    # before the backup.
    size, booked = TURNS[2]
    for sender in stopped[:3]:
        assert cluster.texts(sender, size)[0].startswith(booked)
    assert len(store.events(stopped[0])) > len(before[stopped[0]])

    # A conversation that went on after the backup is kept as the store has it.
    kept = syrcad("restore", str(backup), *hosts)
    assert "0 restored, 0 continued" in kept.stdout
    assert "3 kept as the store has them" in kept.stdout
    assert len(store.events(stopped[0])) > len(before[stopped[0]])


def test_a_backup_cut_short_is_refused_before_the_store_is_touched(
    cluster: E2ECluster, tmp_path: Path
) -> None:
    hosts = ["--hosts", str(cluster.hosts_file)]
    whole = tmp_path / "whole.jsonl.gz"
    syrcad("backup", "--out", str(whole), *hosts)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    refused = syrcad("restore", str(cut), *hosts, check=False)
    assert refused.returncode == 2, refused
    assert str(cut) in refused.stderr
    assert "Traceback" not in refused.stderr


def test_conversations_in_rasas_own_mongo_layout_go_on_and_are_backed_up(
    cluster: E2ECluster, tmp_path: Path
) -> None:
    """A conversation Rasa's own Mongo tracker store wrote (one document per sender, as a
    cluster of an older syrcad holds them) goes on where it stopped, moved into syrcad's chunks
    on its first read; one nobody wrote to since is in a backup all the same."""
    if cluster.layout.tracker != "mongo":
        pytest.skip("Rasa's own layout is the Mongo tracker store's")
    store = cluster.store()
    assert isinstance(store, MongoTrackers)
    sender = new_sender()
    for message, reply in TURNS[:2]:  # inside the form: the cuisine given, not the size
        assert cluster.texts(sender, message)[0].startswith(reply)
    events = store.events(sender)
    going_on, left = new_sender(), new_sender()
    store.put_in_rasa_layout(going_on, events)
    store.put_in_rasa_layout(left, events)

    size, booked = TURNS[2]
    assert cluster.texts(going_on, size)[0].startswith(booked)
    moved = store.events(going_on)
    assert moved[: len(events)] == events and len(moved) > len(events)
    assert store.out_of_layout() == []
    assert store.in_rasa_layout() == {left}

    backup = tmp_path / "conversations.jsonl.gz"
    syrcad("backup", "--out", str(backup), "--hosts", str(cluster.hosts_file))
    with gzip.open(backup, "rt", encoding="utf-8") as lines:
        backed_up = {c.get("sender_id"): c.get("events") for c in map(json.loads, lines)}
    assert backed_up[left] == events
    assert backed_up[going_on] == moved
