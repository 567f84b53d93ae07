"""The simulator producer's pure parts: token bucket, wire format, rows, merge order, report."""

import numpy as np
import pandas as pd
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

from rtml.cli import main
from rtml.config import Settings
from rtml.schemas import SCHEMAS, SchemaError, avro_serializer, load_schema, subject
from rtml.simulate import SimulationParams, SimulatorError, simulate
from rtml.simulate import producer as P
from rtml.simulate.producer import (
    CUSTOMERS,
    LABELS,
    TERMINALS,
    TRANSACTIONS,
    PreparedSerializer,
    ProduceReport,
    TokenBucket,
    label_slots,
    records,
)


class FakeTime:
    """A clock that only moves when the code under test sleeps (plus `oversleep`)."""

    def __init__(self, oversleep: float = 0.0) -> None:
        self.now = 100.0
        self.oversleep = oversleep
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.oversleep


def test_token_bucket_paces_at_the_rate():
    t = FakeTime()
    bucket = TokenBucket(100, burst=1, clock=t.clock, sleep=t.sleep)
    for _ in range(1000):
        bucket.take()
    # The bucket starts empty: 1000 tokens at 100/s take exactly 10 s.
    assert t.now - 100.0 == pytest.approx(10.0)


def test_token_bucket_holds_the_average_rate_when_sleep_oversleeps():
    t = FakeTime(oversleep=0.004)  # every sleep lasts 4 ms longer than asked, as on a busy box
    bucket = TokenBucket(1000, clock=t.clock, sleep=t.sleep)  # default burst: 100 ms of tokens
    for _ in range(5000):
        bucket.take()
    assert 5000 / (t.now - 100.0) == pytest.approx(1000, rel=0.01)


def test_token_bucket_burst_caps_what_idle_time_saves():
    t = FakeTime()
    bucket = TokenBucket(10, burst=3, clock=t.clock, sleep=t.sleep)
    t.now += 60  # a minute idle earns 3 tokens, not 600
    for _ in range(3):
        bucket.take()
    assert t.sleeps == []
    bucket.take()
    assert t.sleeps == [pytest.approx(0.1)]
    assert bucket.wait_time() == pytest.approx(0.1)


@pytest.mark.parametrize("rate", [0, -5, float("nan"), "100", True])
def test_token_bucket_refuses_a_bad_rate(rate):
    with pytest.raises(SimulatorError, match="rate must be a number > 0"):
        TokenBucket(rate)


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationParams(n_customers=30, n_terminals=60, n_days=5, seed=3))


@pytest.fixture()
def mock_registry():
    """The in-memory registry confluent-kafka ships, with every topic's schema registered."""
    client = SchemaRegistryClient.new_client({"url": "mock://producer-units"})
    for topic, name in SCHEMAS.items():
        client.register_schema(subject(topic), Schema(load_schema(name), "AVRO"))
    return client


@pytest.mark.parametrize(
    ("stream", "table"),
    [
        (TRANSACTIONS, "transactions"),
        (LABELS, "labels"),
        (CUSTOMERS, "customers"),
        (TERMINALS, "terminals"),
    ],
    ids=lambda x: x if isinstance(x, str) else x.topic,
)
def test_prepared_serializer_writes_avro_serializers_bytes(stream, table, sim, mock_registry):
    settings = Settings.from_env({})
    prepared = PreparedSerializer.for_topic(settings, stream.topic, mock_registry)
    reference = avro_serializer(settings, stream.topic, mock_registry)
    ctx = SerializationContext(stream.topic, MessageField.VALUE)
    rows = list(records(getattr(sim, table), stream.fields, prepared.booleans))
    assert rows
    expected_id = mock_registry.lookup_schema(
        subject(stream.topic), Schema(load_schema(SCHEMAS[stream.topic]), "AVRO")
    ).schema_id
    assert prepared.schema_id == expected_id
    for row in rows:
        assert prepared(row) == reference(row, ctx)


def test_an_unregistered_schema_names_the_command_that_registers_it():
    empty = SchemaRegistryClient.new_client({"url": "mock://nothing-registered"})
    with pytest.raises(
        SchemaError, match=r"not registered under labels-value.*rtml schemas register"
    ):
        PreparedSerializer.for_topic(Settings.from_env({}), "labels", empty)


