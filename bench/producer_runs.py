"""The two clients of the producer benchmark, their settings, and what one run measured.

- Python: simulated transactions, serialized one by one inside the timed loop with
  `PreparedSerializer` (Avro in Confluent's wire format), keyed by customer id, produced by
  confluent-kafka, every delivery report counted, as `rtml simulate replay` does;
- Kafka's own producer tool from the cluster's jars and JDK, with the same producer
  settings and payloads of the same size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bench.kafka_tool import producer_perf_test
from bench.report import BenchError
from rtml.clients import durable_producer
from rtml.config import Settings
from rtml.impl import exercise
from rtml.simulate.producer import PRODUCER_CONFIG, TRANSACTIONS, PreparedSerializer, messages

PYTHON, KAFKA = "python", "kafka"
CLIENTS = {
    PYTHON: "Python: confluent-kafka + fastavro",
    KAFKA: "Kafka's producer tool (Java)",
}
_BATCH = 1024  # records between two polls for delivery reports (as in replay)


@dataclass(frozen=True)
class Setup:
    """One set of producer settings, spelled for each client (on top of acks=all, idempotence)."""

    name: str
    label: str
    python: Mapping[str, object]  # librdkafka
    kafka: Mapping[str, str]  # Java producer


BATCHED = Setup(
    "batched",
    "linger.ms 20, batch.size 256 KB, lz4",
    PRODUCER_CONFIG,
    # The Java producer has no `partitioner` setting; its tool sends no keys anyway.
    {k: str(v) for k, v in PRODUCER_CONFIG.items() if k != "partitioner"},
)
DEFAULTS = Setup(
    "defaults",
    "linger.ms 5, no compression, default batch.size",
    {"linger.ms": 5, "compression.type": "none", "partitioner": PRODUCER_CONFIG["partitioner"]},
    {"linger.ms": "5", "compression.type": "none"},
)
SETUPS = (BATCHED, DEFAULTS)


@dataclass(frozen=True)
class Run:
    """One client producing `records` records with one setup, measured from first send to last ack.

    `value_bytes` counts payloads only (keys and headers aside), as Kafka's tool does;
    `stored_bytes` is how much the topic's log grew per replica (batch headers and
    compression included), known for a local cluster only.
    """

    client: str
    setup: str
    records: int
    value_bytes: int
    seconds: float
    p50_ms: float
    p99_ms: float
    stored_bytes: int | None = None
    tool_mib_s: float | None = None  # what Kafka's tool printed, to cross-check
    load: float | None = None  # the machine's 1-minute load average when the run started
    cpu_s: float | None = None  # CPU time the client's process used (all its threads)
    loop_cpu_s: float | None = None  # CPU time of Python's sending thread alone
    kafka_wait_s: float | None = None  # time that thread waited for a full queue or last acks

    @property
    def record_size(self) -> float:
        return self.value_bytes / self.records

    @property
    def msg_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_s(self) -> float:
        """Payload megabytes (10^6 bytes) per second."""
        return self.value_bytes / self.seconds / 1e6


@dataclass
class ProducerBench:
    """Every run of one benchmark, with what a reader needs to judge them."""

    records: int
    warmup: int
    partitions: int
    replication: int
    started: dt.datetime
    runs: list[Run] = field(default_factory=list)

    def run(self, client: str, setup: str) -> Run | None:
        return next((r for r in self.runs if r.client == client and r.setup == setup), None)

    def ratio(self, setup: str) -> float | None:
        """Python's messages/s over Kafka's tool's, with the same settings."""
        py, kafka = self.run(PYTHON, setup), self.run(KAFKA, setup)
        return py.msg_per_s / kafka.msg_per_s if py and kafka else None

    def cpu_ratio(self, setup: str) -> float | None:
        """Python's CPU time per record over Kafka's tool's (whose JVM start-up counts too)."""
        py, kafka = self.run(PYTHON, setup), self.run(KAFKA, setup)
        if not (py and kafka and py.cpu_s and kafka.cpu_s):
            return None
        return (py.cpu_s / py.records) / (kafka.cpu_s / kafka.records)

    def batching_gain(self, client: str) -> float | None:
        """Messages/s with replay's batching over messages/s with the client's defaults."""
        batched, defaults = self.run(client, BATCHED.name), self.run(client, DEFAULTS.name)
        return batched.msg_per_s / defaults.msg_per_s if batched and defaults else None


