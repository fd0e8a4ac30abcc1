"""Conversations with known content, to check afterwards that no event was lost.

Worker threads each hold one conversation at a time (a booking over three turns, with a fresh
UUID sender) and record each message sent and what came of it (an `Exchange`). A failure is an
HTTP error, a refused connection, or a reply that is not the one the conversation's context
calls for; tests tell these apart by the fields, not by the wording of a message. After a
failure a worker waits (Retry-After on a 429, else a second) before it starts over, as a client
would: retrying at once during an outage would push this one source address past the public
LB's rate limit, and every refused retry would keep it there.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from .conftest import StoredTrackers

TURNS = (
    ("book a table", "Which cuisine would you like?"),
    ("greek", "For how many people?"),
    ("7", "Booked: a table for 7 (greek cuisine)."),
)


@dataclass(frozen=True)
class Exchange:
    """One message a worker sent, and what came back."""

    sender: str
    message: str
    expected: str  # how the reply the conversation's context calls for begins
    sent_at: float  # time.monotonic()
    took_s: float
    status: int | None = None  # None: no HTTP response at all (refused, reset, timed out)
    reply: str | None = None  # the reply's first text, if it had one
    error: str = ""  # what went wrong before a reply could be read
    retry_after_s: float = 1.0  # how long a client waits before it starts over, after a failure
    failure: dict[str, Any] | None = None  # the JSON body of a non-200 answer (syrcad_turns.py)
    message_id: str | None = None  # the id the LB gave the message (X-Message-Id), to send it again

    @property
    def failed(self) -> bool:
        return not (self.status == 200 and (self.reply or "").startswith(self.expected))

    @property
    def empty_200(self) -> bool:
        """The lie the honest channels exist to prevent: all went well, and no reply."""
        return self.status == 200 and self.reply is None

    @property
    def cut_off(self) -> bool:
        """How a request lost with a replica (its own or its action server) ends: a 502 that says
        so, or (HAProxy's way to end some streams of a server it marks DOWN) the connection
        closed without an answer."""
        lost = (self.failure or {}).get("error") in ("replica_lost", "action_lost")
        return (self.status == 502 and lost) or self.status is None

    @property
    def wrong_reply(self) -> bool:
        """Answered (200, with text), but not with what the conversation's context calls for."""
        return self.failed and self.status == 200 and self.reply is not None


@dataclass
class Workers:
    """Threads that keep working until `stop()`; what they record is guarded by `_lock`."""

    _stop: threading.Event = field(default_factory=threading.Event, kw_only=True)
    _threads: list[threading.Thread] = field(default_factory=list, kw_only=True)
    _lock: threading.Lock = field(default_factory=threading.Lock, kw_only=True)

    def _start(self, work: Callable[..., None], each: Iterable[tuple[Any, ...]]) -> None:
        for args in each:
            thread = threading.Thread(target=work, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


@dataclass
class Driver(Workers):
    url: str
    workers: int = 4
    think_s: float = 0.2
    turns: tuple[tuple[str, str], ...] = TURNS  # (message, how its reply begins), in order
    # As a client that knows ids make it safe: a message cut off (its replica or host lost under
    # it) is sent again once, with its id, before the conversation goes on.
    send_again: bool = False
    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    exchanges: list[Exchange] = field(default_factory=list)

    def start(self) -> Driver:
        self._start(self._work, [()] * self.workers)
        return self

    def _work(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            sender = str(uuid.uuid4())
            for message, expected in self.turns:
                with self._lock:
                    self.sent[sender].append(message)
                message_id = uuid.uuid4().hex
                exchange = self._send(session, sender, message, expected, message_id)
                with self._lock:
                    self.exchanges.append(exchange)
                if exchange.cut_off and self.send_again:
                    exchange = self._send(session, sender, message, expected, message_id)
                    with self._lock:
                        self.exchanges.append(exchange)
                if exchange.failed:
                    self._stop.wait(exchange.retry_after_s)
                    break  # this conversation is off track; start a new one
                time.sleep(self.think_s)

    def _send(
        self, session: requests.Session, sender: str, message: str, expected: str, message_id: str
    ) -> Exchange:
        return send(session, self.url, sender, message, expected, message_id=message_id)

    def unanswered(self) -> list[Exchange]:
        """The messages whose last try failed (sent again or not)."""
        with self._lock:
            last = {(e.sender, e.message_id): e for e in self.exchanges}
        return [e for e in last.values() if e.failed]

    @property
    def failures(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.failed]

    def under_way(self, start: float, end: float) -> int:
        """How many requests were under way at some time from `start` until `end`."""
        with self._lock:
            return sum(
                1 for e in self.exchanges if e.sent_at < end and e.sent_at + e.took_s >= start
            )

    def failures_since(self, moment: float) -> int:
        return sum(1 for e in self.failures if e.sent_at >= moment)

    def successes_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for e in self.exchanges if e.sent_at >= moment and not e.failed)

    def during(self, start: float, end: float) -> tuple[list[Exchange], float]:
        """The failures, and the slowest reply, of the requests under way at any time from `start`
        until `end`: one sent before `start` is the one a fault there may cut off."""
        with self._lock:
            under_way = [
                e for e in self.exchanges if e.sent_at < end and e.sent_at + e.took_s >= start
            ]
        return [e for e in under_way if e.failed], max((e.took_s for e in under_way), default=0.0)

    def repeated_or_reordered(self, trackers: StoredTrackers) -> list[str]:
        """Senders whose tracker holds anything but the first user messages they sent, in order:
        a failed message may be missing (and what followed it), never there twice."""
        return [
            f"{sender}: sent {messages}, tracker has {got}"
            for sender, messages in self.sent.items()
            if (got := user_texts(trackers, sender)) != messages[: len(got)]
        ]

    def lost_or_reordered(self, trackers: StoredTrackers) -> list[str]:
        """Senders whose tracker does not hold exactly the user messages sent, in order."""
        return [
            f"{sender}: sent {messages}, tracker has {got}"
            for sender, messages in self.sent.items()
            if (got := user_texts(trackers, sender)) != messages
        ]


@dataclass
class Prober(Workers):
    """One first message of a new conversation every `every_s`, each on a new connection that
    gives up after `timeout_s`: when the entry point answers again after a fault."""

    url: str
    every_s: float = 0.25
    timeout_s: float = 2.0
    exchanges: list[Exchange] = field(default_factory=list)

    def start(self) -> Prober:
        self._start(self._probe, [()])
        return self

    def _probe(self) -> None:
        message, expected = TURNS[0]
        while not self._stop.wait(self.every_s):
            threading.Thread(
                target=lambda: self._record(
                    send(
                        requests.Session(),
                        self.url,
                        str(uuid.uuid4()),
                        message,
                        expected,
                        timeout_s=self.timeout_s,
                    )
                ),
                daemon=True,
            ).start()

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def first_answer_after(self, moment: float) -> float:
        """Seconds from `moment` until the first probe sent after it was answered (inf: none)."""
        with self._lock:
            answered = [
                e.sent_at + e.took_s for e in self.exchanges if e.sent_at > moment and not e.failed
            ]
        return min(answered, default=float("inf")) - moment


def user_texts(trackers: StoredTrackers, sender: str) -> list[str]:
    """The user messages `sender`'s tracker holds in the store, in order."""
    return [e.get("text") for e in trackers.events(sender) if e.get("event") == "user"]


def send(
    session: requests.Session,
    url: str,
    sender: str,
    message: str,
    expected: str,
    metadata: dict[str, Any] | None = None,
    timeout_s: float = 60,
    message_id: str | None = None,
) -> Exchange:
    """Send one message over the REST channel (again, with the `message_id` of its first try);
    what came of it."""
    started = time.monotonic()
    status = reply = failure = None
    error = ""
    retry_after_s = 1.0
    try:
        response = session.post(
            f"{url}/webhooks/rest/webhook",
            json={"sender": sender, "message": message, "metadata": metadata or {}},
            headers={"X-Message-Id": message_id} if message_id else {},
            timeout=timeout_s,
        )
        status = response.status_code
        message_id = response.headers.get("X-Message-Id")
        retry_after_s = float(response.headers.get("Retry-After", retry_after_s))
        body = response.json()
        if isinstance(body, dict):
            failure = body
        else:
            texts = [m["text"] for m in body if isinstance(m, dict) and "text" in m]
            reply = texts[0] if texts else None
    except (requests.RequestException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    took_s = time.monotonic() - started
    return Exchange(
        sender,
        message,
        expected,
        started,
        took_s,
        status,
        reply,
        error,
        retry_after_s,
        failure,
        message_id,
    )
