"""Conversations out of and back into the tracker store, for `syrcad backup` and `syrcad restore`.

Run inside a running frontend (`docker exec -i <frontend> python -c <this file> dump|load`): it
reaches the store the way that frontend does, with the credentials of its endpoints.yml, so
nothing about the store is published for the backup, and no secret travels in a command line.
It imports no Rasa (a frontend's memory limit is sized for Rasa alone), only pymongo or
SQLAlchemy, which Rasa brings, and syrcad_event_chunks.py beside it.

Both stores are read as Rasa stores them:
- Mongo: as syrcad's tracker store keeps them, in chunks of events (syrcad_event_chunks.py,
  beside this file), and any conversation still in a document of Rasa's own store;
- SQL: a row per event in `events`, the event's JSON in `data` (the other columns derived from
  it as rasa.core.tracker_store.SQLTrackerStore.save derives them).

`dump` writes one JSON line per conversation, `{"sender_id": …, "events": […]}`, oldest event
first, streaming (constant memory whatever the number of conversations).

`load` reads such lines and, per conversation, writes it when the store does not hold it, or
holds a beginning of it (the rest is appended); one the store holds as it is stays untouched, and
one that went on after the backup (or differs) is kept as the store has it: a restore never
throws away a newer conversation, and loading the same file twice changes nothing. It prints a
JSON summary line at the end.

Python 3.9 (the Rasa image's).
"""

import json
import os
import sys
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import yaml

CONFIG_DIR = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
BATCH = 200  # conversations per store round trip on load
FETCH = 1000  # rows (SQL) or documents (Mongo) per round trip on dump


def main(command: str, endpoints: str) -> None:
    """`command` (dump or load) on the tracker store of `endpoints` (one bot's, with bots)."""
    with open(os.path.join(CONFIG_DIR, endpoints), encoding="utf-8") as file:
        tracker = yaml.safe_load(file)["tracker_store"]
    store = MongoStore(tracker) if "Mongo" in tracker["type"] else SqlStore(tracker)
    if command == "dump":
        write = sys.stdout.write
        for sender, events in store.conversations():
            write(json.dumps({"sender_id": sender, "events": events}, separators=(",", ":")))
            write("\n")
        sys.stdout.flush()
        return
    summary = {"restored": 0, "appended": 0, "unchanged": 0, "kept": 0, "events": 0}
    for batch in _batches(json.loads(line) for line in sys.stdin if line.strip()):
        stored = store.stored({c["sender_id"] for c in batch})
        writes: List[Tuple[str, List[Dict[str, Any]], int]] = []
        for conversation in batch:
            sender, events = conversation["sender_id"], conversation["events"]
            held = stored.get(sender, [])
            if held == events:
                summary["unchanged"] += 1
            elif held == events[: len(held)]:
                writes.append((sender, events, len(held)))
            else:
                summary["kept"] += 1
        moved_on = store.write(writes)
        for sender, events, held_count in writes:
            if sender in moved_on:
                summary["kept"] += 1
            else:
                summary["appended" if held_count else "restored"] += 1
                summary["events"] += len(events) - held_count
    print(json.dumps(summary))


def _batches(conversations: Iterable[Dict[str, Any]]) -> Iterator[List[Dict[str, Any]]]:
    batch: List[Dict[str, Any]] = []
    for conversation in conversations:
        batch.append(conversation)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class MongoStore:
    def __init__(self, tracker: Dict[str, Any]) -> None:
        import pymongo

        client = pymongo.MongoClient(
            tracker["url"],
            username=tracker.get("username"),
            password=tracker.get("password"),
            authSource=tracker.get("auth_source", "admin"),
        )
        import syrcad_event_chunks

        self.layout = syrcad_event_chunks
        self.rasa_layout = client[tracker.get("db", "rasa")][tracker.get("collection", "conversations")]
        self.chunks = syrcad_event_chunks.chunks_of(self.rasa_layout)

    def conversations(self) -> Iterator[Tuple[str, List[Dict[str, Any]]]]:
        return self.layout.read_all(self.rasa_layout, self.chunks, FETCH)

    def stored(self, senders: Iterable[str]) -> Dict[str, List[Dict[str, Any]]]:
        return self.layout.read_many(self.rasa_layout, self.chunks, senders)

    def write(self, writes: List[Tuple[str, List[Dict[str, Any]], int]]) -> Set[str]:
        """Write each conversation's events from its number `held` on; the senders whose
        conversation went on since it was read (their writes were not made)."""
        # Conversations the store holds nothing of: one round trip for the whole batch.
        whole = [c for sender, events, held in writes if not held for c in self.layout.as_chunks(sender, events)]
        if whole:
            self.chunks.insert_many(whole)
        moved_on: Set[str] = set()
        for sender, events, held in writes:
            if held:
                try:
                    self.layout.append(self.chunks, sender, held, events[held:])
                except self.layout.MovedOn:
                    moved_on.add(sender)
        return moved_on


class SqlStore:
    def __init__(self, tracker: Dict[str, Any]) -> None:
        import sqlalchemy as sa

        self.sa = sa
        password = tracker.get("password")
        if tracker.get("password_file"):  # mid-rotation: the file holds the password in force
            try:
                with open(tracker["password_file"], encoding="utf-8") as file:
                    password = file.read().strip() or password
            except OSError:
                pass
        url = sa.engine.URL.create(
            "postgresql",
            username=tracker.get("username"),
            password=password,
            host=tracker.get("url"),
            port=tracker.get("port"),
            database=tracker.get("db", "rasa"),
            query={k: str(v) for k, v in (tracker.get("query") or {}).items()},
        )
        self.engine = sa.create_engine(url)

    def conversations(self) -> Iterator[Tuple[str, List[Dict[str, Any]]]]:
        query = self.sa.text("SELECT sender_id, data FROM events ORDER BY sender_id, id")
        with self.engine.connect() as connection:
            rows = connection.execution_options(stream_results=True).execute(query)
            sender: Optional[str] = None
            events: List[Dict[str, Any]] = []
            for row in rows.yield_per(FETCH):
                if row.sender_id != sender:
                    if sender is not None:
                        yield sender, events
                    sender, events = row.sender_id, []
                events.append(json.loads(row.data))
            if sender is not None:
                yield sender, events

    def stored(self, senders: Iterable[str]) -> Dict[str, List[Dict[str, Any]]]:
        query = self.sa.text(
            "SELECT sender_id, data FROM events WHERE sender_id IN :senders ORDER BY id"
        ).bindparams(self.sa.bindparam("senders", expanding=True))
        held: Dict[str, List[Dict[str, Any]]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query, {"senders": list(senders)}):
                held.setdefault(row.sender_id, []).append(json.loads(row.data))
        return held

    def write(self, writes: List[Tuple[str, List[Dict[str, Any]], int]]) -> Set[str]:
        """As MongoStore.write, in one transaction. It writes as Rasa's SQL store saves, without
        checking what the store holds meanwhile, so it names no sender."""
        rows = [
            {
                "sender_id": sender,
                "type_name": event["event"],
                "timestamp": event.get("timestamp"),
                "intent_name": (event.get("parse_data") or {}).get("intent", {}).get("name"),
                "action_name": event.get("name"),
                "data": json.dumps(event),
            }
            for sender, events, held in writes
            for event in events[held:]
        ]
        if not rows:
            return set()
        insert = self.sa.text(
            "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data)"
            " VALUES (:sender_id, :type_name, :timestamp, :intent_name, :action_name, :data)"
        )
        with self.engine.begin() as connection:  # a batch lands whole or not at all
            connection.execute(insert, rows)
        return set()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "endpoints.yml")
