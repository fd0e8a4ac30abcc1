"""Where the cores go under load, with 1 and then 2 frontends.

Samples `docker stats` while the closed-loop load of bench/lb_and_scaling.py runs, and adds the
load generator's own CPU. A frontend that is not at 100 % of a core while requests queue is
waiting, not computing (Rasa 3.6's MongoTrackerStore calls pymongo synchronously, blocking the
event loop for every tracker read and write).

    python bench/cpu_share.py     # about 5 minutes; writes bench/results/cpu_share.md
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness import RESULTS, BenchCluster, machine, measure

USERS = 10
SECONDS = 40


def sample_cpu(into: list[dict[str, float]], stop: threading.Event) -> None:
    """CPU % (of one core) per bench container, every few seconds until `stop`."""
    time.sleep(8)  # past the warm-up
    while not stop.is_set():
        listing = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        into.append(
            {
                line.split()[0].removeprefix("bench-").removesuffix("-1"): float(
                    line.split()[1].rstrip("%")
                )
                for line in listing.splitlines()
                if line.startswith("bench-")
            }
        )
        stop.wait(3)


def main() -> None:
    cores = os.cpu_count() or 1
    lines = [
        f"# CPU share under load ({machine()})",
        "",
        f"{USERS} closed-loop users, {SECONDS} s, load generator on the same cores. "
        "CPU in % of one core, averaged over the run.",
        "",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch,
        BenchCluster(Path(scratch)) as cluster,
    ):
        for frontends in (1, 2):
            cluster.configure(frontends=frontends)
            cluster.up()
            samples: list[dict[str, float]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_cpu, args=(samples, stop))
            sampler.start()
            own_before = time.process_time()
            load = measure(cluster.public, USERS, SECONDS)
            generator = 100 * (time.process_time() - own_before) / (SECONDS + 5)
            stop.set()
            sampler.join()
            names = sorted({n for s in samples for n in s})
            mean = {n: sum(s.get(n, 0) for s in samples) / max(1, len(samples)) for n in names}
            busy = (sum(mean.values()) + generator) / 100
            block = [
                f"## {frontends} frontend(s): {load.rps:.1f} req/s, p99 {load.p99_ms:.0f} ms",
                "",
                "| process | CPU % |",
                "|---|---|",
                *(f"| {n} | {mean[n]:.0f} |" for n in names if mean[n] >= 0.5),
                f"| load generator | {generator:.0f} |",
                f"| **cores busy** | **{busy:.2f} of {cores}** |",
                "",
            ]
            lines += block
            print("\n".join(block), flush=True)
    (RESULTS / "cpu_share.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"written: {RESULTS / 'cpu_share.md'}")


if __name__ == "__main__":
    main()
