"""The same transactions through a RabbitMQ work queue and through a Kafka topic.

Both sides get the same messages (simulated transactions, each numbered within its
customer, so per-key order can be checked) and are measured the same way:

- RabbitMQ: one durable queue; the publisher uses publisher confirms (a window of
  unconfirmed messages, as Kafka's producer has in-flight batches); two competing consumers,
  each its own process (`rtml.compare.rabbit_worker`) with manual acks and a prefetch window;
  one of them is SIGKILLed mid-run, so the broker delivers its unacknowledged messages again
  to the other, flagged `redelivered`. Afterwards the queue is empty: acked messages are gone,
  nothing can be read again.
- Kafka: a topic of 6 partitions keyed by customer, RF 3, written with acks=all and
  idempotence; a consumer group of two consumers (threads) committing after each batch;
  afterwards the group's offsets are reset to the start and every record is read again.

Per-key order is measured on what consumers processed, in the order they processed it (by
wall-clock time, one clock for every process on this machine): a delivery is out of order
when a later message of the same customer was processed before it.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pika
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import NewTopic

from rtml.clients import admin, durable_producer
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.poll import until
from rtml.simulate import SimulationParams, simulate

PARTITIONS = 6
PREFETCH = 50
CONFIRM_WINDOW = 1000  # unconfirmed messages in flight, like the producer's in-flight batches


class CompareError(RtmlError):
    """The comparison could not run to its end (a broker down, a worker that did not start)."""


@dataclass(frozen=True)
class Message:
    """One transaction as both systems carry it: key, its number within the key, the body."""

    key: int
    seq: int
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """One message as one consumer processed it."""

    consumer: str
    key: int
    seq: int
    redelivered: bool
    ns: int


@dataclass
class SideResult:
    """What one system did with the messages."""

    system: str
    sent: int
    publish_seconds: float
    consume_seconds: float
    deliveries: int
    unique: int
    redelivered_flagged: int
    out_of_order: int
    keys_out_of_order: int
    replayed: int
    killed: str | None = None
    killed_after: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Messages sent that no consumer processed."""
        return self.sent - self.unique

    @property
    def duplicates(self) -> int:
        """Deliveries beyond the first of a message (processed twice)."""
        return self.deliveries - self.unique

    @property
    def publish_rate(self) -> float:
        """Messages per second published and acknowledged by the broker."""
        return self.sent / self.publish_seconds if self.publish_seconds else math.inf

    @property
    def consume_rate(self) -> float:
        """Deliveries per second, first to last, over every consumer."""
        return self.deliveries / self.consume_seconds if self.consume_seconds else math.inf


def messages(n: int, customers: int = 50, seed: int = 7) -> list[Message]:
    """The first `n` simulated transactions in event-time order, as JSON, each numbered
    within its customer (`seq` 0, 1, 2, ...)."""
    days = max(2, math.ceil(n / customers))
    for _ in range(8):  # customers pay about once a day on average: grow until enough
        params = SimulationParams(
            n_customers=customers, n_terminals=2 * customers, n_days=days, seed=seed
        )
        tx = simulate(params).transactions
        if len(tx) >= n:
            break
        days *= 2
    else:
        raise CompareError(f"The simulation gave {len(tx)} transactions, fewer than {n}.")
    tx = tx.head(n).copy()
    tx["seq"] = tx.groupby("customer_id").cumcount()
    out = []
    for row in tx.itertuples(index=False):
        record = {
            "transaction_id": int(row.transaction_id),
            "customer_id": int(row.customer_id),
            "terminal_id": int(row.terminal_id),
            "tx_amount": float(row.tx_amount),
            "tx_datetime": int(row.event_time_ms),
            "seq": int(row.seq),
        }
        out.append(Message(record["customer_id"], record["seq"], json.dumps(record).encode()))
    return out


