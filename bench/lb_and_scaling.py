"""Benchmarks 1, 2 and 4 of the load-testing issue, on one bench cluster:

1. LB overhead: one frontend, direct vs through the public LB (throughput ratio, p99 difference).
2. Scale-out: 1 vs 2 frontends through the LB, beside one frontend with SANIC_WORKERS=2
   (Rasa's own answer), and the p99 of 2 frontends vs SANIC_WORKERS=2 at equal load.
4. Time to ready: `syrcad up` from nothing (images present) and one `scale` step.

    python bench/lb_and_scaling.py     # about 8 minutes; writes bench/results/lb_and_scaling.md
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness import RESULTS, BenchCluster, Load, machine, measure, syrcad

USERS = 10
SECONDS = 30


def row(name: str, load: Load) -> str:
    return (
        f"| {name} | {load.rps:.1f} | {load.p50_ms:.0f} | {load.p99_ms:.0f} | {load.requests} | "
        f"{load.failures} |"
    )


def main() -> None:
    lines = [
        f"# LB overhead and scale-out ({machine()})",
        "",
        f"{USERS} closed-loop users, {SECONDS} s each, load generator on the same cores.",
        "",
        "| setup | req/s | p50 ms | p99 ms | requests | failed |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch:
        cluster = BenchCluster(Path(scratch))
        cluster.configure(frontends=1)
        up_s = cluster.up()
        direct = measure(cluster.direct, USERS, SECONDS)
        via_lb = measure(cluster.public, USERS, SECONDS)
        lines += [row("1 frontend, direct", direct), row("1 frontend, through the LB", via_lb)]

        started = time.monotonic()
        syrcad("scale", "frontend=2", "--hosts", str(cluster.hosts))
        scale_s = time.monotonic() - started
        two = measure(cluster.public, USERS, SECONDS)
        lines.append(row("2 frontends, through the LB", two))

        cluster.configure(frontends=1, sanic_workers=2)
        cluster.up()
        workers = measure(cluster.public, USERS, SECONDS)
        lines.append(row("1 frontend, SANIC_WORKERS=2 + Redis lock store", workers))
        cluster.down()
    lines += [
        "",
        f"- LB overhead: throughput ratio {via_lb.rps / direct.rps:.3f} (target ≥ 0.97), "
        f"p99 difference {via_lb.p99_ms - direct.p99_ms:+.0f} ms (target ≤ 2 ms)",
        f"- scale-out: 2 frontends = {two.rps / via_lb.rps:.2f}× one frontend (target ≥ 1.7×); "
        f"SANIC_WORKERS=2 = {workers.rps / via_lb.rps:.2f}× one frontend",
        f"- tail at equal load: p99 2 frontends / p99 SANIC_WORKERS=2 = {two.p99_ms / workers.p99_ms:.2f} "
        "(target ≤ 0.8)",
        f"- time to ready: `syrcad up` from nothing {up_s:.0f} s; `syrcad scale frontend=2` {scale_s:.0f} s",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "lb_and_scaling.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
