"""Rasa's socket.io channel, spoken to as a web chat widget does, over one chosen transport.

A `SocketUser` keeps one conversation (its session id) across connections: on every connect,
the first and each automatic reconnect after its socket was cut, it asks for the same session
(`session_request`), as Rasa's web widget does with `session_persistence: true`. Replies arrive
as `bot_uttered` events, one per bot message.

`SocketDriver` keeps such users chatting (a booking over three turns each) while a test changes
the cluster under them, and records what each turn got.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import socketio

from .driver import TURNS, Workers

Transport = Literal["polling", "websocket"]
REPLY_TIMEOUT_S = 30.0


@dataclass
class SocketUser:
    url: str
    transport: Transport
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    path: str = "socket.io"  # where the server answers socket.io (a bot's: bots/NAME/socket.io)
    connects: int = 0  # the first connect and every reconnect
    disconnects: int = 0  # cuts: not counting close()
    custom: list[dict[str, Any]] = field(default_factory=list)  # replies without text
    errors: list[dict[str, Any]] = field(default_factory=list)  # bot_error: a turn that failed
    _replies: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    _confirmed: threading.Event = field(default_factory=threading.Event)
    _client: socketio.Client | None = None
    _closing: bool = False

    def connect(self) -> SocketUser:
        client = socketio.Client(
            reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1, ssl_verify=False
        )
        client.on("connect", self._on_connect)
        client.on("disconnect", self._on_disconnect)
        client.on("session_confirm", lambda _session: self._confirmed.set())
        client.on("bot_uttered", self._replies.put)
        client.on("bot_error", self._on_error)
        self._client = client  # before connecting: the connect handler runs meanwhile
        client.connect(
            self.url, transports=[self.transport], socketio_path=self.path, wait_timeout=10
        )
        self.wait_confirmed()
        return self

    def new_session(self) -> None:
        """Start another conversation on the same socket."""
        assert self._client is not None
        self.wait_confirmed()
        self.session_id = str(uuid.uuid4())
        self._confirmed.clear()
        with contextlib.suppress(socketio.exceptions.BadNamespaceError):
            # Cut just now: the reconnect asks for this session itself.
            self._client.emit("session_request", {"session_id": self.session_id})
        self.wait_confirmed()

    def _emit(self, event: str, data: dict[str, str]) -> None:
        """Emit once the session is confirmed; a socket cut just before goes on the next one
        (nothing left this client, so nothing is sent twice)."""
        assert self._client is not None
        for _ in range(10):
            self.wait_confirmed()
            try:
                self._client.emit(event, data)
                return
            except socketio.exceptions.BadNamespaceError:
                time.sleep(0.2)  # cut between the confirmation and the emit: reconnecting
        raise TimeoutError(f"could not emit {event}: the socket keeps being cut")

    def _on_error(self, failure: dict[str, Any]) -> None:
        self.errors.append(failure)
        self._replies.put({"error": failure})  # ends the wait for replies: none will come

    def _on_connect(self) -> None:
        self.connects += 1
        self._confirmed.clear()
        assert self._client is not None
        self._client.emit("session_request", {"session_id": self.session_id})

    def _on_disconnect(self, *_reason: object) -> None:
        if not self._closing:
            self.disconnects += 1
        self._confirmed.clear()

    def wait_reconnected(self, connects: int, timeout: float = REPLY_TIMEOUT_S) -> None:
        """Wait until this client has connected `connects` times in all and holds its session
        again: a socket cut by the LB comes back by itself, before the user says anything."""
        deadline = time.monotonic() + timeout
        while self.connects < connects and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.connects < connects:
            raise TimeoutError(f"{self.session_id}: {self.connects} connects, not {connects}")
        self.wait_confirmed(max(0.0, deadline - time.monotonic()))

    def wait_confirmed(self, timeout: float = REPLY_TIMEOUT_S) -> None:
        if not self._confirmed.wait(timeout):
            raise TimeoutError(f"no session_confirm for {self.session_id} in {timeout:.0f}s")

    def say(self, message: str, replies: int = 1, timeout: float = REPLY_TIMEOUT_S) -> list[str]:
        """Send `message`; the texts of the next `replies` bot messages (fewer if the socket was
        cut before they came: the caller tells by `disconnects`)."""
        while not self._replies.empty():  # a late reply to an earlier turn is not this one's
            self._replies.get_nowait()
        cut_before = self.disconnects
        self._emit("user_uttered", {"message": message, "session_id": self.session_id})
        texts: list[str] = []
        deadline = time.monotonic() + timeout
        while len(texts) < replies and time.monotonic() < deadline:
            try:
                event = self._replies.get(timeout=0.2)
            except queue.Empty:
                if self.disconnects != cut_before and self._confirmed.is_set():
                    # Cut and already reconnected: a reply due to the old socket is gone.
                    deadline = min(deadline, time.monotonic() + 3)
                continue
            if "error" in event:
                break
            if "text" in event:
                texts.append(str(event["text"]))
            else:
                self.custom.append(event)
        return texts

    @property
    def replica(self) -> str:
        """The frontend the LB binds this client to (its persistence cookie; polling only)."""
        assert self._client is not None and self._client.eio.http is not None
        return str(self._client.eio.http.cookies.get("SYRCAD_SIO", ""))

    def close(self) -> None:
        self._closing = True  # not a cut
        if self._client is not None:
            self._client.disconnect()


@dataclass(frozen=True)
class Turn:
    """One message a socket user sent, and what came back."""

    session_id: str
    transport: Transport
    message: str
    expected: str
    reply: str | None  # the first text that came back, None if none did
    cut: bool  # the socket was cut while this turn waited for its reply

    @property
    def answered(self) -> bool:
        return (self.reply or "").startswith(self.expected)


@dataclass
class SocketDriver(Workers):
    """Socket users on both transports holding booking conversations until stopped."""

    url: str
    tracker: Callable[[str], list[str]]  # session id → the user messages its tracker holds
    transports: tuple[Transport, ...] = ("polling", "websocket")
    think_s: float = 2.0  # a person reads and types; and all test clients share one address
    turns: list[Turn] = field(default_factory=list)
    users: list[SocketUser] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def start(self) -> SocketDriver:
        self._start(self._work, [(t,) for t in self.transports])
        return self

    def _work(self, transport: Transport) -> None:
        try:
            user = SocketUser(self.url, transport)
            with self._lock:
                self.users.append(user)
            user.connect()
            while not self._stop.is_set():
                user.new_session()
                for message, expected in TURNS:
                    self._turn(user, message, expected)
                    time.sleep(self.think_s)
            user.close()
        except Exception as error:  # a test thread must report, not die silently
            with self._lock:
                self.errors.append(f"{transport}: {type(error).__name__}: {error}")

    def _turn(self, user: SocketUser, message: str, expected: str) -> None:
        cut_before = user.disconnects
        texts = user.say(message)
        cut = user.disconnects != cut_before
        if not texts and cut and message not in self.tracker(user.session_id)[-1:]:
            # The socket was cut before Rasa took the message: send it again, once.
            texts = user.say(message)
        with self._lock:
            self.turns.append(
                Turn(
                    user.session_id, user.transport, message, expected, next(iter(texts), None), cut
                )
            )