def ordering(deliveries: Sequence[Delivery]) -> tuple[int, int]:
    """(deliveries out of order, keys with any) in processing order: a delivery is out of
    order when a message of the same key with a higher number was processed before it."""
    highest: dict[int, int] = {}
    late = 0
    keys: set[int] = set()
    for d in sorted(deliveries, key=lambda d: d.ns):
        if d.seq < highest.get(d.key, -1):
            late += 1
            keys.add(d.key)
        highest[d.key] = max(highest.get(d.key, -1), d.seq)
    return late, len(keys)


def _span(deliveries: Sequence[Delivery]) -> float:
    if len(deliveries) < 2:
        return 0.0
    stamps = [d.ns for d in deliveries]
    return (max(stamps) - min(stamps)) / 1e9


# --- RabbitMQ -----------------------------------------------------------------------------


def publish_confirmed(
    port: int, queue: str, batch: Sequence[Message], window: int = CONFIRM_WINDOW
) -> float:
    """Publish persistent messages with publisher confirms, at most `window` unconfirmed;
    return the seconds until the broker confirmed the last one.

    Uses pika's asynchronous connection: its blocking channel waits for each confirm in turn,
    which would measure round trips, not the broker.
    """
    state = {"sent": 0, "confirmed": 0, "nacked": 0, "start": 0.0, "end": 0.0}
    props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    error: list[str] = []

    def pump(channel: pika.channel.Channel) -> None:
        while state["sent"] < len(batch) and state["sent"] - state["confirmed"] < window:
            channel.basic_publish("", queue, batch[state["sent"]].body, props)
            state["sent"] += 1

    def on_confirm(frame: pika.frame.Method) -> None:
        method = frame.method
        tag = method.delivery_tag
        # `multiple` confirms every tag up to this one at once.
        done = tag if method.multiple else state["confirmed"] + 1
        if isinstance(method, pika.spec.Basic.Nack):
            state["nacked"] += done - state["confirmed"]
        state["confirmed"] = max(state["confirmed"], done)
        if state["confirmed"] >= len(batch):
            state["end"] = time.perf_counter()
            connection.close()
        else:
            pump(frame_channel[0])

    frame_channel: list[pika.channel.Channel] = []

    def on_channel(channel: pika.channel.Channel) -> None:
        frame_channel.append(channel)
        channel.confirm_delivery(on_confirm)
        state["start"] = time.perf_counter()
        pump(channel)

    def on_closed(_conn: object, reason: Exception) -> None:
        if state["confirmed"] < len(batch):
            error.append(str(reason))
        connection.ioloop.stop()

    def on_failed(_conn: object, reason: Exception) -> None:
        error.append(str(reason))
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        pika.ConnectionParameters("127.0.0.1", port),
        on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
        on_open_error_callback=on_failed,
        on_close_callback=on_closed,
    )
    connection.ioloop.start()
    if error or state["nacked"]:
        raise CompareError(
            f"RabbitMQ confirmed {state['confirmed'] - state['nacked']} of {len(batch)} messages"
            + (f": {error[0]}." if error else ".")
        )
    return state["end"] - state["start"]


def _read_lines(path: Path) -> list[Delivery]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by SIGKILL
        out.append(Delivery(r["consumer"], r["key"], r["seq"], r["redelivered"], r["ns"]))
    return out


