"""Honest turns for Rasa 3.6: a message whose processing fails gets an error, never a 200 without
the bot's reply, and the tracker holds nothing of it.

Rasa answers a failed turn as if it went well. Its REST channel returns 200 with whatever replies
it collected when anything raises; its processor logs a failed action call and carries on without
that action's events; its FailSafeTrackerStore answers a store outage with an empty tracker and
saves into memory. The client is told all went well and gets nothing, or an answer out of context.

Here, inside a turn started by one of the channels below:
- a failed action call, or a tracker store error, aborts the turn with `TurnAborted`. It derives
  from BaseException, like asyncio's CancelledError, so Rasa's catch-alls (`except Exception`)
  let it through. Rasa saves a turn's events only at its very end (MessageProcessor.
  handle_message), so an aborted turn leaves the tracker exactly as it was: the message is not
  recorded, and the client is told so;
- the channels answer an aborted or failed turn with a 5xx and a JSON body that says what failed,
  whether the message was recorded, and (Retry-After) when sending it again is safe. The socket.io
  channel emits `bot_error` with the same body to the session instead of staying silent;
- an action listed in `action_endpoint.idempotent_actions` is called again when its call is lost
  (its server died mid-call: 502 or 504 from the action LB, or the connection dropped), so the LB
  reaches another server; any other action's lost call aborts the turn, since it may have run.
  A call that no server took (no action LB could be connected to within a second, or the LB had
  no server up: 503) did not run, so any action's is made again.

Rasa's Mongo and SQL tracker stores block on their I/O inside `async def`s, so an unreachable
store froze the whole frontend for its timeouts: the LB's health checks went unanswered and it
took the replica out (502s and 503s from the LB instead of this module's 503). Here each store
call runs in a worker thread, with an event loop of its own: a store away holds up the turns
that need it, not the frontend. And once a store call got no answer, the next turns are refused
at once until every store answers again (syrcad_store_breaker.py, beside this file), instead of
each waiting out the store's timeouts while the messages behind it queue in the LB.

Outside a turn (Rasa's HTTP API) Rasa behaves as before.

syrcad mounts this file beside endpoints.yml (on PYTHONPATH), so the official Rasa image loads it
from credentials.yml (`syrcad_turns.RestInput`, `syrcad_turns.SocketIOInput`) and endpoints.yml
(`tracker_store.type: syrcad_turns.MongoTrackerStore` or `syrcad_turns.SQLTrackerStore`).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import random
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Type

import aiohttp
import cachetools
import pymongo
import pymongo.errors
import sqlalchemy
import sqlalchemy.exc
import rasa.utils.endpoints
from rasa.core.actions.action import ActionExecutionRejection, RemoteAction
from rasa.core.channels import rest, socketio
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT
from rasa.core.lock_store import LockError
from rasa.core.tracker_store import MongoTrackerStore as _MongoTrackerStore
from rasa.core.tracker_store import SQLTrackerStore as _SQLTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from sanic import Blueprint, response
from sanic.request import Request
import syrcad_event_chunks as event_chunks
from syrcad_store_breaker import PROBE_TIMEOUT_S, StoreNotAnswering, stores

logger = logging.getLogger(__name__)

# Seconds a client waits before sending a message again that was not recorded because a store or
# every action server was away: about one failover or restart of a store.
RETRY_AFTER_S = 5
# A message's id, given by the public LB, or by a client that sends a message again (after a
# failure, with the id the failure's answer carried): a message whose turn was saved is answered
# again from the tracker instead of being taken as a new one.
MESSAGE_ID_HEADER = "X-Message-Id"
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
BAD_MESSAGE_ID = {
    "error": "bad_message_id",
    "message": f"{MESSAGE_ID_HEADER} holds 1 to 64 letters, digits, '.', '_', ':' or '-'.",
    "recorded": False,
}
# Calls of an action, all told, when no action server took it, or (idempotent actions only) when
# it was lost; the action LB marks a dead server DOWN meanwhile, so the next call reaches another.
ACTION_ATTEMPTS = 3
# Seconds an action call waits to connect to an action LB. Under Swarm the action LB's name lists
# every LB task, a lost host's too until Swarm declares it down, and a connect to a lost host
# never answers: the call would wait out the whole turn's timeout.
ACTION_CONNECT_TIMEOUT_S = 1.0
# Seconds an action LB address that could not be connected to is tried only after the others.
UNREACHABLE_FOR_S = 30.0
# HTTP statuses of the action LB meaning no action server took the call: it did not run.
NOT_TAKEN = {503}
# ... meaning the server that took the call was lost before it answered: it may have run.
LOST = {502, 504}
# Threads for tracker store calls. While the store is away each call holds one for up to its
# timeouts, and under load that is many at once: asyncio's default pool (CPU count + 4) would queue
# every turn behind them, and still be working off that queue seconds after the store is back.
# A thread that waits on a socket costs little.
STORE_CALL_THREADS = 64


class TurnAborted(BaseException):
    """This message cannot be answered; nothing of its turn was saved."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        retry_after_s: Optional[int] = None,
        **details: Any,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.body: Dict[str, Any] = {
            "error": error,
            "message": message,
            "recorded": False,
            **details,
        }

    @property
    def headers(self) -> Dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else {}


