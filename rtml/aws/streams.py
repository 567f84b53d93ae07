"""One stream abstraction, two implementations: a Kafka topic and a Kinesis stream.

Both are logs split for parallelism: Kafka into partitions, Kinesis into shards. A record
goes to one of them by its key (Kafka: murmur2 of the key, modulo the partition count;
Kinesis: the MD5 of the partition key, placed in the shard whose hash-key range holds it),
and it is ordered only within that partition or shard. So the pipeline asks for exactly
that much and no more:

- `create(units)`: make the stream with `units` partitions or shards;
- `put(records)`: append (key, value) records; the key picks the partition or shard;
- `read()`: every record from the start (Kafka offset 0, Kinesis TRIM_HORIZON) up to the
  end as it was when the read began, grouped by partition or shard, each in its order.

Reading from the start is how both replay: Kafka keeps records by time or size (or for
ever, compacted by key); Kinesis keeps them for its retention period (24 hours by default,
up to 365 days) and has no compaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from rtml.aws.errors import AwsError
from rtml.clients import QUIET, admin, durable_producer
from rtml.config import Settings
from rtml.poll import until

PUT_BATCH = 500  # Kinesis PutRecords takes at most 500 records (and 5 MB) per call
READ_LIMIT = 10_000  # Kinesis GetRecords returns at most 10,000 records per call


@dataclass(frozen=True)
class StreamRecord:
    """One record as read back: where it sits (partition or shard, and its position
    there), its key and its value."""

    unit: str
    position: str
    key: bytes
    value: bytes
    appended_ms: int  # Kafka: the record timestamp; Kinesis: ApproximateArrivalTimestamp


class RecordStream(Protocol):
    """A keyed, partitioned, replayable log: a Kafka topic or a Kinesis stream."""

    name: str

    def create(self, units: int) -> None:
        """Create the stream with `units` partitions or shards (an old one is replaced)."""
        ...

    def put(self, records: Sequence[tuple[bytes, bytes]]) -> int:
        """Append (key, value) records, acknowledged; return how many."""
        ...

    def read(self) -> dict[str, list[StreamRecord]]:
        """Every record from the start to the end as of now, per partition or shard, in
        the order each holds them."""
        ...


class KinesisStream:
    """A Kinesis data stream, through boto3 (here against moto)."""

    def __init__(self, kinesis: Any, name: str) -> None:
        self.kinesis = kinesis
        self.name = name

    def create(self, units: int) -> None:
        """Create the stream with `units` shards, replacing one of that name."""
        try:
            if self.name in self._names():
                self.kinesis.delete_stream(StreamName=self.name, EnforceConsumerDeletion=True)
                until(lambda: self.name not in self._names(), 60, f"stream {self.name} to go")
            self.kinesis.create_stream(StreamName=self.name, ShardCount=units)
            until(self._active, 60, f"stream {self.name} to be ACTIVE", interval=0.1)
        except (BotoCoreError, ClientError) as exc:
            raise AwsError(f"Kinesis could not create stream {self.name}: {exc}") from exc

    def put(self, records: Sequence[tuple[bytes, bytes]]) -> int:
        """PutRecords in batches of 500; records a shard throttles are sent again.

        Kinesis may accept part of a batch (FailedRecordCount): the failed ones are put
        again, after the others, so a retried record can come after later ones of its key.
        A producer that needs strict order per key puts one record at a time with
        SequenceNumberForOrdering; moto never throttles, so here nothing is retried.
        """
        done = 0
        for start in range(0, len(records), PUT_BATCH):
            pending = [
                {"Data": value, "PartitionKey": key.decode()}
                for key, value in records[start : start + PUT_BATCH]
            ]
            for _attempt in range(10):
                answer = self._call("put_records", StreamName=self.name, Records=pending)
                if not answer.get("FailedRecordCount"):
                    break
                pending = [
                    r
                    for r, out in zip(pending, answer["Records"], strict=True)
                    if "ErrorCode" in out
                ]
                time.sleep(0.2)  # a throttled shard: back off before sending them again
            else:
                raise AwsError(f"Kinesis kept refusing {len(pending)} records of {self.name}.")
            done += len(records[start : start + PUT_BATCH])
        return done

    def read(self) -> dict[str, list[StreamRecord]]:
        """Each shard from TRIM_HORIZON until GetRecords says it is at the tip."""
        out: dict[str, list[StreamRecord]] = {}
        for shard in self.shards():
            iterator = self._call(
                "get_shard_iterator",
                StreamName=self.name,
                ShardId=shard,
                ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
            records: list[StreamRecord] = []
            while iterator:
                page = self._call("get_records", ShardIterator=iterator, Limit=READ_LIMIT)
                records += [
                    StreamRecord(
                        shard,
                        r["SequenceNumber"],
                        r["PartitionKey"].encode(),
                        r["Data"],
                        int(r["ApproximateArrivalTimestamp"].timestamp() * 1000),
                    )
                    for r in page["Records"]
                ]
                # At the tip: no records and nothing behind. (Real Kinesis may also return an
                # empty page mid-shard, which is why MillisBehindLatest is checked too.)
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
            out[shard] = records
        return out

    def shards(self) -> list[str]:
        """The ids of the stream's shards."""
        return [s["ShardId"] for s in self._call("list_shards", StreamName=self.name)["Shards"]]

    def _names(self) -> list[str]:
        return list(self.kinesis.list_streams()["StreamNames"])

    def _active(self) -> bool:
        summary = self.kinesis.describe_stream_summary(StreamName=self.name)
        return summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.kinesis, method)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise AwsError(f"Kinesis {method} on stream {self.name} failed: {exc}") from exc


