"""Grading: week 4, apply_card_event (labs/week4/aggregate.py)."""

from datetime import UTC, datetime

import pytest

from rtml.cards.aggregate import decide
from rtml.cards.state import CardState
from rtml.impl import exercise

pytestmark = pytest.mark.grading

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def _event(kind: str, version: int, card: int = 7) -> dict:
    """A card event as the card service writes it (fields of card_event.avsc)."""
    return {
        "event_id": f"c{version}#0",
        "card_id": card,
        "version": version,
        "type": kind,
        "transaction_id": 100 + version,
        "reason": f"because {version}",
        "command_id": f"c{version}",
        "occurred_at": T0,
    }


def _fold(card: int, events: list[dict]) -> CardState:
    apply = exercise("apply_card_event")
    state = CardState(card)
    for event in events:
        state = apply(state, event)
    return state


def test_the_docstring_example():
    """CardState(7) after CardBlocked version 1: blocked, at version 1, every counter 0."""
    after = exercise("apply_card_event")(CardState(7), _event("CardBlocked", 1))
    assert after == CardState(card_id=7, version=1, blocked=True)


def test_unblocking_clears_the_block():
    """CardUnblocked on a blocked card: not blocked any more, at the event's version."""
    blocked = CardState(7, version=4, blocked=True, alerts=2)
    after = exercise("apply_card_event")(blocked, _event("CardUnblocked", 5))
    assert after == CardState(7, version=5, blocked=False, alerts=2)


def test_each_counting_event_adds_one_to_its_counter():
    """AlertRaised, TransactionDeclined, CommandRejected each add one to their own counter."""
    state = CardState(7, version=3, blocked=True, alerts=1, declined=2, rejected=3)
    for kind, counter in [
        ("AlertRaised", "alerts"),
        ("TransactionDeclined", "declined"),
        ("CommandRejected", "rejected"),
    ]:
        after = exercise("apply_card_event")(state, _event(kind, 4))
        expected = {"alerts": 1, "declined": 2, "rejected": 3}
        expected[counter] += 1
        assert after == CardState(7, version=4, blocked=True, **expected), kind


def test_the_version_is_the_events_version():
    """Every event sets the state's version to its own version (not a count of calls)."""
    after = exercise("apply_card_event")(CardState(7, version=2), _event("AlertRaised", 9))
    assert after.version == 9 and after.alerts == 1


def test_a_new_state_and_the_old_one_unchanged():
    """The result is a new CardState; the state passed in is left as it was."""
    before = CardState(7, version=1, alerts=1)
    after = exercise("apply_card_event")(before, _event("CardBlocked", 2))
    assert isinstance(after, CardState) and after is not before
    assert before == CardState(7, version=1, alerts=1)


def test_an_unknown_event_type_raises_value_error_naming_it():
    """A type the fold does not know ("CardStolen") is a ValueError that names it."""
    with pytest.raises(ValueError, match="CardStolen"):
        exercise("apply_card_event")(CardState(7), _event("CardStolen", 1))


def test_folding_a_history_gives_the_cards_state():
    """A card's whole history, folded oldest first, adds up to its state."""
    kinds = [
        "AlertRaised",
        "CardBlocked",
        "CommandRejected",
        "TransactionDeclined",
        "CardUnblocked",
        "AlertRaised",
        "CardBlocked",
    ]
    events = [_event(kind, v) for v, kind in enumerate(kinds, start=1)]
    assert _fold(7, events) == CardState(
        7, version=7, blocked=True, alerts=2, declined=1, rejected=1
    )


def test_the_card_service_decides_on_the_state_your_fold_gives():
    """Commands decided on your folded state: a second block is rejected, an unblock works.

    The card service decides each command on the state your fold gives, so the events it
    writes (and the rejections) depend on it."""
    apply = exercise("apply_card_event")
    state, types = CardState(7), []
    for n, kind in enumerate(["BlockCard", "BlockCard", "UnblockCard", "UnblockCard"]):
        command = {
            "command_id": f"c{n}",
            "card_id": 7,
            "type": kind,
            "expected_version": None,
            "transaction_id": n,
            "reason": "",
            "issued_at": T0,
        }
        (event,) = decide(state, command)
        types.append(event["type"])
        state = apply(state, event)
    assert types == ["CardBlocked", "CommandRejected", "CardUnblocked", "CommandRejected"]
    assert state == CardState(7, version=4, blocked=False, rejected=2)


def test_the_same_events_always_give_the_same_state():
    """Folding the same events twice gives equal states: replays and rebuilds rely on it."""
    events = [_event(kind, v) for v, kind in enumerate(["AlertRaised", "CardBlocked"] * 20, 1)]
    assert _fold(7, events) == _fold(7, events)