_in_turn: contextvars.ContextVar[bool] = contextvars.ContextVar("syrcad_in_turn", default=False)


async def run_turn(
    on_new_message: Callable[[UserMessage], Awaitable[Any]], message: UserMessage
) -> Optional[TurnAborted]:
    """Handle one message; the reason it failed, or None."""
    token = _in_turn.set(True)
    try:
        await on_new_message(message)
        return None
    except TurnAborted as aborted:
        logger.error(f"Turn of '{message.sender_id}' aborted: {aborted}")
        return aborted
    except Exception as error:  # raised before the turn's save (the lock store swallows release errors)
        logger.exception(f"Turn of '{message.sender_id}' failed")
        return _aborted_by(error)
    finally:
        _in_turn.reset(token)


def _aborted_by(error: Exception) -> TurnAborted:
    if isinstance(error, StoreNotAnswering):
        return store_unavailable(error.store, error)
    if isinstance(error, LockError) or _from_module(error, "redis"):
        return store_unavailable("lock", error)
    if _from_module(error, "pymongo", "sqlalchemy", "psycopg2"):
        return store_unavailable("tracker", error)
    return TurnAborted(
        500, "turn_failed", f"The bot failed on this message: {type(error).__name__}."
    )


def _from_module(error: BaseException, *modules: str) -> bool:
    return type(error).__module__.split(".")[0] in modules


def store_unavailable(store: str, error: BaseException) -> TurnAborted:
    return TurnAborted(
        503,
        "store_unavailable",
        f"The {store} store cannot be reached ({type(error).__name__}); the message was not recorded. Send it again.",
        retry_after_s=RETRY_AFTER_S,
        store=store,
    )


def conversation_moved_on() -> TurnAborted:
    """Another frontend saved a turn of the conversation while this one was handled (the lock's
    lease lapsed under a turn that outlived it): this turn's save wrote nothing."""
    return TurnAborted(
        409,
        "conversation_moved_on",
        "The conversation went on in another frontend while this message was handled; the message was not recorded. Send it again.",
        retry_after_s=1,
    )


# --- action calls ------------------------------------------------------------------------------

# When each action LB address last could not be connected to (time.monotonic()).
_unreachable: Dict[str, float] = {}
# The address the current call connects to, when the action LB is reached by name.
_called_address: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "syrcad_called_address", default=None
)
# Not connected: the call never reached an action server. ServerTimeoutError is only the connect
# timeout here: _ActionEndpoint sets no read timeout.
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError)


class _OneReachableAddress(aiohttp.ThreadedResolver):
    """One address of the action LB's name per call, at random among those not found unreachable
    lately. aiohttp moves on to a name's next address when a connect is refused, not when it times
    out; with one address a failed connect fails the call, which is then made again (not taken)."""

    async def resolve(self, hostname: str, port: int = 0, family: int = socket.AF_INET) -> List[Dict[str, Any]]:
        addresses = await super().resolve(hostname, port, family)
        now = time.monotonic()
        reachable = [a for a in addresses if now - _unreachable.get(a["host"], -UNREACHABLE_FOR_S) >= UNREACHABLE_FOR_S]
        chosen = random.choice(reachable or addresses)
        _called_address.set(chosen["host"])
        return [chosen]


