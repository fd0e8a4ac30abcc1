"""Benchmark 3: the source's table — latency of N requests sent within one second, N = 1, 10,
50, 100 — for 1 and 2 frontends, beside the numbers the Kubernetes write-up reported.

    python bench/source_table.py    # about 4 minutes; writes bench/results/source_table.{md,png}
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import RESULTS, ROOT, BenchCluster, machine

BURSTS = (1, 10, 50, 100)
# ../shared/reference/000: seconds, "1 second's requests / time taken", Rasa on Kubernetes nodes.
SOURCE = {
    1: ["0.5-0.7", "2.5-3.4", "12.5-14.2", "27-29"],
    2: ["0.5-0.7", "0.5-1.4", "3.9-6", "8-11.2"],
}


def bursts(url: str, out: Path) -> dict[int, tuple[float, float]]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtest" / "bursts.py"),
            "--headless",
            "--host",
            url,
            "--csv",
            str(out / "bursts"),
            "--only-summary",
        ],
        check=True,
        capture_output=True,
    )
    ranges = {}
    with (out / "bursts_stats.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["Name"].startswith("burst "):
                ranges[int(row["Name"].split()[1])] = (
                    float(row["Min Response Time"]) / 1000,
                    float(row["Max Response Time"]) / 1000,
                )
    return ranges


def main() -> None:
    measured: dict[int, dict[int, tuple[float, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="syrcad-bench-") as scratch,
        BenchCluster(Path(scratch)) as cluster,
    ):
        for frontends in (1, 2):
            cluster.configure(frontends=frontends)
            cluster.up()
            measured[frontends] = bursts(cluster.public, Path(scratch))
    lines = [
        f"# N requests within one second: latency range in seconds ({machine()})",
        "",
        "| setup | " + " | ".join(str(n) for n in BURSTS) + " |",
        "|---" * (len(BURSTS) + 1) + "|",
    ]
    for frontends, ranges in measured.items():
        cells = [f"{ranges[n][0]:.2f}-{ranges[n][1]:.2f}" if n in ranges else "-" for n in BURSTS]
        lines.append(f"| syrcad, {frontends} frontend(s), 2 cores | " + " | ".join(cells) + " |")
    for nodes, cells in SOURCE.items():
        lines.append(f"| source (Kubernetes), {nodes} node(s) | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "source_table.md").write_text(text, encoding="utf-8")
    print(text)
    plot(measured)


def plot(measured: dict[int, dict[int, tuple[float, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for frontends, ranges in measured.items():
        ns = [n for n in BURSTS if n in ranges]
        axis.fill_between(ns, [ranges[n][0] for n in ns], [ranges[n][1] for n in ns], alpha=0.3)
        axis.plot(
            ns,
            [ranges[n][1] for n in ns],
            marker="o",
            label=f"syrcad, {frontends} frontend(s): max",
        )
    for nodes, cells in SOURCE.items():
        axis.plot(
            BURSTS,
            [float(c.split("-")[1]) for c in cells],
            linestyle="--",
            marker="x",
            label=f"source, {nodes} node(s): max",
        )
    axis.set_xscale("log")
    axis.set_xlabel("requests sent within one second")
    axis.set_ylabel("latency (s)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(RESULTS / "source_table.png", dpi=110)


if __name__ == "__main__":
    main()
