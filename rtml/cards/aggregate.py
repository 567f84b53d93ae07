"""The card aggregate: a card's state is the fold of its events, and commands become events.

Event sourcing keeps facts, not state. The card service never stores "card 42 is blocked";
it appends `CardBlocked` to `card-events` and anyone who needs the state folds the card's
events with `apply`, from an empty card. Two pure functions hold all the rules:

- `decide(state, command)`: the events a command causes, given the card's state now. Every
  command causes exactly one event, so a stage's `in == out + dlq` can be checked: the
  command's own (`CardBlocked`, ...) or `CommandRejected` with the reason. A command that
  names an `expected_version` is applied only if the card is at that version (optimistic
  concurrency: the sender decided on a state that must not have changed since).
- `apply_card_event(state, event)`: the state after one event. It is the week-4 exercise
  (`labs/week4/aggregate.py`); `applier()` returns the implementation in use.

Ids and times are derived from the command, never from a clock or a random source, so
deciding the same command on the same state gives the same event byte for byte: a replay
rebuilds the same log, and a duplicate (an at-least-once redelivery) has the same
`event_id` as the original, which is how an idempotent reader drops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rtml.cards.state import COMMAND_TYPES, CardState
from rtml.impl import exercise

Event = dict[str, Any]


def applier(impl: str | None = None) -> Callable[[CardState, Mapping[str, Any]], CardState]:
    """The function that folds one event into a card's state: the week-4 exercise seam
    (`apply_card_event`), so a learner's own fold runs in the services with RTML_IMPL=labs."""
    return exercise("apply_card_event", impl)


def fold(card_id: int, events: Iterable[Mapping[str, Any]], impl: str | None = None) -> CardState:
    """A card's state from its events, oldest first (how the service rebuilds it)."""
    apply = applier(impl)
    state = CardState(card_id)
    for event in events:
        state = apply(state, event)
    return state


def event_id(command_id: str) -> str:
    """The id of the event a command causes (one event per command)."""
    return f"{command_id}#0"


def _refusal(state: CardState, command: Mapping[str, Any]) -> str | None:
    expected = command.get("expected_version")
    if expected is not None and expected != state.version:
        return f"expected version {expected}, the card is at version {state.version}"
    kind = command["type"]
    if kind == "BlockCard" and state.blocked:
        return "the card is already blocked"
    if kind == "UnblockCard" and not state.blocked:
        return "the card is not blocked"
    if kind not in COMMAND_TYPES:
        return f"unknown command type {kind!r}"
    return None


_EVENT_OF = {
    "BlockCard": "CardBlocked",
    "UnblockCard": "CardUnblocked",
    "RaiseAlert": "AlertRaised",
    "DeclineTransaction": "TransactionDeclined",
}


def decide(state: CardState, command: Mapping[str, Any]) -> list[Event]:
    """The events `command` causes on a card in `state`: always exactly one."""
    if command["card_id"] != state.card_id:
        raise ValueError(
            f"Command {command['command_id']} is for card {command['card_id']}, "
            f"not card {state.card_id}."
        )
    refusal = _refusal(state, command)
    return [
        {
            "event_id": event_id(command["command_id"]),
            "card_id": state.card_id,
            "version": state.version + 1,
            "type": "CommandRejected" if refusal else _EVENT_OF[command["type"]],
            "transaction_id": command.get("transaction_id"),
            "reason": f"{command['type']}: {refusal}" if refusal else command.get("reason", ""),
            "command_id": command["command_id"],
            "occurred_at": command["issued_at"],
        }
    ]