class _ActionEndpoint(rasa.utils.endpoints.EndpointConfig):
    """The action endpoint, with a connect timeout and an address that answers (see above)."""

    @classmethod
    def of(cls, endpoint: rasa.utils.endpoints.EndpointConfig) -> "_ActionEndpoint":
        return cls(
            endpoint.url, endpoint.params, endpoint.headers, endpoint.basic_auth, endpoint.token,
            endpoint.token_name, endpoint.cafile, **endpoint.kwargs,
        )

    def session(self) -> aiohttp.ClientSession:
        basic = self.basic_auth
        return aiohttp.ClientSession(
            headers=self.headers,
            auth=aiohttp.BasicAuth(basic["username"], basic["password"]) if basic else None,
            # Without the DNS cache aiohttp resolves in this call's task, which sets _called_address.
            connector=aiohttp.TCPConnector(resolver=_OneReachableAddress(), use_dns_cache=False),
        )

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        total = kwargs.pop("timeout", DEFAULT_REQUEST_TIMEOUT)
        kwargs["timeout"] = aiohttp.ClientTimeout(total=total, sock_connect=ACTION_CONNECT_TIMEOUT_S)
        _called_address.set(None)
        try:
            return await super().request(*args, **kwargs)
        except _NOT_CONNECTED:
            address = _called_address.get()
            if address is not None:
                _unreachable[address] = time.monotonic()
            raise


_call_remote_action = RemoteAction.run


async def _run_remote_action(self: RemoteAction, *args: Any, **kwargs: Any) -> Any:
    endpoint = self.action_endpoint
    if endpoint is not None and not isinstance(endpoint, _ActionEndpoint):
        self.action_endpoint = _ActionEndpoint.of(endpoint)
    idempotent = bool(endpoint) and self.name() in (endpoint.kwargs.get("idempotent_actions") or ())
    attempt = 1
    while True:
        try:
            return await _call_remote_action(self, *args, **kwargs)
        except ActionExecutionRejection:
            raise  # a form's validation said no: part of a normal turn
        except RasaException as error:
            status, cause = _http_status(error), error.__cause__ or error.__context__
            taken = status not in NOT_TAKEN and not isinstance(cause, _NOT_CONNECTED)
            lost = taken and (status in LOST or status is None)  # None: the connection dropped
            # A call not taken did not run, so any action is called again; a lost one may have run.
            if (not taken or (idempotent and lost)) and attempt < ACTION_ATTEMPTS:
                what = "lost" if lost else "not taken"
                logger.warning(f"Call of action '{self.name()}' {what} (attempt {attempt}); calling it again")
                attempt += 1
                await asyncio.sleep(0.2 * attempt)
                continue
            if not _in_turn.get():
                raise
            raise _action_aborted(self.name(), status, taken, lost) from error


def _action_aborted(action: str, status: Optional[int], taken: bool, lost: bool) -> TurnAborted:
    if not taken:
        return TurnAborted(
            503,
            "action_unavailable",
            f"No action server could take '{action}'; the message was not recorded. Send it again.",
            retry_after_s=RETRY_AFTER_S,
            action=action,
        )
    if lost:
        return TurnAborted(
            502,
            "action_lost",
            f"The action server running '{action}' was lost before it answered. The action may have "
            "taken effect; the message was not recorded.",
            action=action,
        )
    return TurnAborted(
        502,
        "action_failed",
        f"The action '{action}' failed on the action server (HTTP {status}); the message was not recorded.",
        action=action,
    )


def _http_status(error: BaseException) -> Optional[int]:
    status = getattr(error.__cause__ or error.__context__, "status", None)
    return status if isinstance(status, int) else None


# Rasa offers no hook around an action call; this wraps its one method that makes remote calls.
RemoteAction.run = _run_remote_action  # type: ignore[method-assign]


# --- tracker stores ----------------------------------------------------------------------------


class _AbortOnStoreError:
    """Inside a turn, a store error aborts it instead of reaching Rasa's in-memory fallback; once
    a call to a store got no answer, turns are refused before they call this one until every
    store answers again (syrcad_store_breaker.py)."""

    # The errors that mean the store did not answer, and a blocking call that raises unless it
    # answers within PROBE_TIMEOUT_S.
    UNANSWERED: Tuple[Type[BaseException], ...] = ()

    def _answers(self) -> None:
        raise NotImplementedError

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stores.watch("tracker", self._answers)

    async def retrieve(self, sender_id: str) -> Any:
        return await self._guarded(lambda: super(_AbortOnStoreError, self).retrieve(sender_id))  # type: ignore[misc]

    async def retrieve_full_tracker(self, sender_id: str) -> Any:
        return await self._guarded(lambda: super(_AbortOnStoreError, self).retrieve_full_tracker(sender_id))  # type: ignore[misc]

    async def save(self, tracker: Any) -> None:
        await self._guarded(lambda: super(_AbortOnStoreError, self).save(tracker))  # type: ignore[misc]

    async def _guarded(self, call: Callable[[], Awaitable[Any]]) -> Any:
        if _in_turn.get() and stores.is_open:
            refusal = stores.refusal()
            raise store_unavailable(refusal.store, refusal)
        started = time.monotonic()
        try:
            # The store's blocking calls off this loop (see the module's docstring).
            return await asyncio.get_running_loop().run_in_executor(_store_calls, asyncio.run, call())
        except event_chunks.MovedOn as moved_on:
            if _in_turn.get():
                raise conversation_moved_on() from moved_on
            raise
        except Exception as error:
            if isinstance(error, self.UNANSWERED):
                stores.failed("tracker", error, started)
            if _in_turn.get():
                raise store_unavailable("tracker", error) from error
            raise


