"""Conversations with known content, to check afterwards that no event was lost.

Worker threads each hold one conversation at a time (a booking over three turns, with a fresh
UUID sender), record every message they sent, and count failures: an HTTP error, a refused
connection, or a reply that is not the one the conversation's context calls for. After a
failure a worker waits (Retry-After on a 429, else a second) before it starts over, as a client
would: retrying at once during an outage would push this one source address past the public
LB's rate limit, and every refused retry would keep it there.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests

TURNS = (
    ("book a table", "Which cuisine would you like?"),
    ("greek", "For how many people?"),
    ("7", "Booked: a table for 7 (greek cuisine)."),
)


@dataclass
class Driver:
    url: str
    workers: int = 4
    think_s: float = 0.2
    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Driver:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._work, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _work(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            sender = str(uuid.uuid4())
            for message, expected in TURNS:
                with self._lock:
                    self.sent[sender].append(message)
                started = time.monotonic()
                pause = 1.0  # before the next conversation, if this turn fails
                try:
                    response = session.post(
                        f"{self.url}/webhooks/rest/webhook",
                        json={"sender": sender, "message": message},
                        timeout=60,
                    )
                    pause = float(response.headers.get("Retry-After", pause))
                    texts = [m.get("text", "") for m in response.json() if "text" in m]
                    ok = (
                        response.status_code == 200
                        and bool(texts)
                        and texts[0].startswith(expected)
                    )
                    problem = "" if ok else f"{response.status_code} {texts[:1]} to {message!r}"
                except (requests.RequestException, ValueError) as error:
                    problem = f"{type(error).__name__}: {error}"
                with self._lock:
                    self.latencies.append((started, time.monotonic() - started))
                    if problem:
                        self.failures.append(f"{sender}: {problem}")
                        self.failed_at.append(started)
                if problem:
                    self._stop.wait(pause)
                    break  # this conversation is off track; start a new one
                time.sleep(self.think_s)

    def failures_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for when in self.failed_at if when >= moment)

    def during(self, start: float, end: float) -> tuple[list[str], float]:
        """The failures of requests sent from `start` until `end`, and the slowest reply of the
        requests under way at any time in between (one sent before `start` may have been cut off)."""
        with self._lock:
            failed = [
                f
                for f, when in zip(self.failures, self.failed_at, strict=True)
                if start <= when < end
            ]
            slowest = max(
                (took for when, took in self.latencies if when < end and when + took >= start),
                default=0.0,
            )
        return failed, slowest

    def successes_since(self, moment: float) -> int:
        with self._lock:
            failed = sum(1 for when in self.failed_at if when >= moment)
            return sum(1 for when, _ in self.latencies if when >= moment) - failed

    def lost_or_reordered(self, mongo: Any) -> list[str]:
        """Senders whose tracker does not hold exactly the user messages sent, in order."""
        problems = []
        conversations = mongo["rasa"]["conversations"]
        for sender, messages in self.sent.items():
            document = conversations.find_one({"sender_id": sender}) or {"events": []}
            got = [e.get("text") for e in document["events"] if e.get("event") == "user"]
            if got != messages:
                problems.append(f"{sender}: sent {messages}, tracker has {got}")
        return problems
