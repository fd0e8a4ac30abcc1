"""Conversational load: many users, each holding its own multi-turn conversation.

Each simulated user gets a fresh UUID sender id and talks like a person (think time between
turns). Replies are checked: a wrong or empty answer counts as a failure (Rasa is known to answer
`[]` under load, rasa issue 7979), not only HTTP errors.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080             # web UI
    syrcad loadtest --hosts examples/local.yml --headless -u 20 -r 5 -t 1m    # headless, CSV + HTML
    python loadtest/locustfile.py http://127.0.0.1:8080                       # one user, for debugging

With several bots, `--languages en,de` mixes users of both, routed by metadata.locale, and
`--path-prefix /bots/de` talks to one bot (`syrcad loadtest` sets these from hosts.yml).
"""

from __future__ import annotations

import itertools
import sys
import uuid
from typing import Any

from locust import HttpUser, between, events, run_single_user, task
from locust.env import Environment

WEBHOOK = "/webhooks/rest/webhook"
# What a user says in each language, and how the bot's answer begins: (message, reply).
LINES: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "greet": ("hello", "Hello! I can book you a table. Just say 'book a table'."),
        "hours": ("when are you open", "We are open every day from 11:00 to 23:00."),
        "bye": ("bye", "Goodbye, enjoy your meal!"),
        "book": ("I want to book a table", "Which cuisine would you like?"),
        "cuisine": ("indian", "For how many people?"),
        "people": ("6", "Booked: a table for 6 (indian cuisine)."),
        "no": ("no thanks", "Goodbye, enjoy your meal!"),
        "book again": ("book a table", "Which cuisine would you like?"),
        "cuisine again": ("french", "For how many people?"),
        "people again": ("2", "Booked: a table for 2 (french cuisine)."),
    },
    "de": {
        "greet": ("hallo", "Hallo! Ich reserviere Ihnen gern einen Tisch."),
        "hours": ("wann haben sie geöffnet", "Wir haben täglich von 11:00 bis 23:00 Uhr geöffnet."),
        "bye": ("tschüss", "Auf Wiedersehen, guten Appetit!"),
        "book": ("ich möchte einen tisch reservieren", "Welche Küche möchten Sie?"),
        "cuisine": ("italienisch", "Für wie viele Personen?"),
        "people": ("6", "Gebucht: ein Tisch für 6 (italienisch Küche)."),
        "no": ("nein danke", "Auf Wiedersehen, guten Appetit!"),
        "book again": ("tisch reservieren", "Welche Küche möchten Sie?"),
        "cuisine again": ("französisch", "Für wie viele Personen?"),
        "people again": ("2", "Gebucht: ein Tisch für 2 (französisch Küche)."),
    },
}
ANYTHING_ELSE = {
    "en": "Anything else I can do for you?",
    "de": "Kann ich sonst noch etwas für Sie tun?",
}
_next_user = itertools.count()


@events.init_command_line_parser.add_listener
def _thresholds(parser: Any) -> None:
    parser.add_argument(
        "--max-fail-ratio",
        type=float,
        default=0.01,
        include_in_web_ui=False,
        help="Exit non-zero when the share of failed requests is above this.",
    )
    parser.add_argument(
        "--max-p95-ms",
        type=float,
        default=0,
        include_in_web_ui=False,
        help="Exit non-zero when the 95th percentile response time is above this (0: no limit).",
    )
    parser.add_argument(
        "--languages",
        default="en",
        help="Comma-separated: the users speak these in turn, each naming its language in "
        "metadata.locale (a cluster with bots routes by it).",
    )
    parser.add_argument(
        "--path-prefix",
        default="",
        help="Before the webhook path: /bots/NAME talks to one bot of a cluster with bots.",
    )