_store_calls = ThreadPoolExecutor(STORE_CALL_THREADS, thread_name_prefix="syrcad-tracker-store")
# Events of the conversations a frontend read or saved last that it keeps, all told: at most about
# 40 MB of a frontend's memory (a user message's event holds about 4 KB); a 300-turn
# conversation is some 1,500 events.
HELD_EVENTS = 10_000
# Where a tracker's events stand in the store: (the number of its first event in the whole
# conversation, how many of its events the store holds).
_STORED = "_syrcad_stored"


class _HeldConversations:
    """The conversations this frontend read or saved last, up to HELD_EVENTS events in all, for
    the store's worker threads."""

    def __init__(self) -> None:
        self._held: cachetools.LRUCache[str, List[Dict[str, Any]]] = cachetools.LRUCache(
            HELD_EVENTS, getsizeof=len
        )
        self._lock = threading.Lock()

    def get(self, sender: str) -> List[Dict[str, Any]]:
        with self._lock:
            return self._held.get(sender) or []

    def put(self, sender: str, events: List[Dict[str, Any]]) -> None:
        with self._lock:
            if events and len(events) <= HELD_EVENTS:
                self._held[sender] = events
            else:
                self._held.pop(sender, None)


class _ChunkedMongoTrackerStore(_MongoTrackerStore):
    """Rasa's Mongo tracker store (same keys as `type: mongod`), keeping each conversation in
    chunks of events (syrcad_event_chunks.py, beside this file): a turn's save pushes its events
    into the last chunk, never reading the conversation; a turn's read fetches only what the
    frontend does not already hold. syrcad's cost per turn stays flat as a conversation grows,
    where Rasa's store reads the whole conversation twice a turn and rewrites it once.

    Any frontend still serves any turn: what it holds of a conversation is only a beginning of
    it, checked against the store's copy of its last event on every read.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held = _HeldConversations()
        super().__init__(*args, **kwargs)

    def _ensure_indices(self) -> None:  # Rasa's __init__ calls it
        super()._ensure_indices()
        self.chunks = event_chunks.chunks_of(self.conversations)

    def _conversation(self, sender: str) -> List[Dict[str, Any]]:
        """Every event of `sender`'s conversation, oldest first."""
        held = self._held.get(sender)
        if held:
            since_last = event_chunks.read(self.chunks, sender, len(held) - 1)
            if since_last and _same_event(since_last[0], held[-1]):
                events = held + since_last[1:]
            else:  # the store's copy is not what this frontend held (a restore): read it all
                held = []
        if not held:
            events = event_chunks.read(self.chunks, sender) or event_chunks.move_from_rasa_layout(
                self.conversations, self.chunks, sender
            )
        self._held.put(sender, events)
        return events

    async def retrieve(self, sender_id: str) -> Any:
        events = self._conversation(sender_id)
        session = self._events_since_last_session_start(events)
        if not session:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, session, self.domain.slots)
        setattr(tracker, _STORED, (len(events) - len(session), len(session)))
        return tracker

    async def retrieve_full_tracker(self, conversation_id: str) -> Any:
        events = self._conversation(conversation_id)
        if not events:
            return None
        tracker = DialogueStateTracker.from_dict(conversation_id, events, self.domain.slots)
        setattr(tracker, _STORED, (0, len(events)))
        return tracker

    async def save(self, tracker: Any) -> None:
        await self.stream_events(tracker)
        first, stored = getattr(tracker, _STORED, None) or self._stored_of_new(tracker.sender_id)
        added = [event.as_dict() for event in itertools.islice(tracker.events, stored, None)]
        event_chunks.append(self.chunks, tracker.sender_id, first + stored, added)
        held = self._held.get(tracker.sender_id)
        self._held.put(tracker.sender_id, held + added if len(held) == first + stored else [])
        setattr(tracker, _STORED, (first, len(tracker.events)))

    def _stored_of_new(self, sender: str) -> Tuple[int, int]:
        """For a tracker Rasa made afresh: where its events stand, counted as Rasa's store counts
        them (the store's events of the latest session are the tracker's first ones)."""
        events = self._conversation(sender)
        session = len(self._events_since_last_session_start(events))
        return len(events) - session, session

    async def keys(self) -> List[str]:
        senders = self.chunks.distinct("sender_id")
        senders += [d["sender_id"] for d in self.conversations.find({}, {"sender_id": 1})]
        return list(dict.fromkeys(senders))


