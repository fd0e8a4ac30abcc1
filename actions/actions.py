"""Custom actions of the sample bot, served by rasa-sdk action servers behind the action LB."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

# The most a client may ask an action to take (metadata.action_delay_s): drills and the fault
# tests hold a call in flight this way while they cut the server that runs it.
MAX_DELAY_S = 10.0


async def requested_delay(tracker: Tracker) -> None:
    """Wait as asked, without blocking the server: rasa-sdk runs actions on its event loop, and
    an action server that cannot answer the action LB's checks for 4 s is taken for dead."""
    metadata = tracker.latest_message.get("metadata") or {}
    await asyncio.sleep(min(float(metadata.get("action_delay_s", 0)), MAX_DELAY_S))


class ActionOpeningHours(Action):
    """Looks the opening hours up: safe to call twice (`services.action.idempotent`)."""

    def name(self) -> str:
        return "action_opening_hours"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        await requested_delay(tracker)
        dispatcher.utter_message(
            response="utter_opening_hours",
            json_message={"data": {"served_by": socket.gethostname()}},
        )
        return []


class ActionConfirmBooking(Action):
    """Confirms the booking; the reply depends on the slots the form collected over several turns."""

    def name(self) -> str:
        return "action_confirm_booking"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        await requested_delay(tracker)
        cuisine = (tracker.get_slot("cuisine") or "").strip()
        people = (tracker.get_slot("people") or "").strip()
        # Derived from the conversation, so any action server gives the same reference.
        reference = hashlib.sha256(f"{tracker.sender_id}|{cuisine}|{people}".encode()).hexdigest()[
            :8
        ]
        dispatcher.utter_message(
            # The bot's own words (each language's domain), filled with the slots and reference.
            response="utter_booked",
            people=people,
            cuisine=cuisine,
            reference=reference.upper(),
            # Under "data": Rasa's socket.io channel emits a custom payload's keys as emit()'s
            # arguments, and any other key fails the send (and every reply after it).
            json_message={"data": {"served_by": socket.gethostname(), "reference": reference}},
        )
        return [SlotSet("cuisine", None), SlotSet("people", None)]
