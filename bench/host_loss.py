"""Benchmark of the host-loss issue: the same cut of a frontend host, once per engine.

Three test hosts (tests/testhosts.py): frontends, action servers and LBs on node1 and node2,
the stores on node3; 2 frontends and 2 action servers. Under booking-conversation load, node2's
link is cut for CUT_S seconds. Printed per engine: the frontends UP in node1's LB over time, the
time from the cut to the full count again (compose: never, until the host returns), and the
requests that failed.

    python bench/host_loss.py   # about 20 minutes; writes bench/results/host_loss.md
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from harness import RESULTS, ROOT, machine, syrcad

sys.path.insert(0, str(ROOT))
from syrcad.apply import facts
from syrcad.config.secrets import read, secrets_path
from syrcad.plan.placement import BALANCED
from tests import testhosts
from tests.e2e.driver import Driver

CUT_S = 150  # longer than node-loss detection plus a Rasa boot on a loaded 2-core machine
PUBLIC_PORT, STATS_PORT = 38080, 38404
ROLES = {
    "node1": ["frontend", "action", "lb"],
    "node2": ["frontend", "action", "lb"],
    "node3": ["mongo", "redis"],
}


@dataclass(frozen=True)
class Cut:
    engine: str
    full_again_s: float | None  # seconds from the cut until node1's LB had 2 frontends UP again
    counts: list[tuple[float, int]]  # (seconds after the cut, frontends UP) at each change
    failed: int
    failed_by: str  # how many failed, by what their answer said (or their status)
    unanswered: int  # of the failed, those not answered once sent again with their message ids
    sent: int


def hosts_file(folder: Path, engine: str, made: testhosts.TestHosts) -> Path:
    document = yaml.safe_load((ROOT / "examples" / "local.yml").read_text(encoding="utf-8"))
    document.update(name="loss", engine=engine, deploy_dir=str(folder / "deploy"))
    document["hosts"] = {
        name: {
            "address": made.by_name(name).address,
            "ssh": {"config_file": str(made.ssh_config)},
            "roles": roles,
        }
        for name, roles in ROLES.items()
    }
    document["project"] = {"path": str(ROOT / "bot"), "actions": str(ROOT / "actions")}
    document["services"] = {
        "frontend": {"replicas": 2},
        "action": {"replicas": 2},
        "lb": {"public_port": PUBLIC_PORT, "stats_port": STATS_PORT, "action_stats_port": 38405},
    }
    document.pop("stores", None)
    path = folder / engine / "hosts.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def frontends_up(address: str, password: str) -> int:
    states = facts.lb_servers(address, STATS_PORT, password)
    backend = BALANCED["frontend"][0].name
    return sum(1 for (px, _), s in states.items() if px == backend and s == "UP")


def cut_once(engine: str, folder: Path, made: testhosts.TestHosts) -> Cut:
    hosts = hosts_file(folder, engine, made)
    syrcad("up", "--hosts", str(hosts))
    try:
        secrets = read(secrets_path(hosts))
        assert secrets is not None
        node1 = made.by_name("node1").address
        public = f"http://{node1}:{PUBLIC_PORT}"
        driver = Driver(public, workers=3, think_s=0.1, send_again=True).start()
        time.sleep(15)
        cut = time.monotonic()
        testhosts.cut(made.by_name("node2"))
        counts: list[tuple[float, int]] = []
        full_again = None
        try:
            while time.monotonic() - cut < CUT_S:
                up = frontends_up(node1, secrets.stats_password)
                at = time.monotonic() - cut
                if not counts or counts[-1][1] != up:
                    counts.append((at, up))
                if full_again is None and up == 2 and len(counts) > 1:
                    full_again = at
                time.sleep(1)
        finally:
            testhosts.reconnect(made.by_name("node2"))
        time.sleep(20)
        driver.stop()
        failures = driver.failures
        kinds = Counter(
            str((f.failure or {}).get("error") or f.status or f.error) for f in failures
        )
        failed_by = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        unanswered = len(driver.unanswered())
        return Cut(
            engine, full_again, counts, len(failures), failed_by, unanswered, len(driver.exchanges)
        )
    finally:
        leave = ["--leave"] if engine == "swarm" else []
        syrcad("down", "--volumes", *leave, "--hosts", str(hosts))


def main() -> None:
    made = testhosts.up(3)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch:
            for engine in ("compose", "swarm"):
                results.append(cut_once(engine, Path(scratch), made))
                print(results[-1])
    finally:
        testhosts.down()
    lines = [
        "# A frontend host cut off for 150 s, per engine",
        "",
        f"{machine()}. `python bench/host_loss.py`: 2 frontends and 2 action servers on node1 and",
        "node2, stores on node3, 3 workers of booking conversations; node2's link is cut.",
        "",
        "| engine | frontends UP in node1's LB (seconds after the cut: count) | full count again "
        "| requests failed / sent | unanswered once sent again |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        timeline = ", ".join(f"{at:.0f}s: {n}" for at, n in r.counts)
        full = r.full_again_s
        again = f"{full:.0f} s after the cut" if full is not None else f"not within {CUT_S} s"
        lines.append(
            f"| {r.engine} | {timeline} | {again} | {r.failed} / {r.sent} "
            f"{f'({r.failed_by})' if r.failed else ''} | {r.unanswered} |"
        )
    lines += [
        "",
        "compose keeps the lost host's replicas where they were: the cluster runs on one",
        "frontend until the host returns. Swarm calls the node down after its missed heartbeats",
        "and starts its tasks on node1. Messages under way on node2's frontend at the cut are",
        "sent to node1's by the public LB, with their ids, once TCP keepalive finds node2 gone:",
        "they do not fail. A call under way on node2's action server is cut (the booking action",
        "is not idempotent: 502 action_lost, docs/runbook.md). The load's client sends a message",
        "cut off (a 502, a 504, a closed connection) again, once, with its X-Message-Id (sent",
        "counts both tries), and not one refused with a 503: the last column counts the messages",
        "left unanswered.",
    ]
    (RESULTS / "host_loss.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