def _same_event(stored: Dict[str, Any], held: Dict[str, Any]) -> bool:
    return all(stored.get(key) == held.get(key) for key in ("event", "timestamp"))


class MongoTrackerStore(_AbortOnStoreError, _ChunkedMongoTrackerStore):
    """The chunked Mongo tracker store above, honest inside a turn."""

    UNANSWERED = (pymongo.errors.ConnectionFailure,)

    def _answers(self) -> None:
        with pymongo.timeout(PROBE_TIMEOUT_S):
            self.client.admin.command("ping")


class SQLTrackerStore(_AbortOnStoreError, _SQLTrackerStore):
    """Rasa's SQL tracker store (same keys as `type: SQL`), honest inside a turn.

    With `password_file`, each new connection logs in with the password that file holds, else
    with the one the store started with. `syrcad secrets rotate` rewrites the file, then
    changes the server's password: every connection opened meanwhile gets in with one of the
    two, where a store that knew only its starting password would be refused until replaced.
    """

    UNANSWERED = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError)

    def __init__(self, *args: Any, password_file: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if password_file:
            either = _either_password(password_file, kwargs.get("password"))
            sqlalchemy.event.listen(self.engine, "do_connect", either)

    def _answers(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))


def _either_password(path: str, started_with: Optional[str]) -> Callable[..., Any]:
    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Dict[str, Any]) -> Any:
        try:
            with open(path, encoding="utf-8") as file:
                current: Optional[str] = file.read().strip()
        except OSError:
            current = started_with
        refused: Optional[Exception] = None
        for password in dict.fromkeys([current, started_with]):
            try:
                return dialect.connect(*cargs, **{**cparams, "password": password})
            except dialect.dbapi.OperationalError as error:
                if "password authentication failed" not in str(error):
                    raise
                refused = error
        assert refused is not None
        raise refused

    return connect


# --- channels ----------------------------------------------------------------------------------


class RestInput(rest.RestInput):
    """Rasa's REST channel (`/webhooks/rest/webhook`) that answers a failed turn with its error."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        webhook = Blueprint("syrcad_rest_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> response.HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> Any:
            agent = getattr(request.app.ctx, "agent", None)
            if agent is None or not agent.is_ready():  # Rasa would answer 200 with nothing
                loading = TurnAborted(
                    503,
                    "model_loading",
                    "This replica has no model loaded yet; the message was not recorded. Send it again.",
                    retry_after_s=RETRY_AFTER_S,
                )
                return response.json(loading.body, status=loading.status, headers=loading.headers)
            sender_id = await self._extract_sender(request)
            text = self._extract_message(request)
            input_channel = self._extract_input_channel(request)
            metadata = self.get_metadata(request)
            if rasa.utils.endpoints.bool_arg(request, "stream", default=False):
                # Replies stream out as they come, so a later failure cannot change the status.
                return response.stream(
                    self.stream_response(on_new_message, text, sender_id, input_channel, metadata),
                    content_type="text/event-stream",
                )
            collector = CollectingOutputChannel()
            message_id = request.headers.get(MESSAGE_ID_HEADER)
            if message_id is not None and not _MESSAGE_ID.fullmatch(message_id):
                return response.json(BAD_MESSAGE_ID, status=400)
            message = UserMessage(
                text, collector, sender_id, input_channel=input_channel, message_id=message_id,
                metadata=metadata,
            )
            token = _answered_again.set(message_id is not None)
            try:
                aborted = await run_turn(on_new_message, message)
            finally:
                _answered_again.reset(token)
            if aborted:
                return response.json(aborted.body, status=aborted.status, headers=aborted.headers)
            return response.json(collector.messages)

        return webhook


class SocketIOInput(socketio.SocketIOInput):
    """Rasa's socket.io channel that emits `bot_error` to the session when a turn fails."""

    ERROR_EVT = "bot_error"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def honest(message: UserMessage) -> None:
            aborted = await run_turn(on_new_message, message)
            if aborted:
                # Replies sent before the failure stay with the client; the tracker has none.
                body = {
                    **aborted.body,
                    "status": aborted.status,
                    "retry_after_s": aborted.retry_after_s,
                }
                sio = message.output_channel.sio  # type: ignore[union-attr]
                await sio.emit(self.ERROR_EVT, body, room=message.sender_id)

        return super().blueprint(honest)


