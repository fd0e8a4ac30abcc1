"""Benchmarks 1, 2 and 4 of the load-testing issue, on three bench clusters side by side:

1. LB overhead: one frontend, direct vs through the public LB (throughput ratio, p99 difference,
   and HAProxy's own time per request from its log).
2. Scale-out: 1 vs 2 frontends through the LB, beside one frontend with SANIC_WORKERS=2
   (Rasa's own answer); then at equal load the p99 of 2 frontends, with the default maxconn 2
   and with maxconn 1, against SANIC_WORKERS=2.
4. Time to ready: `syrcad up` from nothing (images present) and one `scale` step.

    python bench/lb_and_scaling.py     # about 45 minutes; writes bench/results/lb_and_scaling.md
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import (
    RESULTS,
    BenchCluster,
    Greeter,
    Load,
    at_rate,
    interval,
    machine,
    measure,
    percentile,
)

USERS = 10
# The equal loads for the tail comparison: these shares of what the SANIC_WORKERS=2 peer serves
# flat out, sent as a Poisson stream by enough users that few of them wait on a slow reply.
EQUAL_LOAD_SHARES = (0.5, 0.75)
PACED_USERS = 40
# This machine's speed drifts by up to a quarter within minutes (the CPU time Rasa spends per
# request, per container, went from 23 to 29 ms between two runs of one setup). So the setups
# compared stand side by side (as clusters of their own, the idle ones costing next to nothing)
# and take turns in short runs that are pooled: a drift then hits all alike. A p99 rests on its
# slowest few requests, so the paced rows take more turns than the throughput rows; and in each
# turn every setup gets the same seeded Poisson stream.
ROUNDS = 4
TAIL_ROUNDS = 8
ROUND_SECONDS = 20
# A per-server maxconn HAProxy never reaches: the LB forwards every request at once and the Rasa
# process's own workers do all the queueing.
NO_LB_QUEUE = 10_000

# One setup's turn: the load it measured, given the round (which seeds the paced streams).
Run = Callable[[int], Load]


def row(name: str, load: Load) -> str:
    return (
        f"| {name} | {load.rps:.1f} | {load.p50_ms:.0f} | {load.p99_ms:.0f} | {load.requests} | "
        f"{load.failures} |"
    )


def p99_difference(first: list[float], second: list[float]) -> float:
    return percentile(first, 0.99) - percentile(second, 0.99)


def p99_ratio(first: list[float], second: list[float]) -> float:
    return percentile(first, 0.99) / percentile(second, 0.99)


def tail(name: str, queued: Load, own: Load) -> str:
    low, high = interval(p99_ratio, queued.times_ms, own.times_ms)
    return f"{p99_ratio(queued.times_ms, own.times_ms):.2f} {name} (95 % interval {low:.2f}–{high:.2f})"


def main() -> None:
    lines = [
        f"# LB overhead and scale-out ({machine()})",
        "",
        f"{USERS} closed-loop users (conversations of {Greeter.turns_per_conversation} turns), "
        "load generator on the same cores, every deployment warmed before it is measured. "
        "The setups compared (direct and through the LB; 1 and 2 frontends and SANIC_WORKERS=2, "
        "side by side as clusters of their own; 2 frontends with maxconn 1 and 2, one cluster "
        "switched at run time) take turns in "
        f"runs of {ROUND_SECONDS} s, {ROUNDS} each (the `at … req/s` rows: {TAIL_ROUNDS} each), "
        "pooled, so that the machine's drift in speed hits all alike. The `at … req/s` rows "
        f"send a Poisson stream of requests ({PACED_USERS} users, each sending at exponentially "
        "distributed intervals), in each turn the same seeded stream to every setup. "
        "Percentiles are exact (from every request's time). The 95 % intervals show how far a "
        "figure moves when other requests of the same runs happen to be the slow ones; they do "
        "not cover what differs between two clusters, which is why maxconn 1 and 2 are compared "
        "on one.",
        "",
        "| setup | req/s | p50 ms | p99 ms | requests | failed |",
        "|---|---|---|---|---|---|",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch,
        BenchCluster(Path(scratch)) as cluster,
        BenchCluster(Path(scratch) / "two", name="benchtwo", port_offset=200) as two_frontends,
        BenchCluster(Path(scratch) / "peer", name="benchpeer", port_offset=100) as peer,
    ):
        # The LB's cost as a plain forwarder, then with its queue (the default maxconn), which
        # trades some throughput for a shorter tail: two different questions, two pairs.
        cluster.configure(frontends=1, maxconn=NO_LB_QUEUE)
        up_s = cluster.up()
        since = time.time()
        direct, forwarded = taking_turns(
            [flat_out(cluster.direct), flat_out(cluster.public)], ROUNDS
        )
        lb_own = cluster.lb_own_ms(since)
        cluster.configure(frontends=1)
        cluster.up()
        direct_again, via_lb = taking_turns(
            [flat_out(cluster.direct), flat_out(cluster.public)], ROUNDS
        )

        # Scale-out: 1 and 2 frontends and the SANIC_WORKERS=2 peer flat out, taking turns.
        two_frontends.configure(frontends=2)
        two_frontends.up()
        peer.configure(frontends=1, sanic_workers=2, maxconn=NO_LB_QUEUE)
        peer.up()
        one, two, own = taking_turns(
            [flat_out(cluster.public), flat_out(two_frontends.public), flat_out(peer.public)],
            ROUNDS,
        )

        # The tail at equal load: 2 frontends with the default maxconn and with maxconn 1 (the
        # same cluster, switched at run time), against SANIC_WORKERS=2.
        def two_with(maxconn: int, run: Run) -> Run:
            def switched(round_: int) -> Load:
                two_frontends.set_maxconn(maxconn)
                return run(round_)

            return switched

        two_one, two_again = taking_turns(
            [
                two_with(1, flat_out(two_frontends.public)),
                two_with(2, flat_out(two_frontends.public)),
            ],
            ROUNDS,
        )
        rates = [share * own.rps for share in EQUAL_LOAD_SHARES]
        paced = {
            rate: taking_turns(
                [
                    two_with(2, paced_at(rate, two_frontends.public)),
                    two_with(1, paced_at(rate, two_frontends.public)),
                    paced_at(rate, peer.public),
                ],
                TAIL_ROUNDS,
            )
            for rate in rates
        }
        scale_s = cluster.scale(frontends=2)
    lines += [
        row("1 frontend, direct", direct),
        row("1 frontend, through the LB as a plain forwarder (maxconn never reached)", forwarded),
        row("1 frontend, direct (again, beside the next row)", direct_again),
        row("1 frontend, through the LB with its queue (maxconn 2, the default)", via_lb),
        row("1 frontend, through the LB (beside the next two rows)", one),
        row("2 frontends, through the LB (maxconn 2, the default)", two),
        row("1 frontend, SANIC_WORKERS=2 + Redis lock store (Rasa's own queueing)", own),
        row("2 frontends, through the LB, maxconn 1", two_one),
        row("2 frontends, through the LB, maxconn 2 (again, beside the row above)", two_again),
    ]
    for rate, (two_paced, two_one_paced, own_paced) in paced.items():
        lines += [
            row(f"2 frontends (maxconn 2) at {rate:.1f} req/s", two_paced),
            row(f"2 frontends (maxconn 1) at {rate:.1f} req/s", two_one_paced),
            row(f"SANIC_WORKERS=2 (Rasa's own queueing) at {rate:.1f} req/s", own_paced),
        ]
    low, high = interval(p99_difference, forwarded.times_ms, direct.times_ms)
    tails = [
        f"- tail at equal load ({rate:.1f} req/s, {share:.0%} of what SANIC_WORKERS=2 serves flat "
        "out), p99 of 2 frontends / p99 of SANIC_WORKERS=2 (target ≤ 0.8): "
        f"{tail('with maxconn 2', paced[rate][0], paced[rate][2])}; "
        f"{tail('with maxconn 1', paced[rate][1], paced[rate][2])}"
        for share, rate in zip(EQUAL_LOAD_SHARES, rates, strict=True)
    ]
    lines += [
        "",
        f"- LB overhead, as a plain forwarder: throughput ratio {forwarded.rps / direct.rps:.3f} "
        f"(target ≥ 0.97), p99 difference {forwarded.p99_ms - direct.p99_ms:+.1f} ms "
        f"(95 % interval {low:+.0f} to {high:+.0f} ms; target ≤ 2 ms)",
        f"- HAProxy's own time per request (its log: total less queue and frontend time), over "
        f"{len(lb_own)} requests: p50 {percentile(lb_own, 0.5):.0f} ms, "
        f"p99 {percentile(lb_own, 0.99):.0f} ms, max {max(lb_own, default=0):.0f} ms",
        f"- the LB with its queue (the default): throughput ratio "
        f"{via_lb.rps / direct_again.rps:.3f}, p99 difference "
        f"{via_lb.p99_ms - direct_again.p99_ms:+.0f} ms",
        f"- scale-out: 2 frontends = {two.rps / one.rps:.2f}× one frontend (target ≥ 1.7×); "
        f"SANIC_WORKERS=2 = {own.rps / one.rps:.2f}× one frontend; maxconn 1 against 2 for "
        f"2 frontends: throughput ratio {two_one.rps / two_again.rps:.3f}",
        *tails,
        f"- time to ready: `syrcad up` from nothing {up_s:.0f} s; `syrcad scale frontend=2` {scale_s:.0f} s",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "lb_and_scaling.md").write_text(text, encoding="utf-8")
    print(text)


def flat_out(url: str) -> Run:
    return lambda _round: measure(url, USERS, ROUND_SECONDS)


def paced_at(rate: float, url: str) -> Run:
    def run(round_: int) -> Load:
        stream = at_rate(rate, PACED_USERS, seed=round_)
        return measure(url, PACED_USERS, ROUND_SECONDS, user=stream)

    return run


def taking_turns(runs: Sequence[Run], rounds: int) -> list[Load]:
    """Every run in turn, `rounds` times; each run's loads pooled."""
    pooled = [run(0) for run in runs]
    for round_ in range(1, rounds):
        pooled = [so_far + run(round_) for so_far, run in zip(pooled, runs, strict=True)]
    return pooled


if __name__ == "__main__":
    main()
