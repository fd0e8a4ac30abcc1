"""Benchmarks 1, 2 and 4 of the load-testing issue, on three bench clusters side by side:

1. LB overhead: one frontend, direct vs through the public LB (throughput ratio, p99 difference,
   and HAProxy's own time per request from its log).
2. Scale-out: 1 vs 2 frontends through the LB, beside one frontend with SANIC_WORKERS=2
   (Rasa's own answer); then at equal load the p99 of 2 frontends, with the default maxconn 2
   and with maxconn 1, against SANIC_WORKERS=2. Each setup runs on each cluster in turn.
4. Time to ready: `syrcad up` from nothing (images present) and one `scale` step.

    python bench/lb_and_scaling.py     # about an hour; writes bench/results/lb_and_scaling.md
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
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
# and take turns in short runs that are pooled: a drift then hits all alike. Clusters made alike
# still differ in speed by up to a tenth (a draft compared maxconn 1 and 2 on two of them and
# saw 9 % in throughput), so each setup of the scale-out takes its turns on each cluster in
# turn. A p99 rests on its slowest few requests, so the paced rows take more turns than the
# throughput rows; and in each turn every setup gets the same seeded Poisson stream.
ROUNDS = 4  # for the LB pairs
SCALING_ROUNDS = 2  # per setup and arrangement of the setups on the clusters
TAIL_ROUNDS = 3  # likewise, for the paced rows
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


def tail(name: str, arrangements: list[tuple[Load, Load]]) -> str:
    """The p99 ratio of the first setup of each pair to the second, pooled over the arrangements,
    with its 95 % interval and the ratio in each arrangement."""
    queued = functools.reduce(Load.__add__, (first for first, _ in arrangements))
    own = functools.reduce(Load.__add__, (second for _, second in arrangements))
    low, high = interval(p99_ratio, queued.times_ms, own.times_ms)
    each = per_arrangement(p99_ratio(a.times_ms, b.times_ms) for a, b in arrangements)
    return (
        f"{p99_ratio(queued.times_ms, own.times_ms):.2f} {name} (95 % interval "
        f"{low:.2f}–{high:.2f}; per arrangement {each})"
    )


def main() -> None:
    lines = [
        f"# LB overhead and scale-out ({machine()})",
        "",
        f"{USERS} closed-loop users (conversations of {Greeter.turns_per_conversation} turns), "
        "load generator on the same cores, every deployment warmed before it is measured. "
        "The setups compared take turns in runs of "
        f"{ROUND_SECONDS} s, pooled, so that the machine's drift in speed hits all alike: direct "
        f"and through the LB, {ROUNDS} runs each, on one cluster; 1 and 2 frontends and "
        "SANIC_WORKERS=2 on three clusters side by side, each setup on each cluster for a third "
        f"of its {SCALING_ROUNDS * len(SETUPS)} runs (the `at … req/s` rows: "
        f"{TAIL_ROUNDS * len(SETUPS)}), so that the clusters' own differences in speed (up to a "
        "tenth, however alike they are made) hit all setups alike too; maxconn 1 and 2 switched "
        "at run time on the cluster with 2 frontends. The `at … req/s` rows send a Poisson "
        f"stream of requests ({PACED_USERS} users, each sending at exponentially distributed "
        "intervals), in each turn the same seeded stream to every setup. Percentiles are exact "
        "(from every request's time). The 95 % intervals show how far a figure moves when other "
        "requests of the same runs happen to be the slow ones; the figures per cluster "
        "arrangement show how far it moves with the cluster.",
        "",
        "| setup | req/s | p50 ms | p99 ms | requests | failed |",
        "|---|---|---|---|---|---|",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch,
        BenchCluster(Path(scratch)) as cluster,
        BenchCluster(Path(scratch) / "b", name="benchb", port_offset=200) as second,
        BenchCluster(Path(scratch) / "c", name="benchc", port_offset=100) as third,
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

        # Scale-out and the tail at equal load, once per arrangement of the setups on the
        # clusters (a Latin square: each setup on each cluster once), pooled over the three.
        clusters = (cluster, second, third)
        arrangements = [
            dict(zip(SETUPS, clusters[shift:] + clusters[:shift], strict=True))
            for shift in range(len(SETUPS))
        ]
        running = {cluster.name: ONE}
        rates: list[float] = []
        measured: list[Scaling] = []
        for number, arrangement in enumerate(arrangements):
            for setup, on in arrangement.items():
                if running.get(on.name) != setup:
                    on.configure(**asdict(setup))
                    on.up()
                    running[on.name] = setup
            one, two, own = taking_turns(
                [flat_out(arrangement[setup].public) for setup in SETUPS], SCALING_ROUNDS
            )
            # The equal loads are shares of what SANIC_WORKERS=2 serves flat out, taken from the
            # first arrangement so that every arrangement gets the same streams.
            rates = rates or [share * own.rps for share in EQUAL_LOAD_SHARES]
            measured.append(
                Scaling(one, two, own, *maxconn_and_tail(arrangement, rates, number * TAIL_ROUNDS))
            )
        scale_s = arrangements[-1][ONE].scale(frontends=2)
    pooled = functools.reduce(Scaling.__add__, measured)
    lines += [
        row("1 frontend, direct", direct),
        row("1 frontend, through the LB as a plain forwarder (maxconn never reached)", forwarded),
        row("1 frontend, direct (again, beside the next row)", direct_again),
        row("1 frontend, through the LB with its queue (maxconn 2, the default)", via_lb),
        row("1 frontend, through the LB (beside the next two rows)", pooled.one),
        row("2 frontends, through the LB (maxconn 2, the default)", pooled.two),
        row("1 frontend, SANIC_WORKERS=2 + Redis lock store (Rasa's own queueing)", pooled.own),
        row("2 frontends, through the LB, maxconn 1", pooled.two_maxconn_1),
        row(
            "2 frontends, through the LB, maxconn 2 (again, beside the row above)", pooled.two_again
        ),
    ]
    for rate, (two_paced, two_one_paced, own_paced) in zip(rates, pooled.paced, strict=True):
        lines += [
            row(f"2 frontends (maxconn 2) at {rate:.1f} req/s", two_paced),
            row(f"2 frontends (maxconn 1) at {rate:.1f} req/s", two_one_paced),
            row(f"SANIC_WORKERS=2 (Rasa's own queueing) at {rate:.1f} req/s", own_paced),
        ]
    low, high = interval(p99_difference, forwarded.times_ms, direct.times_ms)
    tails = [
        f"- tail at equal load ({rate:.1f} req/s, {share:.0%} of what SANIC_WORKERS=2 serves flat "
        "out), p99 of 2 frontends / p99 of SANIC_WORKERS=2 (target ≤ 0.8): "
        + tail("with maxconn 2", [(m.paced[i][0], m.paced[i][2]) for m in measured])
        + "; "
        + tail("with maxconn 1", [(m.paced[i][1], m.paced[i][2]) for m in measured])
        for i, (share, rate) in enumerate(zip(EQUAL_LOAD_SHARES, rates, strict=True))
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
        f"- scale-out: 2 frontends = {pooled.two.rps / pooled.one.rps:.2f}× one frontend "
        f"(target ≥ 1.7×; per arrangement {per_arrangement(m.two.rps / m.one.rps for m in measured)}"
        f"); SANIC_WORKERS=2 = {pooled.own.rps / pooled.one.rps:.2f}× one frontend; maxconn 1 "
        f"against 2 for 2 frontends: throughput ratio "
        f"{pooled.two_maxconn_1.rps / pooled.two_again.rps:.3f}",
        *tails,
        f"- time to ready: `syrcad up` from nothing {up_s:.0f} s; `syrcad scale frontend=2` {scale_s:.0f} s",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "lb_and_scaling.md").write_text(text, encoding="utf-8")
    print(text)


@dataclass(frozen=True)
class Setup:
    """How a bench cluster is configured: the arguments of `BenchCluster.configure`."""

    frontends: int
    sanic_workers: int = 1
    maxconn: int = 2


ONE = Setup(frontends=1)
TWO = Setup(frontends=2)
OWN = Setup(frontends=1, sanic_workers=2, maxconn=NO_LB_QUEUE)  # Rasa's own queueing
SETUPS = (ONE, TWO, OWN)


@dataclass
class Scaling:
    """The scale-out figures of one arrangement, or of several pooled with `+`: the flat-out
    triple, 2 frontends with maxconn 1 and 2, and per equal load (2 frontends with maxconn 2,
    with maxconn 1, SANIC_WORKERS=2)."""

    one: Load
    two: Load
    own: Load
    two_maxconn_1: Load
    two_again: Load
    paced: list[tuple[Load, Load, Load]]

    def __add__(self, other: Scaling) -> Scaling:
        return Scaling(
            self.one + other.one,
            self.two + other.two,
            self.own + other.own,
            self.two_maxconn_1 + other.two_maxconn_1,
            self.two_again + other.two_again,
            [
                (a + x, b + y, c + z)
                for (a, b, c), (x, y, z) in zip(self.paced, other.paced, strict=True)
            ],
        )


def maxconn_and_tail(
    arrangement: dict[Setup, BenchCluster], rates: list[float], first_round: int
) -> tuple[Load, Load, list[tuple[Load, Load, Load]]]:
    """2 frontends with maxconn 1 and 2 (the same cluster, switched at run time) flat out, then
    with each maxconn against SANIC_WORKERS=2 at each of `rates`. Paced turns are seeded from
    `first_round` on, so that each arrangement meets streams of its own."""
    two_frontends, own = arrangement[TWO], arrangement[OWN]

    def two_with(maxconn: int, run: Run) -> Run:
        def switched(round_: int) -> Load:
            two_frontends.set_maxconn(maxconn)
            return run(round_)

        return switched

    two_maxconn_1, two_again = taking_turns(
        [
            two_with(1, flat_out(two_frontends.public)),
            two_with(2, flat_out(two_frontends.public)),
        ],
        SCALING_ROUNDS,
    )
    paced = []
    for rate in rates:
        two_paced, two_maxconn_1_paced, own_paced = taking_turns(
            [
                two_with(2, paced_at(rate, two_frontends.public)),
                two_with(1, paced_at(rate, two_frontends.public)),
                paced_at(rate, own.public),
            ],
            TAIL_ROUNDS,
            first_round,
        )
        paced.append((two_paced, two_maxconn_1_paced, own_paced))
    return two_maxconn_1, two_again, paced


def per_arrangement(figures: Iterable[float]) -> str:
    return " / ".join(f"{figure:.2f}" for figure in figures)


def flat_out(url: str) -> Run:
    return lambda _round: measure(url, USERS, ROUND_SECONDS)


def paced_at(rate: float, url: str) -> Run:
    def run(round_: int) -> Load:
        stream = at_rate(rate, PACED_USERS, seed=round_)
        return measure(url, PACED_USERS, ROUND_SECONDS, user=stream)

    return run


def taking_turns(runs: Sequence[Run], rounds: int, first_round: int = 0) -> list[Load]:
    """Every run in turn, `rounds` times (numbered from `first_round`); each run's loads pooled."""
    pooled = [run(first_round) for run in runs]
    for round_ in range(first_round + 1, first_round + rounds):
        pooled = [so_far + run(round_) for so_far, run in zip(pooled, runs, strict=True)]
    return pooled


if __name__ == "__main__":
    main()
