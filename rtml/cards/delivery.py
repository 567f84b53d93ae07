"""Backpressure: a consumer that feeds a slow downstream pauses instead of buffering.

Notifications leave the system through a gateway (SMS, e-mail) that takes its time. The
consumer hands records to the gateway through an in-memory queue that a worker thread
drains at the gateway's pace. If the consumer kept fetching, that queue would grow as
long as records arrive faster than the gateway sends them, until the process runs out of
memory. Instead it pauses its partitions when `high` records wait and resumes them below
`low` (`rtml.patterns.consumer.Backpressure`): fetching stops, librdkafka drops what it
had prefetched for them, and the backlog stays where it costs nothing and survives a
crash: in Kafka, as consumer lag. When the gateway speeds up, the consumer resumes and the
lag drains.

Offsets are committed only up to what the gateway has sent (at-least-once: a crash sends
the queued records again, never loses them). `backpressure_demo` runs the whole scenario
on a topic of its own (a steady producer, a slow phase, a fast phase) and returns the
timeline the week-4 notebook plots: lag, queue size and pauses over time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from rtml.clients import admin, create_missing_topics
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.patterns.consumer import Backpressure


class DeliveryError(RtmlError):
    """The backpressure scenario could not run or did not drain in time."""


@dataclass(frozen=True)
class DeliveryOptions:
    """How the consumer feeds the gateway; `high`/`low` bound the in-memory queue."""

    group: str = "rtml-delivery"
    delay_ms: float = 0.0  # the gateway's time per record
    high: int = 200
    low: int = 50
    max_batch: int = 100
    sample_every_s: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high or self.max_batch < 1 or self.delay_ms < 0:
            raise DeliveryError(
                f"high={self.high}, low={self.low}, max_batch={self.max_batch}, "
                f"delay_ms={self.delay_ms:g} is not possible: use 0 <= low < high, a batch "
                "of at least 1 and a delay of at least 0."
            )


@dataclass(frozen=True)
class Sample:
    """The consumer at one moment: what waits in Kafka (lag) and in memory (queued)."""

    t: float  # seconds since the start
    lag: int
    queued: int
    paused: bool
    delivered: int
    delay_ms: float


@dataclass
class Delivery:
    """One consumer feeding one gateway worker, with pause/resume backpressure."""

    settings: Settings
    topic: str
    options: DeliveryOptions = field(default_factory=DeliveryOptions)
    # How many records the topic holds in all, when the caller knows (the demo counts its
    # acknowledged records); otherwise the partitions' end offsets are asked each sample.
    log_end: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        self.delay_ms = self.options.delay_ms
        self.queue: deque[Message] = deque()
        self.gate = Backpressure(self.options.high, self.options.low)
        self.delivered = 0
        self.max_queued = 0
        self.samples: list[Sample] = []
        self._sent: dict[int, int] = {}  # partition -> next offset the gateway has sent
        self._stop = threading.Event()
        self.assigned = threading.Event()  # set once the group gave it partitions

    def set_delay(self, delay_ms: float) -> None:
        """Make the gateway slower or faster from now on (thread-safe)."""
        self.delay_ms = max(0.0, delay_ms)

    def stop(self) -> None:
        """Ask the consumer loop and the gateway worker to stop."""
        self._stop.set()

    def _gateway(self) -> None:
        """The slow downstream: sends queued records one by one at its own pace."""
        while not self._stop.is_set():
            try:
                msg = self.queue.popleft()
            except IndexError:
                self._stop.wait(0.005)
                continue
            if self.delay_ms:
                time.sleep(self.delay_ms / 1000)
            self._sent[msg.partition()] = msg.offset() + 1
            self.delivered += 1

    def run(self, until_drained: threading.Event | None = None) -> None:
        """Consume until `stop` (or, once `until_drained` is set, until nothing waits)."""
        consumer = Consumer(
            self.settings.client_config(
                group_id=self.options.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_wait_max_ms=50,
            )
        )
        consumer.subscribe([self.topic], on_assign=lambda c, parts: self.assigned.set())
        worker = threading.Thread(target=self._gateway, daemon=True)
        worker.start()
        started = time.monotonic()
        next_sample = last_commit = 0.0
        try:
            while not self._stop.is_set():
                if not self.gate.paused:
                    for msg in consumer.consume(self.options.max_batch, timeout=0.05):
                        if msg.error() is None:
                            self.queue.append(msg)
                else:
                    consumer.poll(0.05)  # keeps the group membership alive while paused
                self.max_queued = max(self.max_queued, len(self.queue))
                self.gate.update(consumer, len(self.queue))
                now = time.monotonic() - started
                if now - last_commit >= 1.0:
                    last_commit = now
                    self._commit(consumer)
                if now >= next_sample:
                    next_sample = now + self.options.sample_every_s
                    sample = self._sample(consumer, now)
                    self.samples.append(sample)
                    drained = sample.lag == 0 and sample.queued == 0
                    if drained and until_drained is not None and until_drained.is_set():
                        break
        finally:
            self._stop.set()
            worker.join(10)
            self._commit(consumer)
            consumer.close()

    def _commit(self, consumer: Consumer) -> None:
        sent = dict(self._sent)
        if sent:
            consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in sent.items()],
                asynchronous=False,
            )

    def _sample(self, consumer: Consumer, now: float) -> Sample:
        """Lag = what is in the log and not yet sent by the gateway, minus what is queued."""
        if self.log_end is not None:
            lag = self.log_end() - self.delivered
        else:
            lag = 0
            for tp in consumer.assignment():
                try:
                    _, high = consumer.get_watermark_offsets(tp, timeout=2)
                except KafkaException:
                    continue
                lag += high - self._sent.get(tp.partition, 0)
        return Sample(
            round(now, 3),
            max(0, lag - len(self.queue)),
            len(self.queue),
            self.gate.paused,
            self.delivered,
            self.delay_ms,
        )


@dataclass(frozen=True)
class DemoResult:
    """What the scenario produced, delivered and measured."""

    produced: int
    delivered: int
    pauses: int
    max_queued: int
    producer_waits: int  # times the producer's local queue was full and it waited
    samples: list[Sample]


def backpressure_demo(
    settings: Settings,
    rate: float = 400.0,
    phases: Sequence[tuple[float, float]] = ((0.0, 3.0), (10.0, 8.0), (0.0, 3.0)),
    options: DeliveryOptions | None = None,
    drain_timeout: float = 120.0,
) -> DemoResult:
    """Produce `rate` records/s to a fresh topic while the gateway takes `delay_ms` per
    record for each (delay_ms, seconds) phase; then wait until everything is delivered.

    With 10 ms per record the gateway sends at most 100/s, so at 400/s the consumer
    pauses, the lag grows, and after the slow phase it drains. The topic is deleted after.
    """
    options = options or DeliveryOptions(group=f"rtml-backpressure-{uuid.uuid4().hex[:6]}")
    topic = f"backpressure-demo-{uuid.uuid4().hex[:8]}"
    create_missing_topics(settings, [NewTopic(topic, 3, min(3, settings.nodes))])
    acked = [0]

    def on_delivery(err: object, msg: Message) -> None:
        if err is None:
            acked[0] += 1

    delivery = Delivery(settings, topic, options, log_end=lambda: acked[0])
    drained = threading.Event()
    consumer = threading.Thread(target=delivery.run, args=(drained,), daemon=True)
    consumer.start()
    if not delivery.assigned.wait(60):
        delivery.stop()
        raise DeliveryError("The demo's consumer was given no partition within 60 s.")
    # A small local queue, so a slow cluster shows the full-queue condition and its handling.
    producer = Producer(settings.client_config(acks="all", queue_buffering_max_messages=2000))
    produced = waits = 0
    try:
        started = time.monotonic()
        for delay_ms, seconds in phases:
            delivery.set_delay(delay_ms)
            phase_end = time.monotonic() + seconds
            while time.monotonic() < phase_end:
                due = int((time.monotonic() - started) * rate)
                while produced < due:
                    payload = json.dumps({"n": produced}).encode()
                    try:
                        producer.produce(
                            topic, payload, str(produced % 50).encode(), on_delivery=on_delivery
                        )
                        produced += 1
                    except BufferError:
                        waits += 1  # full: serve deliveries to make room, then try again
                        producer.poll(0.05)
                producer.poll(0)
                time.sleep(0.01)  # pacing the load, not synchronisation
        if producer.flush(30):
            raise DeliveryError("The demo's records were not acknowledged within 30 s.")
        drained.set()
        consumer.join(drain_timeout)
        if consumer.is_alive():
            delivery.stop()
            consumer.join(10)
            raise DeliveryError(
                f"The backlog did not drain within {drain_timeout:g} s "
                f"({delivery.delivered:,} of {produced:,} delivered)."
            )
    finally:
        delivery.stop()
        admin(settings).delete_topics([topic])
    return DemoResult(
        produced,
        delivery.delivered,
        delivery.gate.pauses,
        delivery.max_queued,
        waits,
        delivery.samples,
    )