def test_bad_simulator_parameters_are_one_sentence_and_exit_2(capsys):
    assert main(["simulate", "replay", "--customers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "rtml: n_customers must be an integer >= 1, got 0."


def test_prepared_serializer_frames_the_schema_id_big_endian():
    prepared = PreparedSerializer(load_schema("terminal"), 0x01020304)
    data = prepared({"terminal_id": 1, "x": 0.0, "y": 0.0})
    assert data[:5] == b"\x00\x01\x02\x03\x04"
    # Avro body: zigzag varint 1 -> 0x02, then two little-endian doubles.
    assert data[5:] == b"\x02" + bytes(16)


def test_explain_names_the_field_that_breaks_the_schema():
    prepared = PreparedSerializer(load_schema("transaction"), 1)
    bad = {
        "transaction_id": 9,
        "tx_datetime": 0,
        "customer_id": 1,
        "terminal_id": 2,
        "tx_amount": None,
    }
    with pytest.raises(TypeError) as info:
        prepared(bad)
    assert prepared.explain(bad, info.value) == "field tx_amount is None, the schema wants double"


def test_records_are_plain_python_values_in_row_order(sim):
    rows = list(records(sim.labels, LABELS.fields, {"tx_fraud"}))
    assert len(rows) == len(sim.labels)
    first = sim.labels.iloc[0]
    assert rows[0] == {
        "transaction_id": int(first["transaction_id"]),
        "customer_id": int(first["customer_id"]),
        "terminal_id": int(first["terminal_id"]),
        "tx_fraud": bool(first["tx_fraud"]),
        "tx_datetime": int(first["event_time_ms"]),
        "label_time": int(first["label_time_ms"]),
    }
    assert {type(v) for r in rows for k, v in r.items() if k != "tx_fraud"} == {int}
    assert {type(r["tx_fraud"]) for r in rows} == {bool}
    assert [r["transaction_id"] for r in rows] == sim.labels["transaction_id"].tolist()


def test_records_cross_chunk_boundaries_without_losing_rows(monkeypatch):
    monkeypatch.setattr(P, "_CHUNK", 3)
    frame = pd.DataFrame({"terminal_id": np.arange(10), "x": np.arange(10) / 2, "y": 0.0})
    rows = list(records(frame, TERMINALS.fields))
    assert [r["terminal_id"] for r in rows] == list(range(10))
    assert rows[7] == {"terminal_id": 7, "x": 3.5, "y": 0.0}


def test_label_slots_put_each_label_after_the_transactions_it_waited_for():
    events = np.array([10, 20, 20, 30])
    label_times = np.array([15, 20, 40])
    slots = label_slots(events, label_times)
    # Merged order: tx10, label15, tx20, tx20, label20, tx30, label40.
    assert slots.tolist() == [False, True, False, False, True, False, True]


def test_label_slots_of_a_simulation_keep_both_orders(sim):
    txs, lbs = sim.transactions, sim.labels
    slots = label_slots(txs["event_time_ms"].to_numpy(), lbs["label_time_ms"].to_numpy())
    merged = np.empty(len(slots), dtype=np.int64)
    merged[~slots] = txs["event_time_ms"].to_numpy()
    merged[slots] = lbs["label_time_ms"].to_numpy()
    # The merged stream is in time order: no label before a transaction that precedes it.
    assert (np.diff(merged) >= 0).all()
    assert slots.sum() == len(lbs)


class FakeError:
    def str(self) -> str:
        return "Broker: Not enough in-sync replicas"


class FakeMsg:
    def topic(self) -> str:
        return "transactions"


def test_report_counts_each_delivery_and_keeps_the_first_errors():
    report = ProduceReport(produced=10, duration_s=2.0)
    for _ in range(3):
        report.on_delivery(None, FakeMsg())
    for _ in range(7):
        report.on_delivery(FakeError(), FakeMsg())
    assert (report.acked, report.failed) == (3, 7)
    assert len(report.errors) == P.MAX_ERRORS
    assert report.errors[0] == "transactions: Broker: Not enough in-sync replicas"
    assert not report.ok and report.rate == 5.0
    assert "7 FAILED (first: transactions: Broker: Not enough in-sync replicas)" in (
        report.summary()
    )
