"""How the prediction service makes a batch durable: at-least-once or exactly-once.

**At-least-once** (default). A batch's offsets are committed only once every record it
produced (predictions and DLQ records) is acknowledged (acks=all, idempotent producer).
The loop does not wait for those acknowledgements: it scores the next batch while the
last one is on its way, and commits batches in order as their acknowledgements arrive
(at most `MAX_IN_FLIGHT` batches are pending; then it waits). So an acknowledgement's
round trip adds to the latency of its own records only, not to the records behind them.
A crash loses nothing, but batches scored and not yet committed are scored again on
restart (same transaction ids; readers deduplicate). A record that cannot be delivered
stops the service without committing anything after it.

**Exactly-once.** Each batch is one Kafka transaction: its predictions, its DLQ records
and its input offsets commit together or not at all (`send_offsets_to_transaction`), so
`read_committed` readers see each prediction once, whatever crashes. The price is a
commit round trip per batch that the loop must wait for, and predictions are visible only
after it. A transaction Kafka aborts is rolled back and its batch read again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from rtml.clients import durable_producer
from rtml.config import Settings
from rtml.serve.errors import ServeError

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 8  # batches produced and not yet acknowledged, before the loop waits
Offsets = dict[tuple[str, int], int]
# Small batches, compressed: records leave at most 2 ms after they are produced.
PRODUCER = {"linger_ms": 2, "compression_type": "lz4"}


@dataclass
class Batch:
    """One batch on its way: where it starts and ends per partition, and what it holds."""

    first: Offsets  # its first offset per partition (where a rollback reads again)
    last: Offsets  # the offset after its last record per partition (what a commit stores)
    predictions: int = 0
    reviewed: int = 0
    dlq: int = 0
    left: int = 0  # records produced and not yet acknowledged
    errors: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Records the batch consumed: predictions plus dead letters."""
        return self.predictions + self.dlq

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        """The producer's delivery callback for each record of this batch."""
        self.left -= 1
        if err is not None:
            self.errors.append(err.str())


Durable = Callable[[Batch], None]


class AtLeastOnce:
    """Commits each batch's offsets after its records are acknowledged, in batch order."""

    def __init__(
        self, settings: Settings, consumer: Consumer, transactional_id: str, on_durable: Durable
    ) -> None:
        # `transactional_id` is unused: the same constructor as ExactlyOnce, no transactions.
        self.consumer = consumer
        self.producer: Any = durable_producer(settings, **PRODUCER)
        self.on_durable = on_durable
        self.in_flight: deque[Batch] = deque()
        self.acked: Offsets = {}  # the next offset per partition whose records are acked

    def begin(self) -> None:
        """Nothing to open: records flow as they are produced."""

    def end(self, batch: Batch) -> None:
        """The batch is produced: commit it once it is acknowledged."""
        self.in_flight.append(batch)
        self.settle(block=len(self.in_flight) > MAX_IN_FLIGHT)

    def settle(self, block: bool = False) -> None:
        """Serve delivery callbacks (all of them if `block`) and commit what is acked."""
        if block:
            self.producer.flush()
        else:
            self.producer.poll(0)
        done: Offsets = {}
        while self.in_flight and self.in_flight[0].left == 0:
            batch = self.in_flight.popleft()
            if batch.errors:
                # Later batches must not be committed either: the offsets would pass this one.
                self.in_flight.clear()
                raise ServeError(
                    f"{len(batch.errors)} record(s) of a batch were not acknowledged "
                    f"({batch.errors[0]}); nothing from it on was committed, so a restart "
                    "scores it again."
                )
            done.update(batch.last)
            self.on_durable(batch)
        if done:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()],
                asynchronous=True,
            )
            self.acked.update(done)

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """Before partitions move to another instance: everything acked, offsets stored."""
        self.settle(block=True)
        self._commit_now(partitions)

    def close(self) -> None:
        """Wait for every acknowledgement, then commit what was acknowledged."""
        self.settle(block=True)
        self._commit_now(self.consumer.assignment())

    def _commit_now(self, partitions: list[TopicPartition]) -> None:
        mine = {(tp.topic, tp.partition) for tp in partitions}
        done = [TopicPartition(t, p, o) for (t, p), o in self.acked.items() if (t, p) in mine]
        if not done:
            return
        try:
            self.consumer.commit(offsets=done, asynchronous=False)
        except KafkaException as exc:
            log.warning("Could not commit %d partition(s): %s", len(done), exc.args[0].str())


class ExactlyOnce:
    """Each batch one Kafka transaction, holding its records and its input offsets."""

    def __init__(
        self, settings: Settings, consumer: Consumer, transactional_id: str, on_durable: Durable
    ) -> None:
        self.consumer = consumer
        self.on_durable = on_durable
        self.producer: Any = durable_producer(
            settings, transactional_id=transactional_id, **PRODUCER
        )
        try:
            self.producer.init_transactions(30)
        except KafkaException as exc:
            raise ServeError(
                f"Kafka transactions could not start ({exc.args[0].str()}): is the cluster "
                "up, with enough brokers for the transaction log?"
            ) from exc

    def begin(self) -> None:
        """Open the batch's Kafka transaction."""
        self.producer.begin_transaction()

    def end(self, batch: Batch) -> None:
        """Commit the batch with its offsets; roll it back if Kafka aborts it."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.last.items()]
        try:
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata()
            )
            self._commit()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise ServeError(
                    f"The prediction service lost its transaction ({error.str()}): another "
                    "instance with the same --instance may have taken over."
                ) from exc
            self.producer.abort_transaction()
            for (topic, partition), offset in batch.first.items():
                self.consumer.seek(TopicPartition(topic, partition, offset))
            log.warning("Transaction aborted (%s); the batch is read again.", error.str())
            return
        self.on_durable(batch)

    def settle(self, block: bool = False) -> None:
        """Serve delivery reports; the transaction's commit does the waiting."""
        self.producer.poll(0)

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """Nothing is pending between batches: each committed its offsets itself."""

    def close(self) -> None:
        """Flush what is left of the producer."""
        self.producer.flush(30)

    def _commit(self) -> None:
        """Commit, retrying what Kafka says is retriable (a slow coordinator, a timeout)."""
        for attempt in range(5):
            try:
                self.producer.commit_transaction(30)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == 4:
                    raise
