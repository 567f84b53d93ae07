"""The simulator's producer on the live cluster: replay, live, reference data and bad input."""

import dataclasses
import itertools
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext

from rtml import topics
from rtml.config import project_root
from rtml.schemas import SchemaError, avro_deserializer, avro_serializer, register_all
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.laps import laps_file
from rtml.simulate.params import MS_PER_DAY
from rtml.simulate.producer import (
    ProduceError,
    TokenBucket,
    live,
    preflight,
    publish_reference,
    replay,
)
from rtml.topics import TopicError

PARTITIONS = 6
CLI_SIZES = ["--customers", "20", "--terminals", "50", "--days", "3"]
LIVE_ONE_SECOND = ["--rate", "200", "--duration", "1", "--no-labels"]


@pytest.fixture(scope="module")
def settings(cluster_settings):
    topics.apply(cluster_settings)
    register_all(cluster_settings)
    return cluster_settings


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationParams(n_customers=50, n_terminals=100, n_days=10, seed=11))


def _ends(settings, topic):
    """The end offset of every partition of `topic`."""
    consumer = Consumer(settings.client_config(group_id=f"ends-{uuid.uuid4().hex[:6]}"))
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def _read(settings, topic, start, end, timeout=60.0):
    """Every record of `topic` between the offsets `start` and `end`, in partition order."""
    consumer = Consumer(
        settings.client_config(group_id=f"check-{uuid.uuid4().hex[:6]}", enable_auto_commit=False)
    )
    wanted = {p for p in start if end[p] > start[p]}
    consumer.assign([TopicPartition(topic, p, start[p]) for p in wanted])
    deserialize = avro_deserializer(settings, topic)
    ctx = SerializationContext(topic, MessageField.VALUE)
    out = []
    deadline = time.monotonic() + timeout
    try:
        while wanted:
            assert time.monotonic() < deadline, f"{topic}: partitions {wanted} not read in time"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            if msg.offset() >= end[msg.partition()]:
                continue
            out.append(
                {
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": msg.key(),
                    "raw": msg.value(),
                    "value": deserialize(msg.value(), ctx),
                    "timestamp": msg.timestamp(),
                }
            )
            if msg.offset() + 1 >= end[msg.partition()]:
                wanted.discard(msg.partition())
    finally:
        consumer.close()
    return out


def _by_id(sim, column):
    """transaction_id -> that transaction's `column`."""
    return sim.transactions.set_index("transaction_id")[column].to_dict()


def _epoch_ms(value):
    """Avro timestamp-millis come back as datetimes; compare them as epoch ms."""
    return round(value.timestamp() * 1000)


