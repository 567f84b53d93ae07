"""Card events routed by EventBridge rules (a moto server) select what a Kafka consumer
filtering card-events with the same patterns selects: the same event ids, each once."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rtml.aws import server
from rtml.aws.eventbridge import HIGH_RISK, RULES, Router, card_events
from rtml.cards.service import EVENTS
from rtml.cards.state import card_key
from rtml.clients import durable_producer
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer
from rtml.topics import apply

KINDS = ("CardBlocked", "AlertRaised", "TransactionDeclined", "CommandRejected", "CardUnblocked")


@pytest.fixture(scope="module")
def moto(cluster_settings) -> Iterator[str]:
    with server.running(cluster_settings) as endpoint:
        yield endpoint


def _events(cards: list[int], n: int) -> list[dict]:
    """Card events as the card service writes them; scores spread around the threshold."""
    rng = random.Random(7)
    run = uuid.uuid4().hex[:6]
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        score = round(rng.uniform(HIGH_RISK - 0.3, 1.0), 3)
        decision = "DECLINE" if kind == "CardBlocked" else "REVIEW"
        out.append(
            {
                "event_id": f"{run}-{i}",
                "card_id": cards[i % len(cards)],
                "version": i + 1,
                "type": kind,
                "transaction_id": i,
                # Every fifth one names no score: a rule on the score must skip it.
                "reason": "by hand" if i % 5 == 4 else f"{decision}: score {score} by model v1",
                "command_id": f"{run}-c{i}",
                "occurred_at": datetime.now(UTC),
            }
        )
    return out


def test_rules_route_the_events_a_kafka_filter_keeps(cluster_settings, moto) -> None:
    settings = cluster_settings
    apply(settings)
    register_all(settings)
    base = random.randrange(10**9, 2 * 10**9, 10**5)
    cards = [base + i for i in range(5)]
    sent = _events(cards, 60)
    encode = PreparedSerializer.for_topic(settings, EVENTS)
    producer = durable_producer(settings, partitioner="murmur2_random")
    for event in sent:
        producer.produce(EVENTS, key=card_key(event["card_id"]), value=encode(event))
    assert producer.flush(30) == 0

    # Both sides get this test's events, read back from card-events by a plain consumer.
    ours = [e for e in card_events(settings) if e["card_id"] in cards]
    assert sorted(e["event_id"] for e in ours) == sorted(e["event_id"] for e in sent)
    results = {r.rule: r for r in Router(moto, f"bus-{uuid.uuid4().hex[:6]}").route(ours)}
    assert set(results) == set(RULES)
    for r in results.values():
        assert r.routed, f"rule {r.rule} routed nothing, so the comparison would prove nothing"
        assert len(set(r.routed)) == len(r.routed), "each event is delivered once"
        assert r.same, f"rule {r.rule}: EventBridge and the Kafka filter differ"
    # And they are the events the rules describe, computed here independently.
    blocked = {e["event_id"] for e in sent if e["type"] == "CardBlocked"}
    assert set(results["card-blocked"].routed) == blocked
    risky = {
        e["event_id"]
        for e in sent
        if e["type"] in ("AlertRaised", "TransactionDeclined")
        and "score" in e["reason"]
        and float(e["reason"].split()[2]) >= HIGH_RISK
    }
    assert set(results["high-risk"].routed) == risky
    assert len(risky) < sum(e["type"] in ("AlertRaised", "TransactionDeclined") for e in sent)
