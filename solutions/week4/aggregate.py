"""Week 4 reference: fold one card event into the card's state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from rtml.cards.state import EVENT_TYPES, CardState

_COUNTERS = {
    "AlertRaised": "alerts",
    "TransactionDeclined": "declined",
    "CommandRejected": "rejected",
}


def apply_card_event(state: CardState, event: Mapping[str, Any]) -> CardState:
    """The card's state after `event`; its version becomes the event's version."""
    kind = event["type"]
    version = int(event["version"])
    if kind == "CardBlocked":
        return replace(state, version=version, blocked=True)
    if kind == "CardUnblocked":
        return replace(state, version=version, blocked=False)
    if kind in _COUNTERS:
        name = _COUNTERS[kind]
        return replace(state, version=version, **{name: getattr(state, name) + 1})
    raise ValueError(f"Unknown card event type {kind!r}: the types are {', '.join(EVENT_TYPES)}.")
