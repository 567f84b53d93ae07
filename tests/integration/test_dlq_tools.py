"""`rtml dlq list|show|redrive` on the live cluster: counts, decoding, and once-only redrive.

Redrive tests use a DLQ of their own (`opstest-<id>.dlq`), so a full redrive sends nothing
another test left in a catalogue DLQ back to a real topic.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import NewTopic

from rtml import topics
from rtml.cli import main
from rtml.clients import admin, create_missing_topics, durable_producer
from rtml.dlq import dlq_topic, origin_headers
from rtml.ops import dlq
from rtml.poll import until
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer

ORIGINAL_MS = 1_525_176_000_000  # the failed record's own timestamp, kept by redrive


@pytest.fixture()
def scratch(cluster_settings) -> Iterator[list[str]]:
    """Names of topics (and consumer groups) the test creates; all deleted afterwards."""
    made: list[str] = []
    yield made
    client = admin(cluster_settings, timeout=10)
    existing = client.list_topics(timeout=10).topics
    doomed = [t for t in made if t in existing]
    if doomed:
        for fut in client.delete_topics(doomed, operation_timeout=30).values():
            fut.result(timeout=60)
    groups = [f"rtml-dlq-redrive-{t.removesuffix('.dlq')}" for t in made if t.endswith(".dlq")]
    if groups:
        for fut in client.delete_consumer_groups(groups, request_timeout=30).values():
            with contextlib.suppress(KafkaException):  # a test that never redrove made none
                fut.result(timeout=60)


def _topic(settings, made: list[str], name: str, partitions: int = 2) -> str:
    assert create_missing_topics(settings, [NewTopic(name, partitions, 1)]) == [name]
    made.append(name)
    return name


def _stage(settings, made: list[str]) -> str:
    stage = f"opstest-{uuid.uuid4().hex[:8]}"
    _topic(settings, made, dlq_topic(stage))
    return stage


def _dead_letter(
    settings,
    stage: str,
    partition: int,
    key: bytes,
    value: bytes,
    origin: str | None,
    error: BaseException | str = "bad record",
    own: list[tuple[str, bytes]] | None = None,
) -> int:
    """Write one record to `stage`'s DLQ as a stage would; return its offset."""
    headers = origin_headers(
        topic=origin or "",
        partition=3,
        offset=17,
        timestamp=ORIGINAL_MS,
        group="test-group",
        stage=stage,
        error=error,
    )
    if origin is None:
        headers = [(k, v) for k, v in headers if k != "rtml.topic"]
    delivered: list[Message] = []
    producer = durable_producer(settings)
    producer.produce(
        dlq_topic(stage),
        value,
        key,
        partition=partition,
        headers=[*(own or []), *headers],
        on_delivery=lambda err, msg: delivered.append(msg),
    )
    assert producer.flush(30) == 0 and delivered[0].error() is None
    return delivered[0].offset()


