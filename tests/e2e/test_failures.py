"""A message whose processing fails is answered at once and honestly (syrcad_turns.py).

Each test holds calls in flight on purpose (the sample actions take `metadata.action_delay_s`)
and then kills the replica under them, so the failure it checks always happens; it asserts what
the client got, how fast, and what the tracker holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from syrcad.plan import readiness

from .conftest import EVENT_CHUNKS, E2ECluster, MongoTrackers, container, new_sender
from .driver import TURNS, Driver, Exchange, send, user_texts
from .faults import (
    action_calls_cut_off,
    crash,
    frontend_trouble,
    lb_trouble,
    lock_lease_s,
    sent_again_by_lb,
    wait_until_back_up,
)
from .sockets import SocketUser

pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]

HOURS = "We are open every day from 11:00 to 23:00."
# Long enough that every probe is still under way when the kill comes PROBE_HEAD_S after them.
PROBE_DELAY_S = 5.0
PROBE_HEAD_S = 2.0
# A killed process's connections are reset by the kernel at once: its LB answers within a
# moment; allow for a busy machine.
ANSWERED_AFTER_KILL_S = 2.0


def kill_under_probes(
    cluster: E2ECluster, service: str, probes: list[Callable[[], Exchange]]
) -> tuple[list[Exchange], float]:
    """Send the probes at once, kill -9 replica 1 of `service` while they are under way, and
    wait for it to be back in its LB; the probes' outcomes, and when the kill came."""
    with ThreadPoolExecutor(len(probes)) as pool:
        futures = [pool.submit(probe) for probe in probes]
        time.sleep(PROBE_HEAD_S)
        killed_at = time.monotonic()
        crash(cluster, service)
        outcomes = [f.result() for f in futures]
    wait_until_back_up(cluster, container(service))
    return outcomes, killed_at


def slow_message(
    cluster: E2ECluster, sender: str, message: str, expected: str, delay_s: float
) -> Callable[[], Exchange]:
    """A message whose action takes `delay_s`, to send when called; with an id of its own, as a
    client that may send it again gives it (the LB's cannot reach a client it cut off)."""
    metadata = {"action_delay_s": delay_s}
    message_id = uuid.uuid4().hex
    return lambda: send(
        requests.Session(),
        cluster.public,
        sender,
        message,
        expected,
        metadata,
        message_id=message_id,
    )


def answered_after(exchange: Exchange, moment: float) -> float:
    return exchange.sent_at + exchange.took_s - moment


def test_a_lost_action_call_fails_its_message_and_records_nothing(cluster: E2ECluster) -> None:
    """action_confirm_booking is not idempotent: its call lost with the server is not made
    again; the client gets a 502 that says so, and the tracker has none of that message."""
    senders = [new_sender() for _ in range(4)]
    for sender in senders:
        cluster.texts(sender, "book a table")
        cluster.texts(sender, "greek")
    delay = PROBE_DELAY_S + PROBE_HEAD_S
    probes = [slow_message(cluster, s, "7", "Booked: a table for 7", delay) for s in senders]
    since = datetime.now()
    outcomes, killed_at = kill_under_probes(cluster, "action", probes)
    lost = [o for o in outcomes if o.failed]
    slowest = max(answered_after(o, killed_at) for o in lost) if lost else 0.0
    print(
        f"\n{len(lost)} of {len(outcomes)} calls lost with action-1; answered {slowest:.2f}s after"
    )
    cut_off = action_calls_cut_off(cluster, since, "action-1")
    # The action LB logs at least one call cut off with action-1. Not always one line per lost
    # call: in 1 of about 5 runs a second lost call had no S or K line there (not yet explained).
    assert lost and 1 <= len(cut_off) <= len(lost), (outcomes, cut_off, lb_trouble(cluster, since))
    for outcome in lost:
        assert outcome.status == 502 and outcome.failure, outcome
        assert outcome.failure["error"] == "action_lost", outcome.failure
        assert outcome.failure["recorded"] is False
        # Nothing of the turn was saved: the conversation is where it was before "7" ...
        assert cluster.user_texts(outcome.sender) == ["book a table", "greek"]
        # ... and goes on from there when the client sends it again.
        assert cluster.texts(outcome.sender, "7")[0].startswith("Booked: a table for 7")
    assert slowest < ANSWERED_AFTER_KILL_S, lost
    assert all(o.reply and o.reply.startswith("Booked") for o in outcomes if not o.failed)


