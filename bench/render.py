"""Render benchmark: 50 hosts, 500 frontend + 100 action replicas; validate + place + render.

Prints wall time and peak memory (target: under 1 s), and how long `syrcad up --dry-run` takes
to print its plan when no host can be reached (target: under 2 s; tests/test_dry_run.py proves
it reads no facts). Figures, not timed tests:

    python bench/render.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import fields
from pathlib import Path

import yaml
from harness import ROOT, syrcad

from syrcad import config, plan, render
from syrcad.config.secrets import Secrets

HOSTS, FRONTENDS, ACTIONS = 50, 500, 100


def document() -> dict[str, object]:
    hosts: dict[str, object] = {}
    for n in range(HOSTS):
        roles = ["frontend", "action"]
        if n < 2:
            roles.append("lb")
        if n == HOSTS - 1:
            roles = ["mongo", "redis"]
        hosts[f"node{n:02d}"] = {"address": f"10.1.{n // 200}.{n % 200 + 10}", "roles": roles}
    return {
        "name": "bench",
        "hosts": hosts,
        "project": {"path": "/srv/bot"},
        "services": {"frontend": {"replicas": FRONTENDS}, "action": {"replicas": ACTIONS}},
    }


def dry_run_unreachable_s(folder: Path) -> float:
    """`syrcad up --dry-run` of examples/hosts.yml, its hosts moved to loopback addresses this
    machine does not use, on a port where nothing listens (every connection refused at once; the
    documentation addresses are never dialled): the whole command, Python's start included."""
    document = yaml.safe_load((ROOT / "examples" / "hosts.yml").read_text(encoding="utf-8"))
    for number, host in enumerate(document["hosts"].values(), start=2):
        host["address"] = f"127.0.0.{number}"
        host["ssh"] = {"port": 1}
    path = folder / "unreachable.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    started = time.perf_counter()
    syrcad("up", "--dry-run", "--json", "-H", str(path))
    return time.perf_counter() - started


def main() -> None:
    secrets = Secrets(**{f.name: f"bench-{f.name}-xxxxxxxx" for f in fields(Secrets)})
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch, "hosts.yml")
        path.write_text(yaml.safe_dump(document()), encoding="utf-8")

        def run() -> tuple[plan.Placement, tuple[render.RenderedFile, ...]]:
            loaded = config.load(path)
            placement = plan.place(loaded.cluster)
            return placement, render.render(loaded.cluster, placement, secrets)

        started = time.perf_counter()
        placement, files = run()  # cold: includes compiling the templates
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        run()
        warm = time.perf_counter() - started
        tracemalloc.start()  # a separate run: tracing slows Python down
        run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        written = time.perf_counter()
        render.write_tree(Path(scratch, "out"), files)
        write_s = time.perf_counter() - written
        dry_run_s = dry_run_unreachable_s(Path(scratch))
    size = sum(len(f.content) for f in files)
    print(
        f"hosts={HOSTS} frontends={FRONTENDS} actions={ACTIONS} containers={len(placement.containers)}"
    )
    print(f"files={len(files)} bytes={size}")
    print(
        f"validate+place+render: {elapsed:.3f} s cold, {warm:.3f} s warm (target < 1 s); "
        f"writing the tree: {write_s:.3f} s"
    )
    print(f"up --dry-run, no host reachable: {dry_run_s:.2f} s (target < 2 s)")
    print(
        f"peak traced memory: {peak / 2**20:.1f} MiB; cores: {os.cpu_count()}; python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