def _read_all(settings, topic: str) -> list[Message]:
    """Every committed record of `topic` now, in partition and offset order."""
    consumer = Consumer(
        settings.client_config(
            group_id="rtml-test-read",
            enable_auto_commit=False,
            isolation_level="read_committed",
            enable_partition_eof=True,
        )
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        got: list[Message] = []
        pending = set(parts)

        def drained() -> bool:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg)
            elif msg is not None and msg.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
            return not pending

        until(drained, 30, f"the end of every partition of {topic}", interval=0)
        return sorted(got, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


def _landed(settings, topic: str, n: int) -> list[Message]:
    """The records of `topic` once at least `n` are visible: a transaction's commit markers
    reach the partitions shortly after `commit_transaction` returns."""

    def enough() -> list[Message] | None:
        found = _read_all(settings, topic)
        return found if len(found) >= n else None

    return until(enough, 30, f"{n} committed record(s) in {topic}")


def test_redrive_sends_a_record_back_once_and_reports_what_it_cannot_send(
    cluster_settings, scratch
) -> None:
    settings = cluster_settings
    stage = _stage(settings, scratch)
    origin = _topic(settings, scratch, f"opstest-origin-{uuid.uuid4().hex[:8]}")
    gone = f"opstest-gone-{uuid.uuid4().hex[:8]}"
    sent = _dead_letter(
        settings, stage, 0, b"k1", b"v1", origin, ValueError("amount"), [("rtml.produced", b"7")]
    )
    orphan = _dead_letter(settings, stage, 1, b"k2", b"v2", gone)
    unknown = _dead_letter(settings, stage, 1, b"k3", b"v3", None)

    report = dlq.redrive(settings, stage)

    assert [(i.partition, i.offset, i.action) for i in report.items] == [
        (0, sent, "sent"),
        (1, orphan, "skipped"),
        (1, unknown, "skipped"),
    ]
    assert f"origin topic {gone} no longer exists" in report.items[1].reason
    assert "no rtml.topic header" in report.items[2].reason
    [back] = _landed(settings, origin, 1)
    assert (back.key(), back.value(), back.timestamp()[1]) == (b"k1", b"v1", ORIGINAL_MS)
    assert back.headers() == [
        ("rtml.produced", b"7"),
        ("rtml.redriven_from", f"{stage}.dlq:0:{sent}".encode()),
    ]

    again = subprocess.run(
        [sys.executable, "-m", "rtml", "dlq", "redrive", stage],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "Sent 0 record(s); skipped 2, already redriven 0." in again.stdout
    assert "no longer exists" in again.stdout
    assert dlq.redrive(settings, stage).count("sent") == 0
    assert [m.value() for m in _read_all(settings, origin)] == [b"v1"]


def test_redrive_of_chosen_offsets_sends_only_those_and_remembers_them(
    cluster_settings, scratch
) -> None:
    settings = cluster_settings
    stage = _stage(settings, scratch)
    origin = _topic(settings, scratch, f"opstest-origin-{uuid.uuid4().hex[:8]}", partitions=1)
    offsets = [_dead_letter(settings, stage, 0, b"k", f"v{i}".encode(), origin) for i in range(4)]

    chosen = dlq.redrive(settings, stage, [(0, offsets[2])])
    assert [(i.offset, i.action) for i in chosen.items] == [(offsets[2], "sent")]
    assert [m.value() for m in _landed(settings, origin, 1)] == [b"v2"]

    twice = dlq.redrive(settings, stage, [(0, offsets[2])])
    assert [(i.offset, i.action) for i in twice.items] == [(offsets[2], "already redriven")]
    dry = dlq.redrive(settings, stage, dry_run=True)
    assert [(i.offset, i.action) for i in dry.items] == [
        (offsets[0], "would send"),
        (offsets[1], "would send"),
        (offsets[3], "would send"),
    ]
    assert len(_read_all(settings, origin)) == 1  # a dry run sends nothing

    rest = dlq.redrive(settings, stage)
    assert [i.offset for i in rest.items if i.action == "sent"] == [
        offsets[0],
        offsets[1],
        offsets[3],
    ]
    values = [m.value() for m in _landed(settings, origin, 4)]
    assert values == [b"v2", b"v0", b"v1", b"v3"]  # each exactly once
    assert dlq.redrive(settings, stage).items == ()
    with pytest.raises(dlq.DlqError, match=f"has no record at 0:{offsets[3] + 1}"):
        dlq.redrive(settings, stage, [(0, offsets[3] + 1)])


def test_list_counts_each_catalogue_dlq_by_error_type(cluster_settings, capsys, monkeypatch):
    settings = cluster_settings
    topics.apply(settings)
    rare = type(f"Rare{uuid.uuid4().hex[:8]}Error", (Exception,), {})
    odd = type(f"Odd{uuid.uuid4().hex[:8]}Error", (Exception,), {})
    before = {s.stage: s for s in dlq.summaries(settings)}["decisions"]
    for error in (rare("x"), rare("y"), odd("z")):
        _dead_letter(settings, "decisions", 0, b"k", b"v", None, error)

    missing = f"missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(dlq, "DLQ_STAGES", (*dlq.DLQ_STAGES, missing))
    rows = {s.stage: s for s in dlq.summaries(settings)}
    after = rows["decisions"]
    assert after.exists and after.records == before.records + 3
    assert (after.error_types[rare.__name__], after.error_types[odd.__name__]) == (2, 1)
    assert not rows[missing].exists
    assert main(["dlq", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{missing}.dlq" in out and "does not exist" in out
    assert f"{rare.__name__} 2" in out


def test_show_decodes_avro_of_the_origin_topic_and_previews_other_bytes(
    cluster_settings, scratch, capsys
) -> None:
    settings = cluster_settings
    topics.apply(settings)
    register_all(settings)
    stage = _stage(settings, scratch)
    transaction = {
        "transaction_id": 12,
        "tx_datetime": ORIGINAL_MS,
        "customer_id": 3,
        "terminal_id": 4,
        "tx_amount": 55.5,
    }
    valid = PreparedSerializer.for_topic(settings, "transactions")(transaction)
    _dead_letter(settings, stage, 0, b"3", valid, "transactions", KeyError("customer"))
    _dead_letter(settings, stage, 0, b"3", b"\x00\x00\x00\xff\xfe" + bytes(300), "transactions")
    _dead_letter(settings, stage, 0, None, b"plain text", "predictions", own=[("trace", b"t1")])

    shown = dlq.records(settings, stage)

    assert [r.value_format for r in shown] == ["avro", "hex", "text"]
    avro, raw, text = shown
    assert avro.value["transaction_id"] == 12 and avro.value["tx_amount"] == 55.5
    assert (avro.key, avro.origin["error_type"], avro.origin["topic"]) == (
        "3",
        "KeyError",
        "transactions",
    )
    assert raw.value.startswith("000000fffe") and raw.value.endswith("(305 bytes)")
    assert (text.key, text.value, text.headers) == (None, "plain text", (("trace", b"t1"),))
    one = dlq.records(settings, stage, limit=1, partition=0, offset=text.offset)
    assert [r.offset for r in one] == [text.offset]

    assert main(["dlq", "show", stage, "--partition", "0", "--offset", "0", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert '"transaction_id": 12' in out and "KeyError" in out and "1 record(s) shown." in out
    assert main(["dlq", "show", stage, "--partition", "5"]) == 2
    assert "has no partition 5" in capsys.readouterr().err