@events.init.add_listener
def _known_languages(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    unknown = set((options.languages if options else "en").split(",")) - set(LINES)
    if unknown:
        sys.exit(
            f"--languages: no conversation written in {', '.join(sorted(unknown))} "
            f"(written: {', '.join(LINES)})"
        )


@events.quitting.add_listener
def _judge(environment: Environment, **_: Any) -> None:
    total = environment.stats.total
    options = environment.parsed_options
    if options is None or total.num_requests == 0:
        return
    p95 = total.get_response_time_percentile(0.95) or 0
    if total.fail_ratio > options.max_fail_ratio:
        print(
            f"FAIL: failure ratio {total.fail_ratio:.2%} above {options.max_fail_ratio:.2%}",
            file=sys.stderr,
        )
        environment.process_exit_code = 1
    elif options.max_p95_ms and p95 > options.max_p95_ms:
        print(f"FAIL: p95 {p95:.0f} ms above {options.max_p95_ms:.0f} ms", file=sys.stderr)
        environment.process_exit_code = 1


class ChatUser(HttpUser):
    """One person holding one conversation; subclasses are the kinds of people."""

    abstract = True
    wait_time = between(1, 3)  # reading and typing between turns

    def on_start(self) -> None:
        self.sender = str(uuid.uuid4())
        options = self.environment.parsed_options
        languages = (options.languages if options else "en").split(",")
        self.language = languages[next(_next_user) % len(languages)]
        self.webhook = (options.path_prefix if options else "").rstrip("/") + WEBHOOK
        # Named by language when the users speak several, so each shows apart in the report.
        self.prefix = f"{self.language}: " if len(languages) > 1 else ""

    def new_visit(self) -> None:
        """The next visit is a new person speaking the same language."""
        self.sender = str(uuid.uuid4())

    def turn(self, line: str, name: str) -> list[dict[str, Any]]:
        """Say `line` (LINES) in this user's language; fail unless the bot answers as it should."""
        message, expected = LINES[self.language][line]
        return self.say(message, expected, self.prefix + name)

    def say(self, message: str, expected: str | None, name: str) -> list[dict[str, Any]]:
        """Send one turn; fail it unless the bot's first text is `expected` (prefix match).

        A turn cut off with its frontend or that frontend's host (a 502 `replica_lost`, a 504, a
        connection closed without an answer) counts as failed, and is sent again once with the
        same X-Message-Id, as a client should: the frontend answers it from the tracker if the
        lost one had saved the turn (docs/runbook.md, "Sending a message again")."""
        message_id = uuid.uuid4().hex
        replies, cut_off = self._send(message, expected, name, message_id)
        if cut_off:
            replies, _ = self._send(message, expected, f"{name} (sent again)", message_id)
        return replies

    def _send(
        self, message: str, expected: str | None, name: str, message_id: str
    ) -> tuple[list[dict[str, Any]], bool]:
        """The replies, and whether the request was cut off (see `say`)."""
        with self.client.post(
            self.webhook,
            json={
                "sender": self.sender,
                "message": message,
                "metadata": {"locale": self.language},
            },
            headers={"X-Message-Id": message_id},
            name=name,
            catch_response=True,
        ) as response:
            try:
                body = response.json()
            except ValueError:
                response.failure(f"not JSON (HTTP {response.status_code})")
                return [], response.status_code in (0, 502, 504)
            if isinstance(body, dict):  # syrcad's or the LB's failure: {"error": ..., ...}
                response.failure(f"HTTP {response.status_code}: {body.get('error')}")
                lost = response.status_code == 504 or body.get("error") == "replica_lost"
                return [], lost
            replies: list[dict[str, Any]] = body
            texts = [r.get("text", "") for r in replies if "text" in r]
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif not texts:
                response.failure("empty reply")
            elif expected is not None and not texts[0].startswith(expected):
                response.failure(f"unexpected reply {texts[0]!r} to {message!r}")
            return replies, False


class ShortExchange(ChatUser):
    """Says hello, asks the opening hours, leaves."""

    weight = 3

    @task
    def chat(self) -> None:
        self.turn("greet", "greet")
        self.turn("hours", "opening hours")
        self.turn("bye", "goodbye")
        self.new_visit()


class SlotFilling(ChatUser):
    """Books a table over several turns: the form fills cuisine and party size from context."""

    weight = 2

    @task
    def book(self) -> None:
        self.turn("greet", "greet")
        self.turn("book", "booking: start")
        self.turn("cuisine", "booking: cuisine")
        replies = self.turn("people", "booking: people (action)")
        if replies and ANYTHING_ELSE[self.language] not in [r.get("text") for r in replies]:
            events.request.fire(
                request_type="CHECK",
                name=self.prefix + "booking: follow-up",
                response_time=0,
                response_length=0,
                exception=AssertionError("no follow-up question"),
            )
        self.turn("no", "goodbye")
        self.new_visit()


class RepeatBooker(ChatUser):
    """Books again and again in one conversation: every third turn calls the action server."""

    weight = 1
    wait_time = between(0.5, 1.5)

    @task
    def book_again(self) -> None:
        self.turn("book again", "booking: start")
        self.turn("cuisine again", "booking: cuisine")
        self.turn("people again", "booking: people (action)")


if __name__ == "__main__":
    # Debug one user against the URL given: `python loadtest/locustfile.py http://127.0.0.1:8080`
    SlotFilling.host = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    run_single_user(SlotFilling)