def _worker(
    port: int, queue: str, name: str, out: Path, work_ms: float, idle: float
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "rtml.compare.rabbit_worker",
        "--port",
        str(port),
        "--queue",
        queue,
    ]
    cmd += ["--name", name, "--out", str(out), "--prefetch", str(PREFETCH)]
    cmd += ["--work-ms", str(work_ms), "--idle", str(idle)]
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _queue_depth(port: int, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of `queue`."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        ok = conn.channel().queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    finally:
        conn.close()


def run_rabbit(
    port: int,
    batch: Sequence[Message],
    *,
    kill_after: int | None = None,
    work_ms: float = 0.0,
    timeout: float = 120.0,
) -> SideResult:
    """Publish `batch` to a fresh work queue, consume it with two competing workers (killing
    the first after it processed `kill_after` messages), then try to read it again."""
    queue = f"rtml-compare-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    channel = conn.channel()
    channel.queue_declare(queue, durable=True)
    conn.close()
    result = SideResult("RabbitMQ", len(batch), 0.0, 0.0, 0, 0, 0, 0, 0, 0)
    workers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="rtml-rabbit-") as tmp:
        files = {name: Path(tmp) / f"{name}.jsonl" for name in ("A", "B", "C")}
        try:
            result.publish_seconds = publish_confirmed(port, queue, batch)
            # A worker leaves after `idle` s without a message, so the survivor ends by itself
            # once the queue is drained, acking everything it processed.
            idle = 2.0
            workers = [_worker(port, queue, n, files[n], work_ms, idle) for n in ("A", "B")]
            if kill_after:
                until(
                    lambda: (
                        len(_read_lines(files["A"])) >= kill_after or workers[0].poll() is not None
                    ),
                    timeout,
                    f"worker A to process {kill_after} messages",
                    interval=0.01,
                )
                workers[0].send_signal(signal.SIGKILL)
                workers[0].wait(timeout=30)
                result.killed = "A"
                result.killed_after = len(_read_lines(files["A"]))
            for w in workers:
                w.wait(timeout=timeout)
            # A worker that left during a stall of a loaded machine leaves messages behind:
            # one more drains them (counted like any other consumer).
            if _queue_depth(port, queue)[0]:
                result.notes.append("a third worker drained messages left after a stall")
                workers.append(_worker(port, queue, "C", files["C"], work_ms, idle))
                workers[-1].wait(timeout=timeout)
            deliveries = [d for f in files.values() for d in _read_lines(f)]
            ready, _consumers = _queue_depth(port, queue)
            # Replay: whatever was acked is gone. A fresh consumer finds nothing to read.
            conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
            got = conn.channel().basic_get(queue, auto_ack=False)[0]
            conn.close()
            result.replayed = ready + (1 if got is not None else 0)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait(timeout=30)
            conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
            conn.channel().queue_delete(queue)
            conn.close()
    _fill(result, deliveries)
    return result


def _fill(result: SideResult, deliveries: Sequence[Delivery]) -> None:
    result.deliveries = len(deliveries)
    result.unique = len({(d.key, d.seq) for d in deliveries})
    result.redelivered_flagged = sum(d.redelivered for d in deliveries)
    result.out_of_order, result.keys_out_of_order = ordering(deliveries)
    result.consume_seconds = _span(deliveries)


# --- Kafka --------------------------------------------------------------------------------


def _consume_group(
    settings: Settings,
    topic: str,
    group: str,
    want: int,
    names: Sequence[str],
    timeout: float,
    work_ms: float = 0.0,
) -> list[Delivery]:
    """Consumers `names` (threads) in one group until `want` distinct messages were
    processed; each commits after every batch."""
    found: list[Delivery] = []
    seen: set[tuple[int, int]] = set()
    lock = threading.Lock()
    done = threading.Event()
    errors: list[str] = []

    def run(name: str) -> None:
        consumer = Consumer(
            settings.client_config(
                group_id=group,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                session_timeout_ms=10_000,
            )
        )
        try:
            consumer.subscribe([topic])
            while not done.is_set():
                batch = consumer.consume(500, timeout=0.2)
                mine = []
                for msg in batch:
                    if msg.error() is not None:
                        continue
                    record = json.loads(msg.value())
                    if work_ms:
                        time.sleep(work_ms / 1000)
                    mine.append(
                        Delivery(name, record["customer_id"], record["seq"], False, time.time_ns())
                    )
                if mine:
                    consumer.commit(asynchronous=False)
                    with lock:
                        found.extend(mine)
                        seen.update((d.key, d.seq) for d in mine)
                        if len(seen) >= want:
                            done.set()
        except Exception as exc:  # any failure, reported by the caller as one sentence
            errors.append(f"{type(exc).__name__}: {exc}")
            done.set()
        finally:
            consumer.close()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    done.wait(timeout)
    done.set()
    for t in threads:
        t.join(30)
    if errors:
        raise CompareError(f"A Kafka consumer failed: {errors[0]}")
    if len(seen) < want:
        raise CompareError(
            f"Kafka consumers processed {len(seen)} of {want} messages within {timeout:g} s."
        )
    return found


