"""Same-sender races: two messages of one sender reach two frontends at the same moment.

Each sender plays rounds; in a round, two messages leave at once (a barrier), one to each
frontend, bypassing the LB. Afterwards every tracker must hold every message answered with a 200
exactly once, none that was refused, and each round's messages after all of the previous round's.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from .conftest import StoredTrackers


@dataclass(frozen=True)
class Refusal:
    sender: str
    text: str
    at: float  # time.monotonic() of the answer
    what: str


@dataclass
class RaceResult:
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0  # time.monotonic() once every message of the race was answered
    messages: int = 0
    lost: int = 0  # answered 200, not in the tracker
    recorded_refused: int = 0  # refused, yet in the tracker
    duplicated: int = 0
    reordered: int = 0
    errors: list[Refusal] = field(default_factory=list)

    def add(self, other: RaceResult) -> None:
        """`other`'s counts and refusals added to these."""
        for name in ("messages", "lost", "recorded_refused", "duplicated", "reordered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors

    def __str__(self) -> str:
        return (
            f"{self.messages} messages: {self.lost} lost, {self.duplicated} duplicated, "
            f"{self.reordered} reordered, {len(self.errors)} refused "
            f"({self.recorded_refused} of those recorded)"
        )


def _post(
    url: str, sender: str, text: str, barrier: threading.Barrier, errors: list[Refusal]
) -> None:
    barrier.wait()
    try:
        response = requests.post(
            f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=120
        )
        if response.status_code != 200:
            errors.append(Refusal(sender, text, time.monotonic(), f"HTTP {response.status_code}"))
    except requests.RequestException as error:
        errors.append(Refusal(sender, text, time.monotonic(), str(error)))


def play(frontends: list[str], sender: str, rounds: int, errors: list[Refusal]) -> list[list[str]]:
    sent = []
    for number in range(rounds):
        refused = len(errors)
        pair = [f"{sender[:8]} round {number} via {i}" for i in range(len(frontends))]
        barrier = threading.Barrier(len(frontends))
        threads = [
            threading.Thread(target=_post, args=(url, sender, text, barrier, errors))
            for url, text in zip(frontends, pair, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent.append(pair)
        if len(errors) > refused:
            time.sleep(1)  # as a client told to send again later would
    return sent


def race(
    frontends: list[str],
    trackers: StoredTrackers,
    senders: int = 50,
    rounds: int = 10,
    parallel: int = 8,
) -> RaceResult:
    result = RaceResult()
    ids = [str(uuid.uuid4()) for _ in range(senders)]
    with ThreadPoolExecutor(parallel) as pool:
        plays = dict(
            zip(
                ids, pool.map(lambda s: play(frontends, s, rounds, result.errors), ids), strict=True
            )
        )
    result.ended = time.monotonic()
    refused = {(e.sender, e.text) for e in result.errors}
    for sender, rounds_sent in plays.items():
        got = [e.get("text") for e in trackers.events(sender) if e.get("event") == "user"]
        sent = [text for pair in rounds_sent for text in pair]
        result.messages += len(sent)
        counts = Counter(got)
        answered = [text for text in sent if (sender, text) not in refused]
        result.lost += sum(1 for text in answered if counts[text] == 0)
        result.recorded_refused += sum(1 for t in sent if (sender, t) in refused and counts[t])
        result.duplicated += sum(n - 1 for n in counts.values() if n > 1)
        round_of = {text: number for number, pair in enumerate(rounds_sent) for text in pair}
        seen = [round_of[text] for text in got if text in round_of]
        result.reordered += sum(1 for a, b in itertools.pairwise(seen) if b < a)
    return result
