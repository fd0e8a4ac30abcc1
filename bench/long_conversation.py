"""What a long conversation costs per turn: one sender, TURNS turns one after another, on a
syrcad cluster (Mongo tracker store, Redis lock store, the LB) and on a bare Rasa of the same
image, bot and model with its in-memory tracker store, turn by turn in step so that both see the
same moments of this machine.

Rasa replays a sender's conversation on every turn, so both curves rise; what syrcad adds is the
difference. Its tracker store keeps a conversation in chunks of events, saves by pushing into the
last one and reads only what the frontend does not hold yet (syrcad_turns.MongoTrackerStore,
syrcad_event_chunks.py). The target: syrcad's added time in the last window no more than in the
first, give or take NOISE_MS.

    python bench/long_conversation.py    # about 5 minutes; writes bench/results/long_conversation.md
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid

# Locust, which harness loads, patches the standard library with gevent before ssl is imported.
from harness import RESULTS, ROOT, machine, running_cluster

# isort: split
import requests

from syrcad.apply.deployment import prepare

TURNS = 300
WINDOW = 30  # turns per median
BARE_PORT = 25999
BARE_NAME = "bench-bare-rasa"
# Medians of 30 turns on a shared 2-core machine move by a few milliseconds run to run.
NOISE_MS = 5.0


def start_bare_rasa(image: str, model: str) -> str:
    """Rasa as its own docs run it: `rasa run` on the bot's folder, no tracker or lock store
    configured (in memory), the REST channel; returns its URL once a model is loaded."""
    subprocess.run(["docker", "rm", "-f", BARE_NAME], capture_output=True, check=False)
    subprocess.run(
        [
            "docker", "run", "-d", "--name", BARE_NAME,
            "-p", f"127.0.0.1:{BARE_PORT}:5005",
            "-v", f"{ROOT / 'bot'}:/app:ro", "-w", "/app",
            "-e", "HOME=/tmp", "-e", "RASA_TELEMETRY_ENABLED=false",
            image, "run", "--enable-api", "--connector", "rest", "--model", f"/app/{model}",
        ],
        capture_output=True, check=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{BARE_PORT}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/status", timeout=5).ok:
                return url
        except requests.RequestException:
            pass
        time.sleep(2)
    raise SystemExit(f"the bare Rasa did not load its model within 300 s:\n{logs(BARE_NAME)}")


def logs(container: str) -> str:
    done = subprocess.run(
        ["docker", "logs", "--tail", "30", container], capture_output=True, text=True, check=False
    )
    return done.stdout + done.stderr


def turn_ms(session: requests.Session, url: str, sender: str) -> float:
    started = time.perf_counter()
    reply = session.post(
        f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": "hello"}, timeout=60
    )
    took_ms = (time.perf_counter() - started) * 1000
    if reply.status_code != 200 or not reply.json():
        raise SystemExit(f"{url} answered {reply.status_code}: {reply.text[:200]}")
    return took_ms


def main() -> None:
    with running_cluster(frontends=1) as cluster:
        dep = prepare(cluster.hosts)
        bare = start_bare_rasa(dep.cluster.images.rasa, dep.cluster.services.frontend.model)
        try:
            urls = {"syrcad": cluster.public, "bare": bare}
            senders = {name: str(uuid.uuid4()) for name in urls}
            times: dict[str, list[float]] = {name: [] for name in urls}
            with requests.Session() as session:
                for url in urls.values():  # warm each Rasa on other senders first
                    for _ in range(20):
                        turn_ms(session, url, str(uuid.uuid4()))
                for _ in range(TURNS):
                    for name, url in urls.items():
                        times[name].append(turn_ms(session, url, senders[name]))
        finally:
            subprocess.run(["docker", "rm", "-f", BARE_NAME], capture_output=True, check=False)

    rows = []
    for start in range(0, TURNS, WINDOW):
        syrcad_ms, bare_ms = (
            statistics.median(times[n][start : start + WINDOW]) for n in ("syrcad", "bare")
        )
        rows.append((f"{start + 1}-{start + WINDOW}", syrcad_ms, bare_ms, syrcad_ms - bare_ms))
    first_added, last_added = rows[0][3], rows[-1][3]
    met = last_added <= first_added + NOISE_MS
    lines = [
        f"# One long conversation ({machine()})",
        "",
        f'One sender, {TURNS} turns ("hello") one after another, on a syrcad cluster (1 frontend, '
        "Mongo tracker store, Redis lock store, through the LB) and on a bare Rasa with its "
        "in-memory tracker store, same image, bot and model, turn by turn in step. "
        f"Median milliseconds per turn over each {WINDOW} turns.",
        "",
        "| turns | syrcad | bare Rasa | syrcad adds |",
        "|---|---|---|---|",
        *(f"| {w} | {s:.0f} | {b:.0f} | {a:+.0f} |" for w, s, b, a in rows),
        "",
        f"Target: syrcad adds no more at turns {rows[-1][0]} than at turns {rows[0][0]} "
        f"(±{NOISE_MS:.0f} ms): {first_added:+.0f} → {last_added:+.0f} ms, "
        f"{'met' if met else 'NOT met'}.",
        "",
        "Both curves rise because Rasa replays the conversation's events on every turn; Rasa's "
        "`session_config.session_expiration_time` (minutes) starts a new session after that much "
        "silence, and a turn replays only its session (docs/runbook.md).",
    ]
    (RESULTS / "long_conversation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
