"""Benchmarks 1, 2 and 4 of the load-testing issue, on one bench cluster:

1. LB overhead: one frontend, direct vs through the public LB (throughput ratio, p99 difference).
2. Scale-out: 1 vs 2 frontends through the LB, beside one frontend with SANIC_WORKERS=2
   (Rasa's own answer), and the p99 of 2 frontends vs SANIC_WORKERS=2 at equal load.
4. Time to ready: `syrcad up` from nothing (images present) and one `scale` step.

    python bench/lb_and_scaling.py     # about 20 minutes; writes bench/results/lb_and_scaling.md
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness import RESULTS, BenchCluster, Greeter, Load, at_rate, machine, measure, syrcad

USERS = 10
SECONDS = 40
# The equal loads for the tail comparison: these shares of what the SANIC_WORKERS=2 peer serves
# flat out, sent as a Poisson stream by enough users that few of them wait on a slow reply.
EQUAL_LOAD_SHARES = (0.5, 0.75)
PACED_USERS = 40
# A per-server maxconn HAProxy never reaches: the Rasa process's own workers do all the queueing.
NO_LB_QUEUE = 10_000


def row(name: str, load: Load) -> str:
    return (
        f"| {name} | {load.rps:.1f} | {load.p50_ms:.0f} | {load.p99_ms:.0f} | {load.requests} | "
        f"{load.failures} |"
    )


def main() -> None:
    lines = [
        f"# LB overhead and scale-out ({machine()})",
        "",
        f"{USERS} closed-loop users (conversations of {Greeter.turns_per_conversation} turns), "
        "load generator on the same cores; "
        f"{SECONDS} s per row (the LB overhead rows: twice {SECONDS // 2} s, in the order direct, "
        "LB, LB, direct, so that a drift over time cancels). The `at … req/s` rows send each "
        f"setup the same Poisson stream of requests ({PACED_USERS} users, each sending at "
        "exponentially distributed intervals).",
        "",
        "| setup | req/s | p50 ms | p99 ms | requests | failed |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch:
        cluster = BenchCluster(Path(scratch))
        cluster.configure(frontends=1)
        up_s = cluster.up()
        half = SECONDS // 2
        direct_a = measure(cluster.direct, USERS, half)
        via_lb_a = measure(cluster.public, USERS, half)
        via_lb_b = measure(cluster.public, USERS, half)
        direct_b = measure(cluster.direct, USERS, half)
        direct, via_lb = combined(direct_a, direct_b), combined(via_lb_a, via_lb_b)
        lines += [row("1 frontend, direct", direct), row("1 frontend, through the LB", via_lb)]

        started = time.monotonic()
        syrcad("scale", "frontend=2", "--hosts", str(cluster.hosts))
        scale_s = time.monotonic() - started
        two = measure(cluster.public, USERS, SECONDS)
        lines.append(row("2 frontends, through the LB", two))

        cluster.configure(frontends=1, sanic_workers=2, maxconn=NO_LB_QUEUE)
        cluster.up()
        own = measure(cluster.public, USERS, SECONDS)
        rates = [share * own.rps for share in EQUAL_LOAD_SHARES]
        own_paced = paced_runs(cluster, rates)

        cluster.configure(frontends=1, sanic_workers=2)
        cluster.up()
        queued = measure(cluster.public, USERS, SECONDS)
        queued_paced = paced_runs(cluster, rates)

        cluster.configure(frontends=2)
        cluster.up()
        two_paced = paced_runs(cluster, rates)
        lines += [
            row("1 frontend, SANIC_WORKERS=2 + Redis lock store (Rasa's own queueing)", own),
            row("1 frontend, SANIC_WORKERS=2, queued by the LB (maxconn 2 per process)", queued),
        ]
        for rate in rates:
            lines += [
                row(f"2 frontends at {rate:.1f} req/s", two_paced[rate]),
                row(f"SANIC_WORKERS=2 (Rasa's own queueing) at {rate:.1f} req/s", own_paced[rate]),
                row(f"SANIC_WORKERS=2, queued by the LB, at {rate:.1f} req/s", queued_paced[rate]),
            ]
        cluster.down()
    tails = [
        f"- tail at equal load ({rate:.1f} req/s, {share:.0%} of what SANIC_WORKERS=2 serves flat "
        f"out): p99 2 frontends / p99 SANIC_WORKERS=2 = "
        f"{two_paced[rate].p99_ms / own_paced[rate].p99_ms:.2f} (target ≤ 0.8); against "
        f"SANIC_WORKERS=2 behind the same LB queue: "
        f"{two_paced[rate].p99_ms / queued_paced[rate].p99_ms:.2f}"
        for share, rate in zip(EQUAL_LOAD_SHARES, rates, strict=True)
    ]
    lines += [
        "",
        f"- LB overhead: throughput ratio {via_lb.rps / direct.rps:.3f} (target ≥ 0.97), "
        f"p99 difference {via_lb.p99_ms - direct.p99_ms:+.0f} ms (target ≤ 2 ms)",
        f"- scale-out: 2 frontends = {two.rps / via_lb.rps:.2f}× one frontend (target ≥ 1.7×); "
        f"SANIC_WORKERS=2 = {own.rps / via_lb.rps:.2f}× one frontend",
        *tails,
        f"- time to ready: `syrcad up` from nothing {up_s:.0f} s; `syrcad scale frontend=2` {scale_s:.0f} s",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "lb_and_scaling.md").write_text(text, encoding="utf-8")
    print(text)


def paced_runs(cluster: BenchCluster, rates: list[float]) -> dict[float, Load]:
    """The setup now deployed, under the same Poisson stream at each rate."""
    return {
        rate: measure(cluster.public, PACED_USERS, SECONDS, user=at_rate(rate, PACED_USERS))
        for rate in rates
    }


def combined(first: Load, second: Load) -> Load:
    """Two equally long runs of one setup as one: counts add up; rates and percentiles are averaged."""
    return Load(
        first.requests + second.requests,
        first.failures + second.failures,
        (first.rps + second.rps) / 2,
        (first.p50_ms + second.p50_ms) / 2,
        (first.p99_ms + second.p99_ms) / 2,
        min(first.min_ms, second.min_ms),
        max(first.max_ms, second.max_ms),
    )


if __name__ == "__main__":
    main()
