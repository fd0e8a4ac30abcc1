"""What the Mongo stand-in's server pays per turn, by conversation length: Rasa's layout (one
document per conversation, a turn's events pushed into it) against syrcad's chunks of
CHUNK_EVENTS events (compose/rasa/syrcad_event_chunks.py), on one throw-away stand-in server.

Per length: saving a turn's 5 events, reading the conversation whole, and (chunks) reading what a
frontend that holds the conversation lacks. Medians of 5 tries, milliseconds, one run. And the
memory a frontend spends per event it holds.

    python bench/tracker_layout.py    # about a minute; writes bench/results/tracker_layout.md
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

# Locust, which harness loads, patches the standard library with gevent before ssl is imported.
from harness import RESULTS, ROOT, machine

# isort: split
import pymongo
import yaml

sys.path.insert(0, str(ROOT / "compose" / "rasa"))
import syrcad_event_chunks as chunked

LENGTHS = (30, 300, 1500, 3000)
TURN = 5  # events a "hello" turn adds
TRIES = 5
PORT = 27999
NAME = "bench-tracker-layout"
# A user message's event as Rasa stores it, with its parse data.
EVENT = {
    "event": "user",
    "timestamp": 1.0,
    "text": "hello",
    "parse_data": {
        "intent": {"name": "greet", "confidence": 0.99},
        "entities": [],
        "intent_ranking": [{"name": "greet", "confidence": 0.99}] * 5,
        "text": "hello",
    },
    "input_channel": "rest",
    "message_id": "0" * 32,
    "metadata": {},
}


def median_ms(call: Callable[[], object]) -> float:
    took = []
    for _ in range(TRIES):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def start_server() -> pymongo.MongoClient[dict[str, object]]:
    image = yaml.safe_load((ROOT / "examples" / "local.yml").read_text())["images"]["mongo"]
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    subprocess.run(
        ["docker", "run", "-d", "--name", NAME, "-p", f"127.0.0.1:{PORT}:27017", image],
        capture_output=True,
        check=True,
    )
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        "127.0.0.1", PORT, serverSelectionTimeoutMS=60_000
    )
    client.admin.command("ping")
    return client


def measure(db: Any, length: int) -> tuple[int, float, float, float, float, float, float]:
    """One conversation of `length` events stored both ways; the row of timings."""
    sender = f"s{length}"
    events = [dict(EVENT, timestamp=float(i)) for i in range(length)]
    db.conversations.insert_one({"sender_id": sender, "events": events})
    chunks = chunked.chunks_of(db.conversations)
    chunks.insert_many(chunked.as_chunks(sender, events))
    stored = [length]

    def push() -> None:
        turn = {"$push": {"events": {"$each": [EVENT] * TURN}}}
        db.conversations.update_one({"sender_id": sender}, turn)

    def append() -> None:
        chunked.append(chunks, sender, stored[0], [EVENT] * TURN)
        stored[0] += TURN

    tracemalloc.start()
    held = chunked.read(chunks, sender)
    held_bytes = tracemalloc.get_traced_memory()[0] / len(held)
    tracemalloc.stop()
    return (
        length,
        held_bytes,
        median_ms(push),
        median_ms(lambda: db.conversations.find_one({"sender_id": sender})),
        median_ms(append),
        median_ms(lambda: chunked.read(chunks, sender)),
        median_ms(lambda: chunked.read(chunks, sender, stored[0] - 1)),
    )


def main() -> None:
    client = start_server()
    try:
        rows = [measure(client["bench"], length) for length in LENGTHS]
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    lines = [
        f"# The tracker store's layout on the Mongo stand-in ({machine()})",
        "",
        f"Milliseconds, median of {TRIES}: a turn's save ({TURN} events) and reads, by the "
        "conversation's length in events.",
        "",
        "| events | Rasa: save | Rasa: read whole | chunks: save | chunks: read whole | "
        "chunks: read what a frontend lacks |",
        "|---|---|---|---|---|---|",
        *(
            f"| {n} | {a:.1f} | {b:.1f} | {c:.1f} | {d:.1f} | {e:.1f} |"
            for n, _, a, b, c, d, e in rows
        ),
        "",
        f"A frontend holding these events keeps about {rows[-1][1] / 1000:.1f} KB per user-message "
        "event in memory (Python objects, measured with tracemalloc); HELD_EVENTS in "
        "syrcad_turns.py bounds the total.",
    ]
    (RESULTS / "tracker_layout.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