def test_an_idempotent_action_is_called_again_when_its_server_dies(cluster: E2ECluster) -> None:
    """action_opening_hours is listed as idempotent: a call lost with its server is made again
    on the other one, and the client gets the full reply."""
    senders = [new_sender() for _ in range(4)]
    question = "what are your opening hours"
    probes = [slow_message(cluster, s, question, HOURS, PROBE_DELAY_S) for s in senders]
    since = datetime.now()
    outcomes, _ = kill_under_probes(cluster, "action", probes)
    cut_off = action_calls_cut_off(cluster, since, "action-1")
    print(f"\n{len(cut_off)} calls lost with action-1 and made again; all {len(outcomes)} answered")
    assert cut_off, lb_trouble(cluster, since)
    assert [o for o in outcomes if o.failed] == [], (outcomes, frontend_trouble(cluster, since))
    for sender in senders:
        assert cluster.user_texts(sender) == [question]


def test_a_lost_frontends_requests_are_answered_by_another_and_recorded_once(
    cluster: E2ECluster,
) -> None:
    """kill -9 of a frontend under load, with requests certainly under way on it: the LB sends
    each of those to the other frontend with its message id, which answers it once the killed
    one's hold on the conversation has lapsed; no request fails, no tracker holds a message
    twice, whether or not the killed frontend had saved the turn."""
    since = datetime.now()
    driver = Driver(cluster.public, workers=4, think_s=0.1).start()
    senders: list[str] = []
    outcomes: list[Exchange] = []
    question = "when are you open"
    try:
        time.sleep(3)
        for _ in range(3):  # until the kill catches a probe under way on frontend-1
            round_senders = [new_sender() for _ in range(4)]
            senders += round_senders
            probes = [
                slow_message(cluster, s, question, HOURS, PROBE_DELAY_S) for s in round_senders
            ]
            outcomes, killed_at = kill_under_probes(cluster, "frontend", probes)
            ids = {o.message_id for o in outcomes if o.message_id}
            if sent_again := sent_again_by_lb(cluster, since, ids):
                break
    finally:
        driver.stop()
    failed = [o for o in outcomes if o.failed]
    failed += [f for f in driver.failures if f.sent_at + f.took_s >= killed_at]
    slowest = max(answered_after(o, killed_at) for o in outcomes)
    print(
        f"\n{len(sent_again)} of {len(outcomes)} probes were under way on frontend-1 and sent "
        f"to frontend-2; all answered within {slowest:.1f}s of the kill; {len(failed)} failed"
    )
    for f in failed:
        print(f"  {f.message!r}: {f.status} {f.failure or f.error}")
    assert sent_again, (outcomes, lb_trouble(cluster, since))  # the kill caught some under way
    assert failed == [], (failed, lb_trouble(cluster, since))
    # The other frontend waits for the killed one's lease on the conversation, then runs the
    # turn (its probe's action takes PROBE_DELAY_S) unless the tracker already holds it.
    assert slowest < lock_lease_s() + PROBE_DELAY_S + ANSWERED_AFTER_KILL_S, outcomes
    assert not any(e.empty_200 for e in driver.exchanges + outcomes)
    trackers = cluster.trackers()
    assert driver.repeated_or_reordered(trackers) == []
    assert all(user_texts(trackers, s) in ([], [question]) for s in senders)
    assert all(user_texts(trackers, o.sender) == [question] for o in outcomes)


