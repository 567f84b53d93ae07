"""The card projection on the live cluster: exactly once into SQLite, rebuilt hash for hash."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from rtml.cards.aggregate import applier, decide, fold
from rtml.cards.projection import Projection, ProjectionOptions, rebuild
from rtml.cards.readmodel import ReadModel
from rtml.cards.state import CardState, card_key
from rtml.config import Settings
from rtml.dlq import read_origin
from rtml.patterns.consumer import end_offsets
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer
from rtml.topics import apply
from rtml.trace import Trace
from tests.cards import card_base, commands

EVENTS = "card-events"
DLQ = "projections.dlq"
APPLY = applier("solutions")


@pytest.fixture(scope="module")
def settings(cluster_settings: Settings) -> Settings:
    apply(cluster_settings)
    register_all(cluster_settings)
    return cluster_settings


def decided(cards: list[int], n: int) -> list[dict[str, Any]]:
    """The events the card aggregate decides for `n` commands over `cards`, in order."""
    states: dict[int, CardState] = {}
    out = []
    for command in commands(cards, n, seed=4):
        card = command["card_id"]
        state = states.get(card) or CardState(card)
        for event in decide(state, command):
            state = APPLY(state, event)
            out.append(event)
        states[card] = state
    return out


def produce(settings: Settings, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Write `events` as the card service does (traced, keyed by card, in a transaction),
    then one of them again, a record that is not Avro, and an aborted event."""
    encode = PreparedSerializer.for_topic(settings, EVENTS)
    producer = Producer(
        settings.client_config(
            transactional_id=f"test-projection-{uuid.uuid4().hex[:6]}",
            partitioner="murmur2_random",
        )
    )
    producer.init_transactions(30)

    def send(event: Mapping[str, Any]) -> None:
        trace = Trace(event["event_id"], f"tx-{event['transaction_id']}", event["command_id"])
        producer.produce(EVENTS, encode(event), card_key(event["card_id"]), headers=trace.headers())

    producer.begin_transaction()
    for event in events:
        send(event)
    producer.commit_transaction(30)
    duplicate, poison_card = events[len(events) // 2], events[0]["card_id"]
    producer.begin_transaction()
    send(duplicate)  # an at-least-once card service appended it twice: same event_id
    producer.produce(EVENTS, b"not avro", card_key(poison_card))
    producer.commit_transaction(30)
    aborted = {**events[-1], "event_id": "aborted#0", "version": 10_000, "type": "AlertRaised"}
    producer.begin_transaction()
    send(aborted)
    producer.abort_transaction(30)
    return {"duplicate": duplicate, "poison_card": poison_card, "aborted": aborted}


def dead_letters(settings: Settings, start: Mapping[int, int]) -> list[Message]:
    """The records of projections.dlq from `start` to its end now."""
    ends = end_offsets(settings, DLQ)
    todo = {p for p, end in ends.items() if end > start.get(p, 0)}
    consumer = Consumer(settings.client_config(group_id=f"t-{uuid.uuid4().hex[:6]}"))
    out: list[Message] = []
    try:
        consumer.assign([TopicPartition(DLQ, p, start.get(p, 0)) for p in todo])
        while todo:
            for msg in consumer.consume(100, timeout=1):
                if msg.error() is None:
                    out.append(msg)
                    if msg.offset() + 1 >= ends[msg.partition()]:
                        todo.discard(msg.partition())
    finally:
        consumer.close()
    return out


def crashing(fold_one: Callable, after: int, crash: Callable[[], None]) -> Callable:
    """The fold, with `crash()` called once it has folded `after` events."""
    calls = 0

    def fold_and_maybe_crash(state: CardState, event: Mapping[str, Any]) -> CardState:
        nonlocal calls
        calls += 1
        if calls == after:
            crash()
        return fold_one(state, event)

    return fold_and_maybe_crash


def test_the_read_model_is_exact_rebuildable_and_survives_crashes(
    settings: Settings, tmp_path: Path
) -> None:
    base = card_base()
    cards = list(range(base, base + 30))
    events = decided(cards, 300)
    dlq_start = end_offsets(settings, DLQ)
    sent = produce(settings, events)

    group = f"test-projections-{uuid.uuid4().hex[:6]}"
    live = Projection(settings, ProjectionOptions(db_path=tmp_path / "live.sqlite", group=group))
    status = live.run_until_caught_up(120)
    assert status.state == "caught up" and status.balanced
    assert status.duplicates >= 1 and status.dlq >= 1  # others' events are on the topic too

    model = ReadModel(tmp_path / "live.sqlite")
    by_card = {c: [e for e in events if e["card_id"] == c] for c in cards}
    folded = {c: fold(c, log, "solutions") for c, log in by_card.items()}
    blocked = set(model.blocked_cards()["card_id"]) & set(cards)
    assert blocked == {c for c, s in folded.items() if s.blocked} != set()
    for card in cards:
        history = model.card_history(card)
        assert list(history["event_id"]) == [e["event_id"] for e in by_card[card]]
        assert list(history["version"]) == list(range(1, len(by_card[card]) + 1))
    assert "aborted#0" not in set(model.card_history(sent["aborted"]["card_id"])["event_id"])
    duplicate = sent["duplicate"]
    traced = model.trace(f"tx-{duplicate['transaction_id']}")
    traced = traced[traced["card_id"].isin(cards)]  # other tests use the same transaction ids
    assert list(traced["event_id"]) == [duplicate["event_id"]]
    assert traced["causation_id"].iloc[0] == duplicate["command_id"]
    stats = model.stats()
    assert stats["records"] == stats["applied"] + stats["duplicates"] + stats["dlq"]
    assert stats["records"] == status.records

    # The poison record went to projections.dlq, unchanged, with where it came from.
    # (others' poison records on card-events are dead-lettered by this group too: ours is the
    # one keyed by our poison card)
    ours = [
        m
        for m in dead_letters(settings, dlq_start)
        if read_origin(m.headers())["group"] == group and m.key() == card_key(sent["poison_card"])
    ]
    assert [(m.key(), m.value()) for m in ours] == [(card_key(sent["poison_card"]), b"not avro")]
    origin = read_origin(ours[0].headers())
    assert (origin["topic"], origin["stage"], origin["error_type"]) == (
        EVENTS,
        "projections",
        "SchemaError",
    )
    assert int(origin["partition"]) in range(6) and int(origin["offset"]) >= 0

    # A rebuild from offset 0 into a new file holds the same cards and events.
    rebuilt = rebuild(settings, tmp_path / "rebuilt.sqlite", timeout=120)
    assert rebuilt.content_hash() == model.content_hash()
    assert rebuilt.stats() == stats
    groups = {read_origin(m.headers())["group"] for m in dead_letters(settings, dlq_start)}
    assert not any(g.startswith("rtml-projections-rebuild") for g in groups)  # counted only

    # Stopped after some batches, then crashed inside a batch, then run to the end: every
    # event is applied once, as the offsets are committed with the rows they produced.
    options = ProjectionOptions(
        db_path=tmp_path / "crashed.sqlite", group=f"{group}-crash", batch_size=10
    )
    first = Projection(settings, options)
    first.apply = crashing(first.apply, 40, first.stop)
    assert first.run().state == "stopped"
    assert 40 <= first.status.applied < stats["applied"]

    def boom() -> None:
        raise RuntimeError("killed in the middle of a batch")

    second = Projection(settings, options)
    second.apply = crashing(second.apply, 25, boom)
    with pytest.raises(RuntimeError, match="killed"):
        second.run_until_caught_up(120)

    third = Projection(settings, options).run_until_caught_up(120)
    assert third.state == "caught up" and third.balanced
    crashed = ReadModel(tmp_path / "crashed.sqlite")
    assert crashed.content_hash() == model.content_hash()
    assert crashed.stats() == stats  # nothing counted twice, nothing lost