def murmur2(data: bytes) -> int:
    """Kafka's Java partitioner hash (org.apache.kafka.common.utils.Utils.murmur2)."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    whole = len(data) & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = data[whole:]
    if rest:
        for i in reversed(range(len(rest))):
            h ^= rest[i] << (8 * i)
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


@pytest.fixture(scope="module")
def replayed(settings, sim):
    """Reference data and one replay of `sim`, with the records each topic received."""
    names = ("transactions", "labels", "customers", "terminals")
    before = {t: _ends(settings, t) for t in names}
    counts = publish_reference(settings, sim)
    report = replay(settings, sim, progress=False)
    after = {t: _ends(settings, t) for t in names}
    read = {t: _read(settings, t, before[t], after[t]) for t in names}
    return report, counts, read


def test_replay_report_counts_every_record_as_acknowledged(replayed, sim):
    report, counts, _ = replayed
    n = len(sim.transactions)
    assert n > 500
    assert report.produced == report.acked == 2 * n and report.failed == 0 and report.ok
    assert report.topics == {"transactions": n, "labels": n}
    assert counts == {"customers": 50, "terminals": 100}


def test_every_transaction_arrives_once_with_its_event_time(replayed, sim):
    _, _, read = replayed
    got = read["transactions"]
    assert sorted(r["value"]["transaction_id"] for r in got) == list(range(len(sim.transactions)))
    event = _by_id(sim, "event_time_ms")
    for r in got:
        tid = r["value"]["transaction_id"]
        assert r["timestamp"] == (TIMESTAMP_CREATE_TIME, event[tid])
        assert _epoch_ms(r["value"]["tx_datetime"]) == event[tid]


def test_each_customer_is_one_partition_in_event_time_order(replayed):
    _, _, read = replayed
    by_customer = defaultdict(list)
    for r in sorted(read["transactions"], key=lambda r: (r["partition"], r["offset"])):
        customer = r["value"]["customer_id"]
        assert r["key"] == str(customer).encode()  # the partition_key exercise's answer
        by_customer[customer].append(r)
    assert len(by_customer) > 10
    for customer, rs in by_customer.items():
        assert {r["partition"] for r in rs} == {(murmur2(rs[0]["key"]) & 0x7FFFFFFF) % PARTITIONS}
        times = [r["timestamp"][1] for r in rs]
        assert times == sorted(times), f"customer {customer} out of event-time order"


def test_hot_path_bytes_equal_confluents_avro_serializer(replayed, settings):
    _, _, read = replayed
    serialize = avro_serializer(settings, "transactions")
    ctx = SerializationContext("transactions", MessageField.VALUE)
    for r in read["transactions"][:50]:
        assert r["raw"] == serialize(r["value"], ctx)


def test_labels_arrive_once_each_after_the_delay(replayed, sim):
    _, _, read = replayed
    labels = read["labels"]
    assert len(labels) == len(sim.transactions)
    delay_ms = sim.params.label_delay_days * MS_PER_DAY
    fraud = _by_id(sim, "tx_fraud")
    event = _by_id(sim, "event_time_ms")
    seen = set()
    for r in labels:
        tid = r["value"]["transaction_id"]
        assert r["key"] == str(tid).encode()
        assert r["timestamp"] == (TIMESTAMP_CREATE_TIME, event[tid] + delay_ms)
        assert r["value"]["tx_fraud"] is bool(fraud[tid])
        seen.add(tid)
    assert seen == set(fraud)


def test_reference_data_is_one_record_per_id_keyed_by_id(replayed):
    _, _, read = replayed
    for topic, id_field, n in (("customers", "customer_id", 50), ("terminals", "terminal_id", 100)):
        rs = read[topic]
        assert sorted(r["value"][id_field] for r in rs) == list(range(n))
        assert all(r["key"] == str(r["value"][id_field]).encode() for r in rs)
        assert topics.spec(topic).compacted


def test_live_emits_at_the_rate_with_now_time(settings, sim):
    before = {t: _ends(settings, t) for t in ("transactions", "labels")}
    started_ms = time.time() * 1000
    report = live(settings, sim, rate=500, duration=2.0, progress=False, label_delay=0.5)
    stopped_ms = time.time() * 1000
    assert report.ok and report.failed == 0
    txs = _read(settings, "transactions", before["transactions"], _ends(settings, "transactions"))
    labels = _read(settings, "labels", before["labels"], _ends(settings, "labels"))
    assert len(txs) == report.topics["transactions"]
    assert 1000 * 0.85 <= len(txs) <= 1000 * 1.15
    stamps = sorted(r["timestamp"][1] for r in txs)
    assert started_ms - 1 <= stamps[0] and stamps[-1] <= stopped_ms + 1
    span_s = (stamps[-1] - stamps[0]) / 1000
    assert 500 * 0.85 <= (len(stamps) - 1) / span_s <= 500 * 1.15
    assert all(_epoch_ms(r["value"]["tx_datetime"]) == r["timestamp"][1] for r in txs)
    # Each label follows its transaction by the delay; the rest were not due at the stop.
    tx_time = {r["value"]["transaction_id"]: r["timestamp"][1] for r in txs}
    assert len(labels) + report.labels_pending == len(txs)
    assert len(labels) > 0
    for r in labels:
        assert r["timestamp"][1] == tx_time[r["value"]["transaction_id"]] + 500


def test_live_stops_cleanly_on_ctrl_c(settings, sim, monkeypatch):
    take, calls = TokenBucket.take, itertools.count(1)

    def ctrl_c_at_the_301st_record(self, n=1.0):
        if next(calls) > 300:
            raise KeyboardInterrupt  # where Ctrl-C usually lands: waiting for the next token
        take(self, n)

    monkeypatch.setattr(TokenBucket, "take", ctrl_c_at_the_301st_record)
    before = {t: _ends(settings, t) for t in ("transactions", "labels")}
    report = live(settings, sim, rate=1000, progress=False, label_delay=0.1)  # no duration
    assert report.interrupted and report.ok and "stopped by Ctrl-C" in report.summary()
    assert report.topics["transactions"] == 300
    txs = _read(settings, "transactions", before["transactions"], _ends(settings, "transactions"))
    labels = _read(settings, "labels", before["labels"], _ends(settings, "labels"))
    assert len(txs) == 300 and len(labels) == report.topics.get("labels", 0)
    assert len(labels) + report.labels_pending == 300


def test_a_missing_topic_is_named_with_the_command_that_creates_it(settings):
    with pytest.raises(TopicError, match=r"Topic no-such-topic .*`rtml topics apply`"):
        preflight(settings, ("transactions", "no-such-topic"))


def test_an_unreachable_registry_stops_replay_before_anything_is_produced(settings, sim):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bad = dataclasses.replace(
        settings, schema_registry_url=f"http://127.0.0.1:{port}/apis/ccompat/v7"
    )
    before = _ends(settings, "transactions")
    with pytest.raises(SchemaError, match=r"No schema registry answers.*rtml cluster up"):
        replay(bad, sim, progress=False)
    assert _ends(settings, "transactions") == before


def test_a_record_that_breaks_the_schema_stops_with_a_full_account(settings, sim):
    broken = sim.transactions.copy()
    broken["tx_amount"] = broken["tx_amount"].astype(object)
    k = 40
    broken.loc[k, "tx_amount"] = None
    before = _ends(settings, "transactions")
    with pytest.raises(ProduceError) as info:
        replay(
            settings, dataclasses.replace(sim, transactions=broken), progress=False, labels=False
        )
    message = str(info.value)
    tid = int(broken.loc[k, "transaction_id"])
    assert f"Transaction {tid} does not fit the transactions schema" in message
    assert "field tx_amount is None" in message
    assert f"{k} records were produced before it ({k} acknowledged, 0 failed)" in message
    report = info.value.report
    assert report.produced == report.acked == k
    after = _ends(settings, "transactions")
    assert sum(after.values()) - sum(before.values()) == k


def test_cli_replay_prints_the_counts(settings):
    expected = len(
        simulate(SimulationParams(n_customers=20, n_terminals=50, n_days=3)).transactions
    )
    result = subprocess.run(
        [sys.executable, "-m", "rtml", "simulate", "replay", *CLI_SIZES],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=project_root(),
    )
    assert result.returncode == 0, result.stderr
    assert "Reference data: 20 customers, 50 terminals." in result.stdout
    assert (
        f"{expected:,} to transactions, {expected:,} to labels" in result.stdout
        and f"{2 * expected:,} acknowledged" in result.stdout
    )


def test_a_restarted_live_simulator_never_reuses_a_transaction_id(settings):
    """Killed and started again, the live simulator continues at the next free lap: its ids
    are new, so downstream idempotent readers do not drop its records as duplicates."""
    lap_file = laps_file(settings)
    runs = []
    for _ in range(2):
        before = _ends(settings, "transactions")
        result = subprocess.run(
            [sys.executable, "-m", "rtml", "simulate", "live", *LIVE_ONE_SECOND, *CLI_SIZES],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=project_root(),
        )
        assert result.returncode == 0, result.stderr
        txs = _read(settings, "transactions", before, _ends(settings, "transactions"))
        runs.append({r["value"]["transaction_id"] for r in txs})
        assert lap_file.is_file()
    first, second = runs
    assert first and second and not first & second
    assert min(second) > max(first)
