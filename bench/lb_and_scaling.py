"""Benchmarks 1, 2 and 4 of the load-testing issue, on one bench cluster and a peer beside it:

1. LB overhead: one frontend, direct vs through the public LB (throughput ratio, p99 difference).
2. Scale-out: 1 vs 2 frontends through the LB, beside one frontend with SANIC_WORKERS=2
   (Rasa's own answer), and the p99 of 2 frontends vs SANIC_WORKERS=2 at equal load.
4. Time to ready: `syrcad up` from nothing (images present) and one `scale` step.

    python bench/lb_and_scaling.py     # about 30 minutes; writes bench/results/lb_and_scaling.md
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import RESULTS, BenchCluster, Greeter, Load, at_rate, machine, measure

USERS = 10
# The equal loads for the tail comparison: these shares of what the SANIC_WORKERS=2 peer serves
# flat out, sent as a Poisson stream by enough users that few of them wait on a slow reply.
EQUAL_LOAD_SHARES = (0.5, 0.75)
PACED_USERS = 40
# This machine's speed drifts by up to a quarter within minutes (the CPU time Rasa spends per
# request, per container, went from 23 to 29 ms between two runs of one setup). So every pair of
# setups compared stands side by side (2 frontends and the SANIC_WORKERS=2 peer as two clusters,
# the idle one costing next to nothing), and the two take turns in short runs that are pooled: a
# drift then hits both alike. A p99 rests on its slowest few requests, so the paced rows take more
# turns than the throughput rows; and in each turn both setups get the same seeded Poisson stream.
ROUNDS = 4
TAIL_ROUNDS = 8
ROUND_SECONDS = 20
# A per-server maxconn HAProxy never reaches: the LB forwards every request at once and the Rasa
# process's own workers do all the queueing.
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
        "load generator on the same cores, every deployment warmed before it is measured. "
        "The setups compared in pairs (direct and through the LB; 2 frontends and "
        "SANIC_WORKERS=2, the latter two side by side as two clusters) take turns in runs of "
        f"{ROUND_SECONDS} s, {ROUNDS} each (the `at … req/s` rows: {TAIL_ROUNDS} each), "
        "pooled, so that the machine's drift in speed hits both alike. The `at … req/s` rows "
        f"send a Poisson stream of requests ({PACED_USERS} users, each sending at exponentially "
        "distributed intervals), in each turn the same seeded stream to both setups.",
        "",
        "| setup | req/s | p50 ms | p99 ms | requests | failed |",
        "|---|---|---|---|---|---|",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch,
        BenchCluster(Path(scratch)) as cluster,
        BenchCluster(Path(scratch) / "peer", name="benchpeer", port_offset=100) as peer,
    ):
        # The LB's cost as a plain forwarder, then with its queue (the default maxconn), which
        # trades some throughput for a shorter tail: two different questions, two pairs.
        cluster.configure(frontends=1, maxconn=NO_LB_QUEUE)
        up_s = cluster.up()
        direct, forwarded = taking_turns(flat_out, cluster.direct, cluster.public, ROUNDS)
        cluster.configure(frontends=1)
        cluster.up()
        direct_again, via_lb = taking_turns(flat_out, cluster.direct, cluster.public, ROUNDS)
        lines += [
            row("1 frontend, direct", direct),
            row(
                "1 frontend, through the LB as a plain forwarder (maxconn never reached)", forwarded
            ),
            row("1 frontend, direct (again, beside the next row)", direct_again),
            row("1 frontend, through the LB with its queue (maxconn 2, the default)", via_lb),
        ]

        scale_s = cluster.scale(frontends=2)
        peer.configure(frontends=1, sanic_workers=2)
        peer.up()
        queued = measure(peer.public, USERS, ROUNDS * ROUND_SECONDS)
        peer.configure(frontends=1, sanic_workers=2, maxconn=NO_LB_QUEUE)
        peer.up()
        two, own = taking_turns(flat_out, cluster.public, peer.public, ROUNDS)
        rates = [share * own.rps for share in EQUAL_LOAD_SHARES]
        paced = {
            rate: taking_turns(paced_at(rate), cluster.public, peer.public, TAIL_ROUNDS)
            for rate in rates
        }
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
        f"- LB overhead, as a plain forwarder: throughput ratio {forwarded.rps / direct.rps:.3f} "
        f"(target ≥ 0.97), p99 difference {forwarded.p99_ms - direct.p99_ms:+.0f} ms "
        "(target ≤ 2 ms)",
        f"- the LB with its queue (the default): throughput ratio "
        f"{via_lb.rps / direct_again.rps:.3f}, p99 difference "
        f"{via_lb.p99_ms - direct_again.p99_ms:+.0f} ms",
        f"- scale-out: 2 frontends = {two.rps / via_lb.rps:.2f}× one frontend (target ≥ 1.7×); "
        f"SANIC_WORKERS=2 = {own.rps / via_lb.rps:.2f}× one frontend",
        *tails,
        f"- time to ready: `syrcad up` from nothing {up_s:.0f} s; `syrcad scale frontend=2` {scale_s:.0f} s",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "lb_and_scaling.md").write_text(text, encoding="utf-8")
    print(text)


def flat_out(url: str, _round: int) -> Load:
    return measure(url, USERS, ROUND_SECONDS)


def paced_at(rate: float) -> Callable[[str, int], Load]:
    def run(url: str, round_: int) -> Load:
        stream = at_rate(rate, PACED_USERS, seed=round_)
        return measure(url, PACED_USERS, ROUND_SECONDS, user=stream)

    return run


def taking_turns(
    run: Callable[[str, int], Load], first: str, second: str, rounds: int
) -> tuple[Load, Load]:
    """`run(url, round)` against each URL in turn, `rounds` times; each URL's runs pooled."""
    on_first, on_second = run(first, 0), run(second, 0)
    for round_ in range(1, rounds):
        on_first += run(first, round_)
        on_second += run(second, round_)
    return on_first, on_second


if __name__ == "__main__":
    main()
