"""Render benchmark: 50 hosts, 500 frontend + 100 action replicas; validate + place + render.

Prints wall time and peak memory (target: under 1 s). A figure, not a timed test:

    python bench/render.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

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


def main() -> None:
    secrets = Secrets(*(f"bench-secret-{i:04d}-xxxxxxxx" for i in range(5)))
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
    size = sum(len(f.content) for f in files)
    print(
        f"hosts={HOSTS} frontends={FRONTENDS} actions={ACTIONS} containers={len(placement.containers)}"
    )
    print(f"files={len(files)} bytes={size}")
    print(
        f"validate+place+render: {elapsed:.3f} s cold, {warm:.3f} s warm (target < 1 s); "
        f"writing the tree: {write_s:.3f} s"
    )
    print(
        f"peak traced memory: {peak / 2**20:.1f} MiB; cores: {os.cpu_count()}; python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
