"""Rasa's socket.io channel through the public LB, as a web chat widget uses it."""

from __future__ import annotations

import pytest

from syrcad.apply import waits
from syrcad.apply.deployment import Reporter, prepare

from .conftest import E2ECluster
from .sockets import SocketUser, Transport

# Proven on the local layout: the channel and its stickiness do not change with the tracker
# store or with the hosts the frontends run on (the bots layout runs it under a bot's path too).
pytestmark = [pytest.mark.e2e, pytest.mark.local_layout]

GREETING = "Hello! I can book you a table. Just say 'book a table'."


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_socketio_booking_across_a_reconnect(cluster: E2ECluster, transport: Transport) -> None:
    """Greet, start the booking form, drop the socket, come back with the same session id on a
    new socket, finish the form: the action's confirmation arrives, the tracker holds it all."""
    first = SocketUser(cluster.public, transport).connect()
    try:
        assert first.say("hello") == [GREETING]
        assert first.say("book a table") == ["Which cuisine would you like?"]
    finally:
        first.close()

    again = SocketUser(cluster.public, transport, session_id=first.session_id).connect()
    try:
        assert again.say("italian") == ["For how many people?"]
        confirmation, follow_up = again.say("3", replies=2)
    finally:
        again.close()
    assert confirmation.startswith("Booked: a table for 3 (italian cuisine). Reference ")
    assert follow_up == "Anything else I can do for you?"
    assert {"served_by", "reference"} <= set(again.custom[-1]), again.custom
    conversation = ["hello", "book a table", "italian", "3"]
    assert cluster.saved_user_texts(first.session_id, conversation) == conversation


def test_draining_a_replica_moves_its_sockets(cluster: E2ECluster) -> None:
    """syrcad's drain cuts the sockets stuck to a replica (the LB would otherwise honour their
    cookie): the client reconnects to another replica by itself, and the conversation goes on
    there. (A message sent in the instant before the client notices the cut is lost with the old
    socket, as with any socket.io server going away; the load tests re-send those.)"""
    dep = prepare(cluster.hosts_file)
    user = SocketUser(cluster.public, "polling").connect()
    try:
        assert user.say("book a table") == ["Which cuisine would you like?"]
        stuck_to = next(c for c in dep.placement.of("frontend") if c.name == user.replica)
        waits.drain(dep, [stuck_to], Reporter())
        try:
            user.wait_reconnected(connects=2)
            assert user.say("thai") == ["For how many people?"]
            assert user.disconnects == 1 and user.connects == 2
            assert user.replica not in ("", stuck_to.name)
        finally:
            waits.enable(dep, [stuck_to])
        assert user.say("2", replies=2)[0].startswith("Booked: a table for 2 (thai cuisine).")
    finally:
        user.close()
    conversation = ["book a table", "thai", "2"]
    assert cluster.saved_user_texts(user.session_id, conversation) == conversation
