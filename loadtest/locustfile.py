"""Conversational load: many users, each holding its own multi-turn conversation.

Each simulated user gets a fresh UUID sender id and talks like a person (think time between
turns). Replies are checked: a wrong or empty answer counts as a failure (Rasa is known to answer
`[]` under load, rasa issue 7979), not only HTTP errors.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080             # web UI
    syrcad loadtest --hosts examples/local.yml --headless -u 20 -r 5 -t 1m    # headless, CSV + HTML
    python loadtest/locustfile.py http://127.0.0.1:8080                       # one user, for debugging
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from locust import HttpUser, between, events, run_single_user, task
from locust.env import Environment

WEBHOOK = "/webhooks/rest/webhook"
GREETING = "Hello! I can book you a table. Just say 'book a table'."
ASK_CUISINE = "Which cuisine would you like?"
ASK_PEOPLE = "For how many people?"
HOURS = "We are open every day from 11:00 to 23:00."
BYE = "Goodbye, enjoy your meal!"
ANYTHING_ELSE = "Anything else I can do for you?"


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

    def say(self, message: str, expected: str | None, name: str) -> list[dict[str, Any]]:
        """Send one turn; fail it unless the bot's first text is `expected` (prefix match)."""
        with self.client.post(
            WEBHOOK,
            json={"sender": self.sender, "message": message},
            name=name,
            catch_response=True,
        ) as response:
            try:
                replies: list[dict[str, Any]] = response.json()
            except ValueError:
                response.failure(f"not JSON (HTTP {response.status_code})")
                return []
            texts = [r.get("text", "") for r in replies if "text" in r]
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif not texts:
                response.failure("empty reply")
            elif expected is not None and not texts[0].startswith(expected):
                response.failure(f"unexpected reply {texts[0]!r} to {message!r}")
            return replies


class ShortExchange(ChatUser):
    """Says hello, asks the opening hours, leaves."""

    weight = 3

    @task
    def chat(self) -> None:
        self.say("hello", GREETING, "greet")
        self.say("when are you open", HOURS, "opening hours")
        self.say("bye", BYE, "goodbye")
        self.on_start()  # the next visit is a new person


class SlotFilling(ChatUser):
    """Books a table over several turns: the form fills cuisine and party size from context."""

    weight = 2

    @task
    def book(self) -> None:
        self.say("hi", GREETING, "greet")
        self.say("I want to book a table", ASK_CUISINE, "booking: start")
        self.say("indian", ASK_PEOPLE, "booking: cuisine")
        replies = self.say(
            "6", "Booked: a table for 6 (indian cuisine).", "booking: people (action)"
        )
        if replies and ANYTHING_ELSE not in [r.get("text") for r in replies]:
            events.request.fire(
                request_type="CHECK",
                name="booking: follow-up",
                response_time=0,
                response_length=0,
                exception=AssertionError("no follow-up question"),
            )
        self.say("no thanks", BYE, "goodbye")
        self.on_start()


class RepeatBooker(ChatUser):
    """Books again and again in one conversation: every third turn calls the action server."""

    weight = 1
    wait_time = between(0.5, 1.5)

    @task
    def book_again(self) -> None:
        self.say("book a table", ASK_CUISINE, "booking: start")
        self.say("french", ASK_PEOPLE, "booking: cuisine")
        self.say("2", "Booked: a table for 2 (french cuisine).", "booking: people (action)")


if __name__ == "__main__":
    # Debug one user against the URL given: `python loadtest/locustfile.py http://127.0.0.1:8080`
    SlotFilling.host = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    run_single_user(SlotFilling)
