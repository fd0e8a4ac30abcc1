"""How syrcad keeps conversations in Mongo: a run of small documents per sender, so that a
turn costs the store the same at turn 300 as at turn 1.

Rasa's Mongo tracker store keeps a conversation in one document and pushes each turn's events
into it. The server rewrites the whole document on every push (WiredTiger does, and so does the
test stand-in), and reading the conversation reads it all: both grow with the conversation.
Here a conversation is the documents `{sender_id, chunk, events}` of `<collection>.chunks`
(named like GridFS's `fs.chunks`), each holding up to CHUNK_EVENTS events: event number i
(from 0) is element i % CHUNK_EVENTS of chunk i // CHUNK_EVENTS. A save pushes into the last
chunk or starts the next one; a reader that holds the beginning of a conversation reads only the
chunk holding the last event it has, and those after it.

A save names where its events go (how many events the store held when its writer read the
conversation), and is made only if the store still holds that many: a save that arrives after
the conversation went on writes nothing. That is how a turn's save from a frontend whose host
was cut off, still in its kernel's send queue when the client gave up on it, cannot land after
another frontend answered the same message again (TCP delivers it once the link returns,
seconds after any lock's lease).

A conversation that Rasa's own store wrote (a document in `<collection>`) is moved into chunks
the first time it is read. Used by syrcad_turns.py (the frontends' tracker store) and by
syrcad_conversations.py (backup and restore), both beside this file. Python 3.9, pymongo 4.3
(the Rasa image's).
"""

from typing import Any, Dict, Iterable, Iterator, List, Tuple

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

# Small enough that a push rewrites little (about 1 ms on the stand-in), large enough that a whole
# conversation is a few round trips' worth of documents.
CHUNK_EVENTS = 20
Events = List[Dict[str, Any]]


def chunks_of(conversations: Collection) -> Collection:
    """The chunks collection beside Rasa's `conversations` collection, with its unique index
    (two writers can never both start the same chunk)."""
    chunks = conversations.database[f"{conversations.name}.chunks"]
    chunks.create_index([("sender_id", 1), ("chunk", 1)], unique=True)
    return chunks


def read(chunks: Collection, sender: str, start: int = 0) -> Events:
    """`sender`'s events from event number `start` on, oldest first."""
    first = start // CHUNK_EVENTS
    found = chunks.find(
        {"sender_id": sender, "chunk": {"$gte": first}}, {"_id": 0, "chunk": 1, "events": 1}
    ).sort("chunk", 1)
    events: Events = []
    for document in found:
        events.extend(document["events"])
    return events[start - first * CHUNK_EVENTS :]


class MovedOn(Exception):
    """The conversation went on past where a save's writer read it: nothing of the save was
    written, unless it spans two chunks and another writer started the second meanwhile (two
    writers at once: a lock store that does not lock); then its first chunk's events were."""

    def __init__(self, sender: str, position: int):
        super().__init__(f"the conversation of '{sender}' holds more than the {position} events its writer read")


def append(chunks: Collection, sender: str, position: int, events: Events) -> None:
    """Store `events` as `sender`'s events number `position`, `position` + 1, …, where
    `position` is how many events the store held when the caller read the conversation; raise
    MovedOn, writing nothing, if it holds more now."""
    while events:
        chunk, held = divmod(position, CHUNK_EVENTS)
        fitting, events = events[: CHUNK_EVENTS - held], events[CHUNK_EVENTS - held :]
        if not _push_if_holding(chunks, sender, chunk, held, fitting):
            _append_to_irregular(chunks, sender, position, fitting + events)
            return
        position += len(fitting)


def _push_if_holding(chunks: Collection, sender: str, chunk: int, held: int, events: Events) -> bool:
    """Push `events` into `sender`'s chunk number `chunk` if it holds `held` events (start it
    when `held` is 0); whether they were pushed."""
    try:
        pushed = chunks.update_one(
            {"sender_id": sender, "chunk": chunk, "events": {"$size": held}},
            {"$push": {"events": {"$each": events}}},
            upsert=held == 0,
        )
    except DuplicateKeyError:  # the chunk was started by another save
        return False
    return pushed.matched_count == 1 or pushed.upserted_id is not None