def run_kafka(
    settings: Settings, batch: Sequence[Message], *, work_ms: float = 0.0, timeout: float = 120.0
) -> SideResult:
    """Produce `batch` (acks=all, idempotent) to a fresh topic, consume it with a group of
    two, then reset the group to the start and read everything again."""
    topic = f"rtml-compare-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    client = admin(settings, timeout=10)
    brokers = len(client.list_topics(timeout=10).brokers)
    rf = min(3, brokers)
    futures = client.create_topics(
        [NewTopic(topic, PARTITIONS, rf, config={"min.insync.replicas": str(min(2, rf))})]
    )
    futures[topic].result(30)
    try:
        producer = durable_producer(settings, linger_ms=5)
        start = time.perf_counter()
        for m in batch:
            producer.produce(topic, key=str(m.key).encode(), value=m.body)
            producer.poll(0)
        if producer.flush(timeout) != 0:
            raise CompareError("Kafka did not acknowledge every message in time.")
        seconds = time.perf_counter() - start
        result = SideResult("Kafka", len(batch), seconds, 0.0, 0, 0, 0, 0, 0, 0)
        deliveries = _consume_group(
            settings, topic, group, len(batch), ("A", "B"), timeout, work_ms
        )
        _fill(result, deliveries)
        # Replay: the log keeps what was read. Reset the (now empty) group to offset 0 and
        # read it all again, in the same per-key order.
        client.alter_consumer_group_offsets(
            [
                ConsumerGroupTopicPartitions(
                    group, [TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
                )
            ]
        )[group].result(30)
        again = _consume_group(settings, topic, group, len(batch), ("R",), timeout)
        result.replayed = len({(d.key, d.seq) for d in again})
        if ordering(again)[0]:
            result.notes.append("the replay was out of order")
        return result
    finally:
        client.delete_consumer_groups([group])
        client.delete_topics([topic])


def compare(
    settings: Settings,
    port: int,
    n: int,
    *,
    kill_after: int | None = None,
    work_ms: float = 0.0,
    timeout: float = 120.0,
) -> tuple[SideResult, SideResult]:
    """The same `n` transactions through RabbitMQ (on `port`) and through Kafka."""
    batch = messages(n)
    return (
        run_rabbit(port, batch, kill_after=kill_after, work_ms=work_ms, timeout=timeout),
        run_kafka(settings, batch, work_ms=work_ms, timeout=timeout),
    )


ROWS = (
    ("messages sent", lambda r: f"{r.sent:,}"),
    ("publish, acknowledged (msg/s)", lambda r: f"{r.publish_rate:,.0f}"),
    ("consume, 2 consumers (msg/s)", lambda r: f"{r.consume_rate:,.0f}"),
    (
        "consumer killed mid-run",
        lambda r: f"{r.killed} after {r.killed_after:,}" if r.killed else "no",
    ),
    ("deliveries processed", lambda r: f"{r.deliveries:,}"),
    ("flagged redelivered", lambda r: f"{r.redelivered_flagged:,}"),
    ("processed twice", lambda r: f"{r.duplicates:,}"),
    ("lost", lambda r: f"{r.lost:,}"),
    (
        "out of per-key order (deliveries / keys)",
        lambda r: f"{r.out_of_order:,} / {r.keys_out_of_order:,}",
    ),
    ("read again after processing", lambda r: f"{r.replayed:,}"),
)


def table(rabbit: SideResult, kafka: SideResult) -> str:
    """The two results side by side, as a Markdown table."""
    lines = ["| | RabbitMQ work queue | Kafka topic, consumer group |", "|---|---:|---:|"]
    lines += [f"| {name} | {cell(rabbit)} | {cell(kafka)} |" for name, cell in ROWS]
    return "\n".join(lines)