class KafkaStream:
    """A Kafka topic, through confluent-kafka (the cluster of `settings`)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name

    def create(self, units: int) -> None:
        """Create the topic with `units` partitions (replication as the cluster allows),
        replacing one of that name."""
        client = admin(self.settings, timeout=10)

        def exists() -> bool:
            return self.name in client.list_topics(timeout=10).topics

        if exists():
            client.delete_topics([self.name], operation_timeout=30)[self.name].result(timeout=60)
            until(lambda: not exists(), 60, f"topic {self.name} to be deleted", interval=0.2)
        brokers = len(client.list_topics(timeout=10).brokers)
        topic = NewTopic(self.name, num_partitions=units, replication_factor=min(3, brokers))
        client.create_topics([topic], operation_timeout=30)[self.name].result(timeout=60)

    def put(self, records: Sequence[tuple[bytes, bytes]]) -> int:
        """Produce with acks=all and the murmur2 partitioner; fail unless all are acked."""
        producer = durable_producer(self.settings, linger_ms=20, partitioner="murmur2_random")
        failed: list[str] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failed.append(err.str())

        for key, value in records:
            while True:
                try:
                    producer.produce(self.name, key=key, value=value, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        left = producer.flush(60)
        if left or failed:
            raise AwsError(
                f"{left or len(failed)} records were not written to topic {self.name} "
                f"({failed[0] if failed else 'not acknowledged in 60 s'})."
            )
        return len(records)

    def read(self) -> dict[str, list[StreamRecord]]:
        """Each partition from offset 0 to its end offset when the read began."""
        consumer = Consumer(
            {
                **self.settings.client_config(
                    group_id=f"rtml-stream-read-{uuid.uuid4().hex[:8]}",
                    enable_auto_commit=False,
                    isolation_level="read_committed",
                ),
                "logger": QUIET,
            }
        )
        try:
            meta = consumer.list_topics(self.name, timeout=10).topics[self.name]
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(self.name, p), timeout=10)[1]
                for p in meta.partitions
            }
            out: dict[str, list[StreamRecord]] = {str(p): [] for p in ends}
            left = {p: end for p, end in ends.items() if end > 0}
            consumer.assign([TopicPartition(self.name, p, OFFSET_BEGINNING) for p in left])
            deadline = time.monotonic() + 300
            while left and time.monotonic() < deadline:
                for msg in consumer.consume(5000, timeout=0.5):
                    p = msg.partition()
                    if msg.error() is not None or p not in left or msg.offset() >= left[p]:
                        continue
                    out[str(p)].append(
                        StreamRecord(
                            str(p),
                            str(msg.offset()),
                            msg.key() or b"",
                            msg.value(),
                            msg.timestamp()[1],
                        )
                    )
                    if msg.offset() + 1 >= left[p]:
                        del left[p]
            if left:
                raise AwsError(f"Topic {self.name} could not be read to its end in 300 s.")
            return out
        except KafkaException as exc:
            raise AwsError(f"Reading topic {self.name} failed ({exc}): is the cluster up?") from exc
        finally:
            consumer.close()
