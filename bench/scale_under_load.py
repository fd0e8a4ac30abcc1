"""Benchmark of the scale issue: under steady conversational load, scale frontends 2→3→2 and
roll out the model; failed requests, p50/p99 during the changes vs steady state, and the time
from the scale command until the new replica serves (target: Rasa's boot time + 3 s).

    python bench/scale_under_load.py   # about 5 minutes; writes bench/results/scale_under_load.md
"""

from __future__ import annotations

import statistics
import sys
import time

from harness import RESULTS, ROOT, machine, percentile, running_cluster, syrcad

sys.path.insert(0, str(ROOT))
from tests.e2e.driver import Driver


def main() -> None:
    with running_cluster(frontends=2) as cluster:
        driver = Driver(cluster.public, workers=4).start()
        time.sleep(30)
        change_started = time.monotonic()
        started = time.monotonic()
        output = syrcad("scale", "frontend=3", "--hosts", str(cluster.hosts))
        to_serve = time.monotonic() - started
        syrcad("scale", "frontend=2", "--hosts", str(cluster.hosts))
        syrcad("rollout", "--hosts", str(cluster.hosts))
        change_ended = time.monotonic()
        time.sleep(5)
        driver.stop()
        boot = [
            float(line.split("boot ")[1].split("s")[0])
            for line in output.splitlines()
            if "boot " in line
        ]
    steady = [e.took_s * 1000 for e in driver.exchanges if e.sent_at < change_started]
    during = [
        e.took_s * 1000 for e in driver.exchanges if change_started <= e.sent_at <= change_ended
    ]
    lines = [
        f"# Scale and rollout under load ({machine()})",
        "",
        "4 conversation workers (3-turn bookings, 0.2 s think time); scale frontend 2→3→2, then a rollout.",
        "",
        "| phase | requests | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| steady (30 s) | {len(steady)} | {percentile(steady, 0.5):.0f} | {percentile(steady, 0.99):.0f} |",
        f"| during scale + rollout ({change_ended - change_started:.0f} s) | {len(during)} | "
        f"{percentile(during, 0.5):.0f} | {percentile(during, 0.99):.0f} |",
        "",
        f"- failed requests: {len(driver.failures)} of {len(driver.exchanges)}",
        f"- `syrcad scale frontend=3` until the new replica serves: {to_serve:.1f} s"
        + (f" (its Rasa boot: {statistics.mean(boot):.1f} s)" if boot else ""),
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "scale_under_load.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
