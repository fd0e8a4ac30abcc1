"""Benchmarks 1, 2 and 4 of the load-testing issue, on one bench cluster and a peer beside it:

1. LB overhead: one frontend, direct vs through the public LB (throughput ratio, p99 difference).
2. Scale-out: 1 vs 2 frontends through the LB, beside one frontend with SANIC_WORKERS=2
   (Rasa's own answer), and the p99 of 2 frontends vs SANIC_WORKERS=2 at equal load.
4. Time to ready: `syrcad up` from nothing (images present) and one `scale` step.

    python bench/lb_and_scaling.py     # about 15 minutes; writes bench/results/lb_and_scaling.md
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import RESULTS, BenchCluster, Greeter, Load, at_rate, machine, measure

USERS = 10
SECONDS = 40
# The equal loads for the tail comparison: these shares of what the SANIC_WORKERS=2 peer serves
# flat out, sent as a Poisson stream by enough users that few of them wait on a slow reply.
EQUAL_LOAD_SHARES = (0.5, 0.75)
PACED_USERS = 40
# This machine's speed drifts by up to a quarter within minutes (the CPU time Rasa spends per
# request, per container, went from 23 to 29 ms between two runs of one setup). So 2 frontends
# and the SANIC_WORKERS=2 peer stand side by side as two clusters, the idle one costing next to
# nothing, and take turns in short runs that are pooled: a drift then hits both alike.
TAIL_ROUNDS = 4
TAIL_SECONDS = 20
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
        "load generator on the same cores, every deployment warmed before it is measured; "
        f"{SECONDS} s per row (the LB overhead rows: twice {SECONDS // 2} s, in the order direct, "
        "LB, LB, direct, so that a drift over time cancels). The `at … req/s` rows send each "
        f"setup the same Poisson stream of requests ({PACED_USERS} users, each sending at "
        "exponentially distributed intervals). 2 frontends and SANIC_WORKERS=2 (flat out and "
        "paced) run side by side as two clusters and take turns, "
        f"{TAIL_ROUNDS} runs of {TAIL_SECONDS} s each, pooled.",
        "",
        "| setup | req/s | p50 ms | p99 ms | requests | failed |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch:
        cluster = BenchCluster(Path(scratch))
        cluster.configure(frontends=1)
        up_s = cluster.up()
        half = SECONDS // 2
        direct = measure(cluster.direct, USERS, half)
        via_lb = measure(cluster.public, USERS, half) + measure(cluster.public, USERS, half)
        direct += measure(cluster.direct, USERS, half)
        lines += [row("1 frontend, direct", direct), row("1 frontend, through the LB", via_lb)]

        scale_s = cluster.scale(frontends=2)
        peer = BenchCluster(Path(scratch) / "peer", name="benchpeer", port_offset=100)
        peer.folder.mkdir()
        peer.configure(frontends=1, sanic_workers=2)
        peer.up()
        queued = measure(peer.public, USERS, SECONDS)
        peer.configure(frontends=1, sanic_workers=2, maxconn=NO_LB_QUEUE)
        peer.up()
        two, own = taking_turns(cluster, peer, flat_out)
        rates = [share * own.rps for share in EQUAL_LOAD_SHARES]
        paced = {rate: taking_turns(cluster, peer, paced_at(rate)) for rate in rates}
        peer.down()
        cluster.down()
    lines += [
        row("2 frontends, through the LB", two),
        row("1 frontend, SANIC_WORKERS=2 + Redis lock store (Rasa's own queueing)", own),
        row("1 frontend, SANIC_WORKERS=2, queued by the LB (maxconn 2 per process)", queued),
    ]
    for rate, (two_paced, own_paced) in paced.items():
        lines += [
            row(f"2 frontends at {rate:.1f} req/s", two_paced),
            row(f"SANIC_WORKERS=2 (Rasa's own queueing) at {rate:.1f} req/s", own_paced),
        ]
    tails = [
        f"- tail at equal load ({rate:.1f} req/s, {share:.0%} of what SANIC_WORKERS=2 serves flat "
        f"out): p99 2 frontends / p99 SANIC_WORKERS=2 = "
        f"{paced[rate][0].p99_ms / paced[rate][1].p99_ms:.2f} (target ≤ 0.8)"
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


def flat_out(url: str) -> Load:
    return measure(url, USERS, TAIL_SECONDS)


def paced_at(rate: float) -> Callable[[str], Load]:
    def run(url: str) -> Load:
        return measure(url, PACED_USERS, TAIL_SECONDS, user=at_rate(rate, PACED_USERS))

    return run


def taking_turns(
    first: BenchCluster, second: BenchCluster, run: Callable[[str], Load]
) -> tuple[Load, Load]:
    """`run` against each cluster in turn, TAIL_ROUNDS times; each cluster's runs pooled."""
    on_first, on_second = run(first.public), run(second.public)
    for _ in range(TAIL_ROUNDS - 1):
        on_first += run(first.public)
        on_second += run(second.public)
    return on_first, on_second


if __name__ == "__main__":
    main()