def test_a_message_sent_again_is_answered_from_the_tracker(cluster: E2ECluster) -> None:
    """The same message id twice: the second gets the first's replies, and the conversation
    holds the message once and goes on from it."""
    sender = new_sender()
    session = requests.Session()
    first = send(session, cluster.public, sender, "book a table", "Which cuisine")
    assert not first.failed and first.message_id, first
    again = send(
        session,
        cluster.public,
        sender,
        "book a table",
        "Which cuisine",
        message_id=first.message_id,
    )
    assert (again.status, again.reply, again.message_id) == (200, first.reply, first.message_id)
    assert cluster.user_texts(sender) == ["book a table"]
    assert cluster.texts(sender, "greek") == ["For how many people?"]
    bad = session.post(
        f"{cluster.public}/webhooks/rest/webhook",
        json={"sender": sender, "message": "7"},
        headers={"X-Message-Id": "not an id"},
        timeout=30,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "bad_message_id", bad.text
    assert cluster.user_texts(sender) == ["book a table", "greek"]


def test_a_save_that_reaches_the_store_after_the_conversation_went_on_writes_nothing(
    cluster: E2ECluster,
) -> None:
    """A frontend cut off while it saves a turn: TCP delivers the save, still in its kernel's
    send queue, once the link returns, after another frontend answered the message again and
    the conversation went on. That save (made here with the frontends' own module, from where
    its writer read the conversation) writes nothing, and the conversation goes on whole; as
    it does in chunks of other sizes, written by a syrcad whose saves were not conditional."""
    if cluster.layout.tracker != "mongo":
        pytest.skip("the chunked layout is syrcad's Mongo tracker store's")
    store = cluster.store()
    assert isinstance(store, MongoTrackers)
    (book, which), (cuisine, how_many), (size, booked) = TURNS
    sender = new_sender()
    assert cluster.texts(sender, book)[0].startswith(which)
    read_at = len(store.events(sender))
    assert cluster.texts(sender, cuisine)[0].startswith(how_many)
    saved = store.events(sender)
    with pytest.raises(EVENT_CHUNKS.MovedOn):
        EVENT_CHUNKS.append(store.chunks, sender, read_at, saved[read_at:])
    assert store.events(sender) == saved
    assert cluster.texts(sender, size)[0].startswith(booked)
    assert cluster.user_texts(sender) == [book, cuisine, size]

    irregular = new_sender()
    store.chunks.insert_many(
        [
            {"sender_id": irregular, "chunk": 0, "events": saved[:2]},
            {"sender_id": irregular, "chunk": 1, "events": saved[2:]},
        ]
    )
    assert cluster.texts(irregular, size)[0].startswith(booked)
    went_on = store.events(irregular)
    assert went_on[: len(saved)] == saved and len(went_on) > len(saved)
    with pytest.raises(EVENT_CHUNKS.MovedOn):
        EVENT_CHUNKS.append(store.chunks, irregular, len(saved), went_on[len(saved) :])
    assert store.events(irregular) == went_on


@pytest.mark.parametrize("role", ["lock", "tracker"])
def test_a_store_outage_is_a_503_on_rest_and_an_error_event_on_socketio(
    cluster: E2ECluster, role: str
) -> None:
    """While a store is stopped, every message gets a 503 with Retry-After (REST) or a bot_error
    event (socket.io), soon, and nothing of it is recorded; once the store is back, the same
    conversations go on without restarting anything."""
    store = "redis" if role == "lock" else cluster.layout.tracker
    sender = new_sender()
    assert cluster.texts(sender, "book a table") == ["Which cuisine would you like?"]
    user = SocketUser(cluster.public, "websocket").connect()
    engine, name = cluster.docker(f"{store}-1"), container(store)
    try:
        assert user.say("hello")
        engine.stop(name)
        try:
            outcome = send(requests.Session(), cluster.public, sender, "greek", "For how many")
            assert user.say("book a table") == []
        finally:
            engine.start(name)
        print(f"\n{store} stopped: a 503 after {outcome.took_s:.2f}s; {user.errors}")
        assert outcome.status == 503 and outcome.failure, outcome
        assert outcome.failure["error"] == "store_unavailable" and outcome.retry_after_s > 0
        assert outcome.took_s < readiness.STORE_CONNECT_TIMEOUT_S + 2
        assert [e["error"] for e in user.errors] == ["store_unavailable"], user.errors
        back = time.monotonic()
        serving_after = wait_until_answered(cluster.public, sender, "greek", "For how many people?")
        # Each frontend closes its breaker when its own probes get answers: every one serves
        # again, not only the one the LB picked (the next test's first message may reach any).
        for url in cluster.frontend_urls():
            wait_until_answered(url, new_sender(), "book a table", "Which cuisine would you like?")
        every_frontend_after = time.monotonic() - back
    finally:
        user.close()
    print(
        f"{store} back: serving again after {serving_after:.1f}s, "
        f"on every frontend after {every_frontend_after:.1f}s"
    )
    assert serving_after < 5 + readiness.STORE_CONNECT_TIMEOUT_S, serving_after
    assert every_frontend_after < 5 + readiness.STORE_CONNECT_TIMEOUT_S, every_frontend_after
    assert cluster.user_texts(sender) == ["book a table", "greek"]
    assert cluster.user_texts(user.session_id) == ["hello"]


def wait_until_answered(url: str, sender: str, message: str, expected: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 60:
        outcome = send(requests.Session(), url, sender, message, expected)
        if not outcome.failed:
            return time.monotonic() - started
        assert outcome.status == 503, outcome  # a store coming back is not an excuse to lie
        time.sleep(0.5)
    raise AssertionError(f"no answer to {message!r} 60 s after the store came back")
