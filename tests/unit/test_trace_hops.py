"""Tracing a transaction without a broker: ids parsed, hops ordered by cause, gaps named,
spans bounded, and the recent transactions a learner can pick from."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from rtml.cards.aggregate import applier, decide
from rtml.cards.projection import Delivered, connect, write_batch
from rtml.cards.readmodel import ReadModel
from rtml.cards.state import CardState
from rtml.observe.trace import (
    TABLE_COLUMNS,
    Hop,
    TraceError,
    _clusters,
    _Span,
    hop_table,
    missing,
    order_hops,
    parse_transaction_id,
    recent_transactions,
)
from rtml.trace import Trace

T0 = 1_764_000_000_000


def chain(tx: int, t: int, command: str = "RaiseAlert", event: str = "AlertRaised") -> list[Hop]:
    """One complete path of transaction `tx`, starting at `t`: as the services write it."""
    command_id = f"{command}-{tx}"
    event_id = f"{command_id}#0"
    hops = [
        Hop("prediction", "predictions", 1, 10, t, f"pred-{tx}", "", "REVIEW", "score 0.9"),
        Hop("command", "card-commands", 2, 5, t + 120, command_id, f"pred-{tx}", command, "r"),
        Hop("event", "card-events", 2, 5, t + 250, event_id, command_id, event, "r"),
    ]
    if event in ("AlertRaised", "CardBlocked"):
        note = f"n-{event_id}"
        hops.append(Hop("notification", "notifications", 2, 3, t + 270, note, event_id, event, "x"))
    return hops


@pytest.mark.parametrize(("text", "tx"), [("73522", 73522), (" tx-42 ", 42), ("0", 0)])
def test_a_transaction_id_is_a_number_or_its_correlation_id(text, tx):
    assert parse_transaction_id(text) == tx


@pytest.mark.parametrize("text", ["", "abc", "-3", "tx-", "1.5", "12; rm -rf /", "٣"])
def test_anything_else_is_refused_with_a_sentence(text):
    with pytest.raises(TraceError, match="is not a transaction id: type a whole number"):
        parse_transaction_id(text)


def test_hops_come_in_causal_order_whatever_order_they_are_found_in():
    hops = chain(7, T0)
    for seed in range(5):
        shuffled = hops[:]
        random.Random(seed).shuffle(shuffled)
        assert order_hops(shuffled) == hops


def test_a_hop_follows_its_cause_even_when_its_clock_says_earlier():
    # The event's time falls back to occurred_at (the prediction's time) when its record
    # was not read: before its command's append time. It still comes after the command.
    prediction, command, event, note = chain(7, T0)
    early = replace(event, offset=None, time_ms=T0)
    assert order_hops([note, early, command, prediction]) == [prediction, command, early, note]


def test_a_transaction_scored_twice_gives_two_paths_each_under_its_own_prediction():
    # Both predictions are `pred-7`: each command goes under the latest one before it.
    first = chain(7, T0, "BlockCard", "CommandRejected")
    second = chain(7, T0 + 60_000)
    assert order_hops(second + first) == first + second
    table = hop_table(order_hops(first + second))
    assert list(table["after (ms)"].astype("float").fillna(-1)) == [-1, 120, 130, -1, 120, 130, 20]


def test_the_table_has_each_hop_with_its_delay_after_its_cause():
    table = hop_table(chain(9, T0))
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table["step"]) == [1, 2, 3, 4]
    assert list(table["hop"]) == ["prediction", "command", "event", "notification"]
    assert list(table["service"]) == ["serve", "decisions", "cards", "notifications"]
    assert table["after (ms)"].isna().tolist() == [True, False, False, False]
    assert list(table["after (ms)"][1:]) == [120, 130, 20]
    assert str(table["time"].dt.tz) == "UTC"
    assert table["time"][0] == pd.Timestamp(T0, unit="ms", tz="UTC")


def test_hops_with_no_cause_found_keep_their_time_order_and_a_cycle_ends():
    a = Hop("command", "card-commands", 0, 1, T0 + 5, "a", "b", "RaiseAlert", "")
    b = Hop("event", "card-events", 0, 1, T0 + 9, "b", "a", "AlertRaised", "")
    lone = Hop("command", "card-commands", 0, 2, T0, "c", "pred-1", "BlockCard", "")
    assert order_hops([b, a, lone]) == [lone, a, b]


def test_missing_hops_are_named():
    prediction, command, event, note = chain(3, T0)
    assert missing([prediction, command, event, note]) == []
    assert missing([event]) == [
        "No command RaiseAlert-3 found on card-commands for event RaiseAlert-3#0.",
        "No notification found on notifications for AlertRaised RaiseAlert-3#0 (is the "
        "notification service running?).",
    ]
    assert missing([command, event, note]) == [
        "No prediction found on predictions for command RaiseAlert-3."
    ]
    # A rejected command notifies nobody: nothing is missing without a notification.
    rejected = chain(4, T0, "BlockCard", "CommandRejected")
    assert missing(rejected) == []


def test_times_close_together_are_read_as_one_span():
    assert _clusters([50, 10, 20, 10, 500], gap_ms=100) == [(10, 50), (500, 500)]
    assert _clusters([], gap_ms=100) == []


class FakeMessage:
    def __init__(self, offset: int, timestamp: int, key: bytes = b"k") -> None:
        self._offset, self._timestamp, self._key = offset, timestamp, key

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp

    def key(self) -> bytes:
        return self._key


def test_a_span_stops_at_its_time_its_offset_its_finds_or_its_budget():
    by_time = _Span("command", 0, lambda m: m.key() == b"x", 5, start_ms=0, stop_ms=100)
    by_time.take(FakeMessage(0, 50, b"x"), max_records=10)
    assert (len(by_time.found), by_time.done) == (1, False)
    by_time.take(FakeMessage(1, 101, b"x"), max_records=10)
    assert (len(by_time.found), by_time.done) == (1, True)

    by_offset = _Span("event", 0, lambda m: m.offset() in {3, 5}, 2, start_offset=3, stop_offset=5)
    for offset in (3, 4):
        by_offset.take(FakeMessage(offset, 0), max_records=10)
    assert not by_offset.done
    by_offset.take(FakeMessage(5, 0), max_records=10)
    assert by_offset.done and [m.offset() for m in by_offset.found] == [3, 5]

    budget = _Span("prediction", 0, lambda m: False, 1, start_ms=0, stop_ms=10**15)
    for offset in range(3):
        budget.take(FakeMessage(offset, 0), max_records=3)
    assert budget.done and budget.read == 3


def _model(tmp_path: Path) -> ReadModel:
    """A read model of three cards: alerts on two, a block on one, an untraced command."""
    apply = applier("solutions")
    commands = [
        (1, "RaiseAlert", 101, T0),
        (2, "RaiseAlert", 102, T0 + 1000),
        (3, "BlockCard", 103, T0 + 2000),
        (1, "RaiseAlert", 104, T0 + 3000),
        (2, "BlockCard", 105, T0 + 4000),
    ]
    states: dict[int, CardState] = {}
    delivered = []
    for offset, (card, kind, tx, at) in enumerate(commands):
        command = {
            "command_id": f"{kind}-{tx}",
            "card_id": card,
            "type": kind,
            "expected_version": None,
            "transaction_id": tx,
            "reason": "test",
            "issued_at": at,
        }
        state = states.get(card) or CardState(card)
        (event,) = decide(state, command)
        states[card] = apply(state, event)
        correlation = f"tx-{tx}" if tx != 102 else f"cmd-{command['command_id']}"
        trace = Trace(event["event_id"], correlation, command["command_id"])
        delivered.append(Delivered(event, 0, offset, trace))
    path = tmp_path / "cards.sqlite"
    conn = connect(path)
    write_batch(conn, delivered, {0: len(commands)}, apply)
    conn.close()
    return ReadModel(path)


def test_recent_transactions_are_the_newest_alerts_and_blocks_with_a_transaction(tmp_path):
    recent = recent_transactions(_model(tmp_path))
    assert list(recent.columns) == ["transaction_id", "type", "card_id", "occurred_at"]
    # Newest first; tx 102's command came without a trace of its transaction: left out.
    assert list(recent["transaction_id"]) == [105, 104, 103, 101]
    assert list(recent["type"]) == ["CardBlocked", "AlertRaised", "CardBlocked", "AlertRaised"]
    assert list(recent_transactions(_model(tmp_path / "b"), limit=2)["transaction_id"]) == [
        105,
        104,
    ]
