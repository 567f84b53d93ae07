"""The card aggregate's rules, the decision mapping and the idempotent consumer's window."""

from datetime import UTC, datetime

import pytest

from rtml.cards.aggregate import decide, event_id, fold
from rtml.cards.decisions import command_for
from rtml.cards.notifications import SeenIds, notification
from rtml.cards.state import CardState

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def _command(kind: str, n: int, card: int = 7, expected: int | None = None) -> dict:
    return {
        "command_id": f"c{n}",
        "card_id": card,
        "type": kind,
        "expected_version": expected,
        "transaction_id": 100 + n,
        "reason": f"because {n}",
        "issued_at": T0,
    }


def _run(commands: list[dict], card: int = 7) -> tuple[CardState, list[dict]]:
    state, log = CardState(card), []
    for command in commands:
        (event,) = decide(state, command)
        log.append(event)
        state = fold(card, log)
    return state, log


def test_each_command_causes_one_event_and_versions_count_events():
    state, log = _run(
        [_command("RaiseAlert", 1), _command("BlockCard", 2), _command("UnblockCard", 3)]
    )
    assert [e["type"] for e in log] == ["AlertRaised", "CardBlocked", "CardUnblocked"]
    assert [e["version"] for e in log] == [1, 2, 3]
    assert state == CardState(7, version=3, blocked=False, alerts=1)
    assert log[1]["event_id"] == event_id("c2") and log[1]["occurred_at"] == T0


def test_impossible_commands_are_rejected_as_events_with_the_reason():
    state, log = _run(
        [_command("UnblockCard", 1), _command("BlockCard", 2), _command("BlockCard", 3)]
    )
    assert [e["type"] for e in log] == ["CommandRejected", "CardBlocked", "CommandRejected"]
    assert "not blocked" in log[0]["reason"] and "already blocked" in log[2]["reason"]
    assert state.blocked and state.rejected == 2 and state.version == 3


def test_optimistic_concurrency_applies_a_command_only_at_its_expected_version():
    state, log = _run([_command("RaiseAlert", 1), _command("BlockCard", 2, expected=0)])
    assert log[1]["type"] == "CommandRejected"
    assert "expected version 0, the card is at version 1" in log[1]["reason"]
    assert not state.blocked
    _, log = _run([_command("RaiseAlert", 1), _command("BlockCard", 2, expected=1)])
    assert log[1]["type"] == "CardBlocked"


def test_deciding_is_deterministic_so_a_replay_gives_the_same_events():
    commands = [_command("RaiseAlert", n) for n in range(5)] + [_command("BlockCard", 9)]
    assert _run(commands) == _run(commands)


def test_a_command_for_another_card_is_a_bug_not_an_event():
    with pytest.raises(ValueError, match="not card 8"):
        decide(CardState(8), _command("BlockCard", 1, card=7))


def test_folding_an_unknown_event_type_fails_loudly():
    with pytest.raises(ValueError, match="Unknown card event type 'CardStolen'"):
        fold(7, [{"type": "CardStolen", "version": 1}])


@pytest.mark.parametrize(
    ("decision", "kind"), [("DECLINE", "BlockCard"), ("REVIEW", "RaiseAlert"), ("APPROVE", None)]
)
def test_predictions_become_commands_with_a_trace(decision, kind):
    prediction = {
        "transaction_id": 55,
        "customer_id": 9,
        "score": 0.93,
        "decision": decision,
        "model_version": "v3",
        "predicted_time": T0,
    }
    found = command_for(prediction)
    if kind is None:
        assert found is None
        return
    command, trace = found
    assert command["type"] == kind and command["card_id"] == 9 and command["issued_at"] == T0
    assert command["command_id"] == f"{kind}-55" == trace.message_id
    assert (trace.correlation_id, trace.causation_id) == ("tx-55", "pred-55")


def test_the_idempotent_window_skips_duplicates_and_forgets_the_oldest():
    seen = SeenIds(window=2)
    assert [seen.first_time(i) for i in ("a", "b", "a")] == [True, True, False]
    seen.first_time("c")  # "a" falls out of the window
    assert seen.first_time("a") and not seen.first_time("c")


def test_only_blocks_and_alerts_notify():
    event = {
        "event_id": "e#0",
        "card_id": 3,
        "type": "CardBlocked",
        "reason": "fraud",
        "occurred_at": T0,
    }
    note = notification(event)
    assert note["text"] == "Your card was blocked: fraud"
    assert note["occurred_at"] == int(T0.timestamp() * 1000)
    assert notification({**event, "type": "CommandRejected"}) is None
