"""A load producer for chaos runs: numbered records at a target rate or flat out.

It is the project's durable producer (acks=all, idempotence) on a thread of its own. Each
record carries a unique id (0, 1, 2, ...); the delivery callbacks fill a `Ledger` (what was
acknowledged, what failed) and the timeline gets what the producer saw: the first delivery
error of each kind, acks that stall (none for `stall_ms` while records wait) and resume.
Retries stay inside the client until `message_timeout_ms`; only then does a record fail.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from confluent_kafka import KafkaError, Message

from rtml.chaos.timeline import PRODUCER, Timeline
from rtml.chaos.verifier import Ledger
from rtml.clients import durable_producer
from rtml.config import Settings

Encode = Callable[[int, int], bytes]  # (record id, key number) -> value bytes
KEYS = 1_000  # distinct keys (customers), so every partition gets many keys
QUEUE = 20_000  # records the client holds unacknowledged at most


def json_value(record_id: int, key: int) -> bytes:
    """A transaction-like JSON record; the verifier reads `transaction_id` back."""
    return json.dumps({"transaction_id": record_id, "customer_id": key, "tx_amount": 1.0}).encode()


def json_id(msg: Message) -> int:
    """The record id of a `json_value` message."""
    return json.loads(msg.value())["transaction_id"]


class LoadProducer(threading.Thread):
    """Produces `records` records (None: until `stop`) at `rate` per second (None: flat out)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        timeline: Timeline,
        *,
        records: int | None,
        rate: float | None = None,
        keys: int = KEYS,
        stall_ms: int = 1_000,
        message_timeout_ms: int = 300_000,
        encode: Encode = json_value,
    ) -> None:
        super().__init__(daemon=True, name="chaos-load")
        self.topic = topic
        self.timeline = timeline
        self.records = records
        self.rate = rate
        self.keys = keys
        self.stall_s = stall_ms / 1000
        self.message_timeout_s = message_timeout_ms / 1000
        self.encode = encode
        self.ledger = Ledger()
        # A short queue keeps records being sent (not just queued) all through a run, so
        # "the first record sent after the kill" exists even flat out.
        self.producer = durable_producer(
            settings,
            quiet=True,
            linger_ms=5,
            message_timeout_ms=message_timeout_ms,
            queue_buffering_max_messages=QUEUE,
        )
        self.sent_at: list[float] = []  # monotonic enqueue time of record id i, increasing
        self.errors: Counter[str] = Counter()
        self.error: BaseException | None = None  # what ended the thread, if it was not asked to
        self._halt = threading.Event()
        self.last_ack = time.monotonic()
        self._stalled_since: float | None = None

    # -- the thread ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._produce()
            self._drain()
        except BaseException as exc:  # reported to the scenario, which fails with it
            self.error = exc

    def _produce(self) -> None:
        started = time.monotonic()
        i = 0
        while not self._halt.is_set() and (self.records is None or i < self.records):
            now = time.monotonic()
            if self.rate and now < started + i / self.rate:
                self.producer.poll(min(started + i / self.rate - now, 0.05))  # pacing the load
                self._check_stall()
                continue
            key = i % self.keys
            try:
                self.producer.produce(
                    self.topic,
                    key=str(key).encode(),
                    value=self.encode(i, key),
                    on_delivery=partial(self._delivered, i),
                )
            except BufferError:  # the client's queue is full: serve callbacks, try again
                self.producer.poll(0.05)
                self._check_stall()
                continue
            self.sent_at.append(now)
            i += 1
            self.producer.poll(0)
            if i % 100 == 0:
                self._check_stall()

    def _drain(self) -> None:
        """Wait for every record's delivery report; the message timeout bounds the wait."""
        deadline = time.monotonic() + self.message_timeout_s + 30
        while self.producer.flush(0.5) > 0 and time.monotonic() < deadline:
            self._check_stall()
        if len(self.producer):
            self.timeline.add(PRODUCER, f"{len(self.producer)} records had no delivery report")

    def _delivered(self, record_id: int, err: KafkaError | None, msg: Message) -> None:
        now = time.monotonic()
        if err is not None:
            self.ledger.fail(record_id, err.name())
            if not self.errors[err.name()]:
                self.timeline.add(PRODUCER, f"delivery error {err.name()}: {err.str()}")
            self.errors[err.name()] += 1
            return
        self.ledger.ack(msg.key(), record_id, now)
        if self._stalled_since is not None:
            self.timeline.add(
                PRODUCER, f"acks resumed after {now - self._stalled_since:.2f} s without one"
            )
            self._stalled_since = None
        self.last_ack = now

    def _check_stall(self) -> None:
        now = time.monotonic()
        waiting = len(self.producer)
        if self._stalled_since is None and waiting and now - self.last_ack > self.stall_s:
            self._stalled_since = self.last_ack
            self.timeline.add(
                PRODUCER,
                f"acks stalled: none for {self.stall_s * 1000:.0f} ms, {waiting} records waiting",
                when=self.last_ack + self.stall_s,
            )

    # -- control and results ------------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> None:
        """Stop producing, wait for the outstanding delivery reports."""
        self._halt.set()
        self.join(timeout if timeout is not None else self.message_timeout_s + 60)

    @property
    def produced(self) -> int:
        return len(self.sent_at)

    def first_ack_after(self, moment: float) -> float | None:
        """Seconds from monotonic `moment` to the first acknowledgement of a record that was
        sent at or after it (None: none yet). Replies already on their way at `moment` do
        not count: the cluster resumed only when something sent after it is acknowledged."""
        first = bisect.bisect_left(self.sent_at, moment)
        if first == len(self.sent_at) and not self.is_alive():
            # Everything was sent before `moment`: the first acknowledgement after it is all
            # there is to measure.
            first = 0
        after = [t for i, t in self.ledger.ack_times_by_id() if i >= first and t >= moment]
        return min(after) - moment if after else None
