"""A 1% poison mix through the week-4 chain: no stage stops, every poison record lands in its
stage's DLQ with its origin, every good record reaches the read model, and each stage's
`in == handled + dlq`."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer

from rtml.cards.decisions import decision_service
from rtml.cards.notifications import notification_service
from rtml.cards.projection import Projection, ProjectionOptions
from rtml.cards.readmodel import ReadModel
from rtml.cards.service import card_service
from rtml.cards.state import card_key
from rtml.ops.dlq import records
from rtml.poll import until
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer
from rtml.stage import StageOptions
from rtml.topics import apply
from tests.cards import card_base

N = 1_000
POISON_EVERY = 100  # 1%


def _predictions(cards: list[int], run: str) -> list[dict]:
    rng = random.Random(3)
    now = datetime.now(UTC)
    base_tx = random.randrange(10**12, 2 * 10**12)  # transaction ids no other test uses
    return [
        {
            "transaction_id": base_tx + i,
            "customer_id": rng.choice(cards),
            "terminal_id": 1,
            "score": rng.random(),
            "decision": rng.choice(("APPROVE", "REVIEW", "REVIEW", "DECLINE")),
            "model_version": f"poison-{run}",
            "tx_datetime": now,
            "appended_time": now,
            "feature_time": now,
            "predicted_time": now,
        }
        for i in range(N)
    ]


def _poison(producer: Producer, topic: str, run: str, n: int, key: bytes) -> list[bytes]:
    values = [f"poison-{run}-{topic}-{i}".encode() for i in range(n)]
    for value in values:
        producer.produce(topic, value, key)
    return values


def test_one_percent_poison_stops_no_stage_and_loses_no_good_record(
    cluster_settings, tmp_path
) -> None:
    settings = cluster_settings
    apply(settings)
    register_all(settings)
    run = uuid.uuid4().hex[:6]
    base = card_base()
    cards = list(range(base, base + 40))
    stages = {
        "decisions": decision_service(settings, StageOptions(group=f"t-dec-{run}")),
        "cards": card_service(settings, StageOptions(group=f"t-cards-{run}")),
        "notifications": notification_service(settings, StageOptions(group=f"t-notes-{run}")),
    }
    projection = Projection(
        settings, ProjectionOptions(db_path=tmp_path / "cards.sqlite", group=f"t-proj-{run}")
    )
    threads = [threading.Thread(target=s.run, daemon=True) for s in (*stages.values(), projection)]
    for t in threads:
        t.start()

    encode = PreparedSerializer.for_topic(settings, "predictions")
    producer = Producer(settings.client_config(acks="all", partitioner="murmur2_random"))
    good = _predictions(cards, run)
    injected: dict[str, list[bytes]] = {}
    try:
        for i, prediction in enumerate(good):
            producer.produce(
                "predictions", encode(prediction), str(prediction["transaction_id"]).encode()
            )
            if i % POISON_EVERY == 0:
                # One poison record per 100 at every stage's input, mid-stream.
                for stage, topic in (
                    ("decisions", "predictions"),
                    ("cards", "card-commands"),
                    ("projections", "card-events"),
                ):
                    injected.setdefault(stage, []).extend(
                        _poison(producer, topic, run, 1, card_key(cards[0]))
                    )
            producer.poll(0)
        assert producer.flush(30) == 0
        # The notification service reads card-events too: the same poison reaches its DLQ.
        injected["notifications"] = injected["projections"]

        expected = {p["transaction_id"] for p in good if p["decision"] in ("DECLINE", "REVIEW")}
        model = ReadModel(tmp_path / "cards.sqlite")

        def projected() -> int:
            if not (tmp_path / "cards.sqlite").exists():
                return 0
            history = [model.card_history(c) for c in cards]
            return sum(int(h["transaction_id"].isin(expected).sum()) for h in history)

        until(lambda: projected() >= len(expected), 240, "every good record projected", 0.5)
        for stage, values in injected.items():

            def dead(stage: str = stage, values: list[bytes] = values) -> bool:
                found = [
                    r
                    for r in records(settings, stage, limit=100_000)
                    if r.value_format == "text" and r.value.encode() in values
                ]
                return len(found) >= len(values)

            until(dead, 60, f"the poison in {stage}.dlq", 0.5)
        assert all(t.is_alive() for t in threads), "a stage stopped on poison"
    finally:
        for s in (*stages.values(), projection):
            s.stop()
        for t in threads:
            t.join(30)

    # Exactly the injected poison, once each, with the stage's own group as origin.
    groups = {
        "decisions": f"t-dec-{run}",
        "cards": f"t-cards-{run}",
        "notifications": f"t-notes-{run}",
        "projections": f"t-proj-{run}",
    }
    for stage, values in injected.items():
        mine = [
            r
            for r in records(settings, stage, limit=100_000)
            if r.value_format == "text"
            and r.value.encode() in values
            and r.origin.get("group") == groups[stage]
        ]
        assert sorted(r.value.encode() for r in mine) == sorted(values), stage
        assert all(r.origin["stage"] == stage for r in mine)
    # Every stage's books balance: in == handled + dlq.
    for name, stage in stages.items():
        s = stage.status
        assert s.records == s.handled + s.dlq and s.dlq >= len(injected[name]), name
    assert projection.status.balanced
    assert projection.status.dlq >= len(injected["projections"])
    # Nothing good was lost: one event per command, so per DECLINE/REVIEW prediction.
    assert projected() == len(expected)
