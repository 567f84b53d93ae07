"""A card's state and the names of the commands and events that change it (no rules here)."""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_TYPES = ("BlockCard", "UnblockCard", "RaiseAlert", "DeclineTransaction")
EVENT_TYPES = (
    "CardBlocked",
    "CardUnblocked",
    "AlertRaised",
    "TransactionDeclined",
    "CommandRejected",
)


@dataclass(frozen=True)
class CardState:
    """What the card's events add up to: `version` is how many events it has."""

    card_id: int
    version: int = 0
    blocked: bool = False
    alerts: int = 0
    declined: int = 0
    rejected: int = 0


def card_key(card_id: int) -> bytes:
    """The record key of a card's commands, events and queries: its id as text."""
    return str(card_id).encode()
