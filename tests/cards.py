"""Shared by the card tests: commands to send, and the committed events read back."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from rtml.cards.service import COMMANDS, EVENTS
from rtml.cards.state import card_key
from rtml.config import Settings
from rtml.schemas import SchemaError
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.trace import Trace

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def card_base() -> int:
    """Card ids of one test, apart from every other test's on the shared topics."""
    return random.randrange(10**9, 2 * 10**9, 10**5)


def commands(cards: list[int], n: int, seed: int = 1) -> list[dict[str, Any]]:
    """`n` commands spread over `cards`, a mix of alerts, blocks and unblocks."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    kinds = ("RaiseAlert", "RaiseAlert", "BlockCard", "UnblockCard", "DeclineTransaction")
    return [
        {
            "command_id": f"{run}-{i}",
            "card_id": rng.choice(cards),
            "type": rng.choice(kinds),
            "expected_version": None,
            "transaction_id": i,
            "reason": f"test {i}",
            "issued_at": T0,
        }
        for i in range(n)
    ]


def send(
    settings: Settings, items: Iterable[dict[str, Any]], producer: Producer | None = None
) -> int:
    """Produce commands (traced, keyed by card) and wait for their acknowledgement."""
    encode = PreparedSerializer.for_topic(settings, COMMANDS)
    own = producer is None
    producer = producer or Producer(
        settings.client_config(acks="all", partitioner="murmur2_random")
    )
    n = 0
    for command in items:
        trace = Trace(command["command_id"], f"tx-{command['transaction_id']}", f"pred-{n}")
        producer.produce(
            COMMANDS, encode(command), card_key(command["card_id"]), headers=trace.headers()
        )
        producer.poll(0)
        n += 1
    if own:
        assert producer.flush(30) == 0
    return n


def committed_events(
    settings: Settings, cards: set[int]
) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """Every committed event of `cards` on card-events, with its headers, in log order."""
    decode = WireDeserializer.for_topic(settings, EVENTS)
    consumer = Consumer(
        settings.client_config(
            group_id=f"test-read-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
    )
    out = []
    try:
        parts = consumer.list_topics(EVENTS, timeout=10).topics[EVENTS].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(EVENTS, p), timeout=10)[1]
            for p in parts
        }
        consumer.assign([TopicPartition(EVENTS, p, OFFSET_BEGINNING) for p in parts])
        todo = {p for p, end in ends.items() if end > 0}
        while todo:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                try:
                    event = decode(msg.value())
                except SchemaError:
                    continue  # other tests' poison records
                if event["card_id"] in cards:
                    out.append((event, dict(msg.headers() or [])))
            for tp in consumer.position([TopicPartition(EVENTS, p) for p in todo]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)
    finally:
        consumer.close()
    return out
