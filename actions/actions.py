"""Custom actions of the sample bot, served by rasa-sdk action servers behind the action LB."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher


class ActionConfirmBooking(Action):
    """Confirms the booking; the reply depends on the slots the form collected over several turns."""

    def name(self) -> str:
        return "action_confirm_booking"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        cuisine = (tracker.get_slot("cuisine") or "").strip()
        people = (tracker.get_slot("people") or "").strip()
        # Derived from the conversation, so any action server gives the same reference.
        reference = hashlib.sha256(f"{tracker.sender_id}|{cuisine}|{people}".encode()).hexdigest()[
            :8
        ]
        dispatcher.utter_message(
            text=f"Booked: a table for {people} ({cuisine} cuisine). Reference {reference.upper()}.",
            # Under "data": Rasa's socket.io channel emits a custom payload's keys as emit()'s
            # arguments, and any other key fails the send (and every reply after it).
            json_message={"data": {"served_by": socket.gethostname(), "reference": reference}},
        )
        return [SlotSet("cuisine", None), SlotSet("people", None)]
