"""Week 4 exercise: event sourcing, the fold that turns a card's events into its state.

The card service never stores "card 42 is blocked". It appends facts to `card-events`
(`CardBlocked`, `AlertRaised`, ...) and whoever needs the state folds the card's events,
oldest first, from an empty `CardState(card_id)`:

    state = CardState(42)
    for event in events_of_card_42:
        state = apply_card_event(state, event)

The card service folds them when it is given a partition (to rebuild its state after a
restart), and again after deciding each command; the projections fold them into the read
model the control room shows. So this one function is the meaning of every event type.

An event is a dict with the fields of `rtml/schemas/avro/card_event.avsc`: `type`,
`version` (1 for the card's first event, then +1 each), `card_id`, `reason`, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rtml.cards.state import CardState


def apply_card_event(state: CardState, event: Mapping[str, Any]) -> CardState:
    """Return the card's state after `event` (a new CardState; never change `state`).

    - `CardBlocked` -> blocked True; `CardUnblocked` -> blocked False;
    - `AlertRaised`, `TransactionDeclined`, `CommandRejected` -> one more in `alerts`,
      `declined`, `rejected` respectively;
    - every event sets `version` to the event's version;
    - any other type raises ValueError naming it (a fold must not guess).

    Example: CardState(7) after {"type": "CardBlocked", "version": 1, ...}
    -> CardState(card_id=7, version=1, blocked=True, alerts=0, declined=0, rejected=0).

    Think about:
    - CardState is frozen: `dataclasses.replace(state, ...)` makes the changed copy.
    - Why must applying the same events in the same order always give the same state?
      (Replays and rebuilds rely on it: no clock, no randomness here.)
    """
    raise NotImplementedError(
        "TODO week 4: return a copy of `state` changed by the event's type, with its version"
    )