class _Acks:
    """Delivery reports: acknowledged and failed counts, and each acknowledgement's latency."""

    def __init__(self) -> None:
        self.acked = 0
        self.failed = 0
        self.first_error = ""
        self.latencies: list[float] = []

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked += 1
            self.latencies.append(msg.latency())
        else:
            self.failed += 1
            self.first_error = self.first_error or err.str()


def run_python(
    settings: Settings,
    topic: str,
    txs: pd.DataFrame,
    serializer: PreparedSerializer,
    setup: Setup,
    *,
    progress: bool = False,
) -> Run:
    """Produce every transaction of `txs` to `topic` as replay does; fail unless all are acked.

    The loop is replay's: serialize, key with the week 1 reference `partition_key`, hand to
    librdkafka, serve delivery reports every 1,024 records, back off when its queue is full.
    """
    source = messages(
        dataclasses.replace(TRANSACTIONS, topic=topic),
        txs,
        serializer,
        exercise("partition_key", "solutions"),
    )
    producer = durable_producer(settings, quiet=True, **setup.python)
    acks = _Acks()
    produce, poll = producer.produce, producer.poll
    bar = tqdm(
        total=len(txs),
        desc=f"  python, {setup.name}",
        unit=" msg",
        unit_scale=True,
        leave=False,
        disable=not progress,
    )
    sent = nbytes = 0
    waited = 0.0
    started, cpu_started, loop_started = (
        time.perf_counter(),
        time.process_time(),
        time.thread_time(),
    )
    for name, key, value, timestamp in source:
        while True:
            try:
                produce(name, value, key, on_delivery=acks, timestamp=timestamp)
                break
            except BufferError:
                # librdkafka's queue is full: the cluster is slower than we are, let it catch up.
                wait_started = time.perf_counter()
                poll(0.05)
                waited += time.perf_counter() - wait_started
        nbytes += len(value)
        sent += 1
        if sent % _BATCH == 0:
            poll(0)
            bar.update(_BATCH)
    flush_started = time.perf_counter()
    remaining = producer.flush(120)
    waited += time.perf_counter() - flush_started
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    loop_cpu_s = time.thread_time() - loop_started
    bar.close()
    if acks.failed or remaining or acks.acked != sent:
        raise BenchError(
            f"The Python producer sent {sent:,} records to {topic} but {acks.acked:,} were "
            f"acknowledged, {acks.failed:,} failed and {remaining:,} had no report"
            + (f" (first error: {acks.first_error})" if acks.first_error else "")
            + ": the results would not be comparable."
        )
    p50, p99 = np.percentile(np.asarray(acks.latencies) * 1000, [50, 99])
    return Run(
        PYTHON,
        setup.name,
        sent,
        nbytes,
        seconds,
        float(p50),
        float(p99),
        cpu_s=cpu_s,
        loop_cpu_s=loop_cpu_s,
        kafka_wait_s=waited,
    )


def run_kafka(
    settings: Settings,
    topic: str,
    records: int,
    record_size: int,
    setup: Setup,
    *,
    log: Callable[[str], None] = print,
) -> Run:
    """Kafka's producer tool writing `records` payloads of `record_size` bytes to `topic`."""
    summary = producer_perf_test(settings, topic, records, record_size, setup.kafka, log=log)
    return Run(
        KAFKA,
        setup.name,
        records,
        records * record_size,
        records / summary.rate,  # the tool's own elapsed time, first send to last ack
        float(summary.p50_ms),
        float(summary.p99_ms),
        tool_mib_s=summary.mib_s,
        cpu_s=summary.cpu_s,
    )
