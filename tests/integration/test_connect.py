"""Kafka Connect on the live test cluster: a worker, a keyed reference-data source, an audit sink.

One worker starts for the module and always stops. Records are checked where they land: the
compacted `customers` topic (one Avro record per id, keyed by the id) and the audit file.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext

from rtml import topics
from rtml.clients import durable_producer
from rtml.config import Settings
from rtml.connect import (
    DEAD_LETTERS,
    ConnectError,
    Worker,
    audit_file,
    create_connector,
    reload_source,
    write_reference_files,
)
from rtml.connect import worker as worker_module
from rtml.patterns.consumer import end_offsets
from rtml.schemas import avro_deserializer, avro_serializer, register_all
from rtml.simulate import SimulationParams, simulate

# The machine has 2 cores shared with other test runs: wait generously, poll often.
WAIT = 120.0


def wait_for(what: str, check: Callable[[], object], timeout: float = WAIT) -> object:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def worker(cluster_settings: Settings) -> Iterator[Worker]:
    if not cluster_settings.local:
        pytest.skip("starts a Connect worker beside the local test cluster")
    topics.apply(cluster_settings)
    register_all(cluster_settings)
    worker = Worker(cluster_settings, log=lambda _line: None)
    try:
        worker.up(timeout=300)
        yield worker
    finally:
        worker.down()
        assert not worker.process.alive()


def read_all(settings: Settings, topic: str) -> list[tuple[bytes, dict]]:
    """Every record of `topic` from the beginning to its current end, values decoded."""
    deserialize = avro_deserializer(settings, topic)
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [(key, deserialize(value, ctx)) for key, value, _ in read_raw(settings, topic)]


def read_raw(settings: Settings, topic: str) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """Every record of `topic` from the beginning to its current end: key, value, headers."""
    consumer = Consumer(
        settings.client_config(group_id=f"test-connect-{time.time_ns()}", enable_auto_commit=False)
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records: list[tuple[bytes, bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is None or msg.error():
                continue
            part = msg.partition()
            # Records appended after the snapshot of the ends belong to the next read.
            if part not in ends or msg.offset() >= ends[part]:
                continue
            records.append((msg.key(), msg.value(), dict(msg.headers() or [])))
            if msg.offset() + 1 >= ends[part]:
                del ends[part]
        return records
    finally:
        consumer.close()


def test_the_worker_runs_the_file_connectors(worker):
    status = worker.status()
    assert status.up and status.version == "4.1.1"
    classes = {p["class"] for p in worker.client.plugins()}
    assert {
        "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "org.apache.kafka.connect.file.FileStreamSinkConnector",
    } <= classes


def test_reference_file_lands_in_the_compacted_topic_keyed_by_id(worker, cluster_settings):
    # A seed no other test uses, so these profiles are recognisable among other records.
    sim = simulate(SimulationParams(n_customers=40, n_terminals=20, n_days=1, seed=4242))
    write_reference_files(cluster_settings, sim.customers, sim.terminals)
    create_connector(cluster_settings, "customers-source", worker.client)
    expected = {
        row["customer_id"]: row
        for row in sim.customers[
            ["customer_id", "x", "y", "mean_amount", "std_amount", "mean_nb_tx_per_day"]
        ].to_dict("records")
    }

    def ours() -> list[tuple[bytes, dict]]:
        records = read_all(cluster_settings, "customers")
        mine = [(k, v) for k, v in records if expected.get(v["customer_id"]) == v]
        return mine if len(mine) >= len(expected) else []

    mine = wait_for("40 customers in the customers topic", ours)
    keys = [key for key, _ in mine]
    assert len(keys) == len(set(keys)), f"duplicate ids: {sorted(keys)}"
    assert set(keys) == {str(i).encode() for i in expected}
    assert all(key == str(value["customer_id"]).encode() for key, value in mine)
    assert worker.client.status("customers-source")["connector"]["state"] == "RUNNING"


def test_reload_source_reads_a_rewritten_file_from_its_first_line_again(worker, cluster_settings):
    # No other test creates terminals-source: the first reload creates it (stopped), the
    # second finds it running with its offset at the end of the same file.
    sim = simulate(SimulationParams(n_customers=5, n_terminals=15, n_days=1, seed=4343))
    write_reference_files(cluster_settings, sim.customers, sim.terminals)

    def added_since(start: dict[int, int]) -> int:
        return sum(end_offsets(cluster_settings, "terminals").values()) - sum(start.values())

    for _ in range(2):
        start = end_offsets(cluster_settings, "terminals")
        reload_source(cluster_settings, "terminals-source", worker.client)
        wait_for("15 more terminals", lambda start=start: added_since(start) >= 15)
        assert worker.client.status("terminals-source")["connector"]["state"] == "RUNNING"
    assert added_since(start) == 15  # the file's 15 lines once more, not twice
    with pytest.raises(ConnectError, match="only a source reads a file"):
        reload_source(cluster_settings, "transactions-audit", worker.client)


def test_transactions_flow_into_the_audit_file(worker, cluster_settings):
    create_connector(cluster_settings, "transactions-audit", worker.client)
    base = random.randrange(10**12, 10**13)
    ids = [base + i for i in range(12)]
    serialize = avro_serializer(cluster_settings, "transactions")
    ctx = SerializationContext("transactions", MessageField.VALUE)
    producer = durable_producer(cluster_settings)
    # A poison record ahead of the good ones, in the partition of the first of them: the
    # sink must route it to the dead-letter topic and go on, not stop there.
    poison = f"not avro {base}".encode()
    producer.produce("transactions", key=b"0", value=poison)
    for n, tx_id in enumerate(ids):
        txn = {
            "transaction_id": tx_id,
            "tx_datetime": 1522540800000 + n,
            "customer_id": n,
            "terminal_id": 7,
            "tx_amount": 10.25 + n,
        }
        producer.produce("transactions", key=str(n).encode(), value=serialize(txn, ctx))
    assert producer.flush(60) == 0
    path = audit_file(cluster_settings, "transactions")

    def audited() -> list[str]:
        lines = path.read_text().splitlines() if path.is_file() else []
        mine = [line for line in lines if any(f"transaction_id={i}," in line for i in ids)]
        return mine if len(mine) >= len(ids) else []

    lines = wait_for("12 transactions in the audit file", audited)
    assert len(lines) == len(ids)
    first = next(line for line in lines if f"transaction_id={ids[0]}," in line)
    assert "tx_datetime=2018-04-01T00:00:00.000Z" in first and "tx_amount=10.25" in first
    dead = [
        headers for _, value, headers in read_raw(cluster_settings, DEAD_LETTERS) if value == poison
    ]
    assert len(dead) == 1
    assert dead[0]["__connect.errors.topic"] == b"transactions"
    assert dead[0]["__connect.errors.connector.name"] == b"transactions-audit"
    assert int(dead[0]["__connect.errors.offset"]) >= 0
    assert worker.client.status("transactions-audit")["tasks"][0]["state"] == "RUNNING"


def test_pause_resume_and_delete(worker, cluster_settings):
    client = worker.client
    create_connector(cluster_settings, "transactions-audit", client)

    def state(wanted: str) -> bool:
        status = client.status("transactions-audit")
        states = {status["connector"]["state"], *(t["state"] for t in status["tasks"])}
        return states == {wanted}

    client.pause("transactions-audit")
    wait_for("the audit connector and its task to pause", lambda: state("PAUSED"))
    client.resume("transactions-audit")
    wait_for("the audit connector and its task to run again", lambda: state("RUNNING"))
    client.delete("transactions-audit")

    def gone() -> bool:
        # The status topic forgets a deleted connector a moment after the config topic does.
        if "transactions-audit" in client.connectors():
            return False
        try:
            client.status("transactions-audit")
        except ConnectError as exc:
            return "(404)" in str(exc)
        return False

    wait_for("the audit connector and its status to be gone", gone)


def test_an_unknown_definition_is_refused_before_the_worker_sees_it(worker, cluster_settings):
    with pytest.raises(ConnectError, match="customers-source"):
        create_connector(cluster_settings, "my-own-json", worker.client)
    assert "my-own-json" not in worker.client.connectors()


def test_a_worker_that_dies_while_starting_reports_its_log(cluster_settings, monkeypatch):
    if not cluster_settings.local:
        pytest.skip("starts a Connect worker beside the local test cluster")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broken = dataclasses.replace(
        cluster_settings, cluster_name=f"{cluster_settings.cluster_name}-broken", connect_port=port
    )
    real = worker_module.worker_properties

    def unloadable(settings: Settings) -> dict[str, str]:
        return {**real(settings), "key.converter": "org.example.NoSuchConverter"}

    monkeypatch.setattr(worker_module, "worker_properties", unloadable)
    doomed = Worker(broken, log=lambda _line: None)
    try:
        with pytest.raises(ConnectError, match=r"exited while starting(.|\n)*NoSuchConverter"):
            doomed.up(timeout=WAIT)
        assert not doomed.process.alive()
    finally:
        doomed.down()
        shutil.rmtree(broken.cluster_dir, ignore_errors=True)
