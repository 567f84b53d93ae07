"""The card service on the live cluster: commands become events, state survives restarts."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from confluent_kafka import Producer

from rtml.cards.aggregate import fold
from rtml.cards.requests import QUERIES, CardQueries, CardQueryError
from rtml.cards.service import COMMANDS, card_service
from rtml.cards.state import card_key
from rtml.dlq import read_origin
from rtml.ops.replay import Target, reset
from rtml.poll import until
from rtml.schemas import register_all
from rtml.stage import StageOptions
from rtml.topics import apply
from tests.cards import card_base, commands, committed_events, send


def _start(settings, group: str, guarantee: str = "exactly-once"):
    stage = card_service(settings, StageOptions(group=group, guarantee=guarantee, max_batch=50))
    ready = threading.Event()
    thread = threading.Thread(target=stage.run, kwargs={"ready": ready.set}, daemon=True)
    thread.start()
    until(ready.is_set, 60, "the card service to start", 0.05)
    return stage, thread


def test_commands_become_one_event_each_with_trace_and_versions(cluster_settings) -> None:
    settings = cluster_settings
    apply(settings)
    register_all(settings)
    base = card_base()
    cards = list(range(base, base + 20))
    sent = commands(cards, 300)
    group = f"test-cards-{uuid.uuid4().hex[:6]}"
    # Other tests (and the lab chain of the control room's tests) wrote commands and queries
    # before: the group starts at the end of both topics, so it counts only this test's.
    reset(settings, group, Target("latest"), topics=[COMMANDS, QUERIES])
    stage, thread = _start(settings, group)
    try:
        send(settings, sent[:200])
        # Poison: not Avro. It goes to cards.dlq with its origin; the service keeps going.
        poison = Producer(settings.client_config(acks="all"))
        poison.produce(COMMANDS, b"not avro", card_key(cards[0]))
        assert poison.flush(10) == 0
        send(settings, sent[200:])
        until(lambda: stage.status.records >= 301, 60, "301 commands handled", 0.1)
    finally:
        stage.stop()
        thread.join(30)
    s = stage.status
    assert (s.records, s.handled, s.dlq) == (301, 300, 1)
    assert s.outputs == 300 and s.state == "stopped"

    events = committed_events(settings, set(cards))
    assert len(events) == 300
    assert Counter(e["command_id"] for e, _ in events) == Counter(c["command_id"] for c in sent)
    by_card: dict[int, list] = {}
    for event, headers in events:
        by_card.setdefault(event["card_id"], []).append(event)
        # The event continues the command's trace: same correlation, caused by the command.
        assert headers["rtml.correlation_id"] == f"tx-{event['transaction_id']}".encode()
        assert headers["rtml.causation_id"] == event["command_id"].encode()
        assert headers["rtml.message_id"] == event["event_id"].encode()
    for card, log in by_card.items():
        assert [e["version"] for e in log] == list(range(1, len(log) + 1)), card
    # The service's state is the fold of the events; a block it refused says why.
    rejected = [e for e, _ in events if e["type"] == "CommandRejected"]
    assert rejected and all(": the card is" in e["reason"] for e in rejected)

    dlq = _dlq_origin(settings, group)
    assert dlq["topic"] == COMMANDS and dlq["stage"] == "cards" and dlq["group"] == group
    assert dlq["error_type"] == "SchemaError"

    # A restarted service (same group) rebuilds its state from the events alone, so a
    # command that depends on the state is decided on the whole history.
    blocked = {c for c, log in by_card.items() if fold(c, log).blocked}
    assert blocked
    card = sorted(blocked)[0]
    follow_up = commands([card], 1, seed=9)[0] | {"type": "BlockCard"}
    queries = CardQueries(settings)
    stage, thread = _start(settings, group)
    try:
        send(settings, [follow_up])
        until(lambda: stage.status.records >= 1, 60, "the follow-up", 0.1)
        # Request-reply: the service answers from the state it rebuilt, and the requester
        # matches the answer by correlation id.
        answer = queries.ask(card, timeout=30)
    finally:
        stage.stop()
        thread.join(30)
    log = [e for e, _ in committed_events(settings, {card})]
    assert answer == fold(card, log) and answer.blocked and answer.version == len(log)
    # Nobody answers while the service is down: a timeout, said in one sentence.
    with pytest.raises(CardQueryError, match="is the card service running"):
        queries.ask(card, timeout=1)
    queries.close()
    last = log[-1]
    assert last["command_id"] == follow_up["command_id"]
    assert last["type"] == "CommandRejected" and "already blocked" in last["reason"]
    assert last["version"] == len(by_card[card]) + 1


def _dlq_origin(settings, group: str) -> dict[str, str]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(settings.client_config(group_id=f"t-{uuid.uuid4().hex[:6]}"))
    try:
        parts = consumer.list_topics("cards.dlq", timeout=10).topics["cards.dlq"].partitions
        consumer.assign([TopicPartition("cards.dlq", p, OFFSET_BEGINNING) for p in parts])
        found: dict[str, str] = {}

        def seen() -> bool:
            for msg in consumer.consume(100, timeout=0.2):
                origin = read_origin(msg.headers())
                if msg.error() is None and origin.get("group") == group:
                    found.update(origin)
            return bool(found)

        until(seen, 30, "the poison record in cards.dlq", 0.05)
        return found
    finally:
        consumer.close()