_answered_again: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "syrcad_answered_again", default=False
)


class _AnsweredBefore(BaseException):
    """The message's turn is in the tracker: its replies, to send instead of a new turn."""

    def __init__(self, replies: List[Dict[str, Any]]) -> None:
        super().__init__("answered before")
        self.replies = replies


def _answer_messages_sent_again_from_the_tracker() -> None:
    """A message whose id the conversation already holds (sent again after its answer was lost:
    its replica was killed after the turn's save, or its host was cut off) gets the bot's replies
    to it from the tracker: nothing runs again, nothing is recorded twice.

    Rasa records the id in the message's `user` event (UserUttered.message_id) and handles a
    conversation's messages one at a time under its lock (Agent.handle_message), so the tracker
    a turn starts from holds every turn saved before it. A message whose turn was not saved (its
    replica died before the save) is not there, and is handled as a new one. The check looks at
    the tracker Rasa fetched for the turn anyway: it costs no store call."""
    from rasa.core.processor import MessageProcessor
    from rasa.shared.core.events import BotUttered, UserUttered

    handle_message = MessageProcessor.handle_message
    handle_with_tracker = MessageProcessor._handle_message_with_tracker

    async def handle_with_tracker_once(
        self: MessageProcessor, message: UserMessage, tracker: DialogueStateTracker
    ) -> None:
        if _answered_again.get():
            events = list(tracker.events)
            for index in range(len(events) - 1, -1, -1):
                event = events[index]
                if isinstance(event, UserUttered) and event.message_id == message.message_id:
                    after = itertools.takewhile(
                        lambda e: not isinstance(e, UserUttered), events[index + 1 :]
                    )
                    raise _AnsweredBefore([e.message() for e in after if isinstance(e, BotUttered)])
        await handle_with_tracker(self, message, tracker)

    async def handle_message_once(
        self: MessageProcessor, message: UserMessage
    ) -> Optional[List[Dict[str, Any]]]:
        try:
            return await handle_message(self, message)
        except _AnsweredBefore as answered:
            logger.info(f"Message {message.message_id} of '{message.sender_id}' sent again: answered from the tracker")
            for reply in answered.replies:
                await message.output_channel.send_response(message.sender_id, reply)
            if isinstance(message.output_channel, CollectingOutputChannel):
                return message.output_channel.messages
            return None

    MessageProcessor._handle_message_with_tracker = handle_with_tracker_once
    MessageProcessor.handle_message = handle_message_once


def _load_pulled_models_off_the_event_loop() -> None:
    """A frontend that pulls its model (endpoints.yml `models:`) loads a new one in a worker
    thread, serving on the old one until the new one is in place.

    Rasa loads a pulled model on its event loop (rasa.core.agent._update_model_from_server): for
    the seconds a model takes to load, the frontend answers nothing, not even its health checks,
    so the LB marks it DOWN and cuts the requests it holds, and with every replica pulling the
    same new model at once, none is left. Here only the load runs elsewhere; pulling, and the
    agent's own swap of its processor at the end of the load, are Rasa's as they were.
    """
    import rasa.core.agent as agent_module
    from rasa.nlu.utils import is_url
    from rasa.utils.common import TempDirectoryPath, get_temp_dir_name

    async def update_model_from_server(model_server: Any, agent: Any) -> None:
        if not is_url(model_server.url):
            raise aiohttp.InvalidURL(model_server.url)
        with TempDirectoryPath(get_temp_dir_name()) as folder:
            try:
                fingerprint = await agent_module._pull_model_and_fingerprint(
                    model_server, agent.fingerprint, folder
                )
                if fingerprint:
                    await asyncio.get_running_loop().run_in_executor(
                        None, agent_module._load_and_set_updated_model, agent, folder, fingerprint
                    )
            except Exception:  # as Rasa's own: the model it runs stays
                logger.exception("Failed to update model. The previous model will stay loaded.")

    agent_module._update_model_from_server = update_model_from_server


_load_pulled_models_off_the_event_loop()
_answer_messages_sent_again_from_the_tracker()