def _append_to_irregular(chunks: Collection, sender: str, position: int, events: Events) -> None:
    """Where the chunk a save's events go to does not hold what the save expects: the
    conversation went on (MovedOn), unless it holds exactly `position` events in chunks of
    other sizes (written by a syrcad before these saves were conditional, whose saves without
    a lock could push past CHUNK_EVENTS): then they go after its last event, as conditionally."""
    if len(read(chunks, sender)) == position:
        last = chunks.find_one({"sender_id": sender}, {"events": 1}, sort=[("chunk", -1)])
        if last is not None:
            pushed = chunks.update_one(
                {"_id": last["_id"], "events": {"$size": len(last["events"])}},
                {"$push": {"events": {"$each": events}}},
            )
            if pushed.matched_count == 1:
                return
    raise MovedOn(sender, position)


def move_from_rasa_layout(conversations: Collection, chunks: Collection, sender: str) -> Events:
    """Move `sender`'s conversation from a document of Rasa's own store into chunks (none when
    there is no such document); its events."""
    document = conversations.find_one({"sender_id": sender}, {"_id": 0, "sender_id": 1, "events": 1})
    return _move(conversations, chunks, document) if document else []


def _move(conversations: Collection, chunks: Collection, document: Dict[str, Any]) -> Events:
    sender, events = document["sender_id"], list(document.get("events") or [])
    try:
        if events:
            chunks.insert_many(as_chunks(sender, events))
    except DuplicateKeyError:
        return read(chunks, sender)  # another reader moved it first
    conversations.delete_one({"sender_id": sender})
    return events


def as_chunks(sender: str, events: Events) -> List[Dict[str, Any]]:
    """The documents holding a whole conversation, for a store that holds none of it."""
    return [
        {"sender_id": sender, "chunk": n, "events": events[start : start + CHUNK_EVENTS]}
        for n, start in enumerate(range(0, len(events), CHUNK_EVENTS))
    ]


def read_many(conversations: Collection, chunks: Collection, senders: Iterable[str]) -> Dict[str, Events]:
    """The events of each of `senders` that the store holds any of."""
    wanted = list(senders)
    parts: Dict[str, List[Tuple[int, Events]]] = {}
    found = chunks.find({"sender_id": {"$in": wanted}}, {"_id": 0, "sender_id": 1, "chunk": 1, "events": 1})
    for document in found:
        parts.setdefault(document["sender_id"], []).append((document["chunk"], document["events"]))
    held: Dict[str, Events] = {}
    for sender, numbered in parts.items():
        numbered.sort(key=lambda part: part[0])
        held[sender] = [event for _, events in numbered for event in events]
    in_rasa_layout = conversations.find(
        {"sender_id": {"$in": [s for s in wanted if s not in held]}}, {"_id": 0, "sender_id": 1, "events": 1}
    )
    for document in in_rasa_layout:
        held[document["sender_id"]] = _move(conversations, chunks, document)
    return {sender: events for sender, events in held.items() if events}


def read_all(conversations: Collection, chunks: Collection, batch: int) -> Iterator[Tuple[str, Events]]:
    """Every conversation: (sender, events), streamed in sender order, `batch` documents a round
    trip; then those still in Rasa's layout."""
    documents = chunks.find({}, {"_id": 0, "sender_id": 1, "events": 1})
    ordered = documents.sort([("sender_id", 1), ("chunk", 1)]).allow_disk_use(True).batch_size(batch)
    sender, events = None, []  # type: Any, Events
    for document in ordered:
        if document["sender_id"] != sender:
            if sender is not None:
                yield sender, events
            sender, events = document["sender_id"], []
        events.extend(document["events"])
    if sender is not None:
        yield sender, events
    for document in conversations.find({}, {"_id": 0, "sender_id": 1, "events": 1}).batch_size(batch):
        if chunks.find_one({"sender_id": document["sender_id"]}, {"_id": 1}) is None:
            yield document["sender_id"], list(document.get("events") or [])
