"""The model watcher: the latest good version of a model from `model-updates`, kept current.

At start it reads the topic's only partition from the beginning to its end and loads the
newest version of the model that passes `Scorer.load` (newer ones that fail are refused).
Afterwards the service asks between batches (`poll`, which never blocks): a new record is
loaded on a worker thread, so a big model does not stall scoring, and the new scorer is
handed over at the next batch boundary. A version that fails is refused: the previous
scorer keeps serving, one log line says why, the record goes to `serve.dlq` with origin
headers, and the refusal is counted.

The watcher reads with `assign`, not in a consumer group: every instance needs every
version, and none of them commits a position in this topic.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from rtml.clients import QUIET, durable_producer
from rtml.config import Settings
from rtml.dlq import dlq_topic, merge_headers, origin_headers
from rtml.model.update import MODEL_NAME, TOPIC, ModelError, ModelUpdate, Scorer
from rtml.schemas import SchemaError
from rtml.schemas.wire import WireDeserializer
from rtml.serve.errors import ServeError
from rtml.topics import MODEL_MAX_BYTES

log = logging.getLogger(__name__)

STAGE = "serve"
# A record may hold a 16 MB graph; the clients must be allowed to carry it.
_MAX_BYTES = MODEL_MAX_BYTES + 1024 * 1024

Refusal = Callable[[str, str], None]  # (version, reason)


class ModelWatcher:
    """Follows `model-updates` for one model; `poll` returns a newly loaded scorer or None."""

    def __init__(
        self,
        settings: Settings,
        group: str,
        on_refused: Refusal,
        model: str = MODEL_NAME,
        topic_prefix: str = "",
    ) -> None:
        self.settings = settings
        self.topic = topic_prefix + TOPIC  # the catalogue's, or a scenario's own
        self.dlq = topic_prefix + dlq_topic(STAGE)
        self.group = group
        self.model = model
        self.on_refused = on_refused
        self.decode = WireDeserializer.for_topic(settings, TOPIC)
        self.consumer = Consumer(
            settings.client_config(
                group_id=f"rtml-serve-models-{uuid.uuid4().hex[:8]}",  # never joins or commits
                enable_auto_commit=False,
                fetch_max_bytes=_MAX_BYTES,
                max_partition_fetch_bytes=_MAX_BYTES,
                receive_message_max_bytes=_MAX_BYTES + 1024 * 1024,
                logger=QUIET,
            )
        )
        # Refused records go to the DLQ with their own producer: the service's may be
        # transactional, and a refusal happens outside any batch.
        self.producer = durable_producer(settings, message_max_bytes=_MAX_BYTES, linger_ms=0)
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self.pending: list[tuple[Message, Future[Scorer]]] = []

    def start(self, timeout: float = 60.0) -> Scorer | None:
        """Read the topic to its end; return the newest version that loads (None: none)."""
        topic = self.topic
        tp = TopicPartition(topic, 0)
        try:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise ServeError(
                    f"Topic {topic} does not exist on {self.settings.bootstrap}: "
                    "run `rtml topics apply`."
                )
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException as exc:
            raise ServeError(
                f"No broker answers at {self.settings.bootstrap}: start the cluster "
                "with `rtml cluster up`."
            ) from exc
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        versions: list[Message] = []
        deadline = time.monotonic() + timeout
        while low < high and self._position() < high:
            if time.monotonic() > deadline:
                raise ServeError(
                    f"Could not read {topic} to its end within {timeout:g} s: is the cluster "
                    "healthy (`rtml cluster status`)?"
                )
            for msg in self.consumer.consume(100, timeout=1.0):
                if msg.error() is None and msg.key() == self.model.encode():
                    versions.append(msg)
        # The newest that loads wins; newer ones that do not are refused, older ones skipped.
        for msg in reversed(versions):
            scorer = self._load_now(msg)
            if scorer is not None:
                return scorer
        return None

    def poll(self) -> Scorer | None:
        """A scorer loaded since the last call (the newest good one), or None; never blocks."""
        for msg in self.consumer.consume(10, timeout=0):
            if msg.error() is None and msg.key() == self.model.encode():
                self.pending.append((msg, self.loader.submit(self._load, msg)))
        newest = None
        while self.pending and self.pending[0][1].done():
            msg, future = self.pending.pop(0)
            try:
                newest = future.result()
            except (ModelError, SchemaError) as exc:
                self._refuse(msg, exc)
        return newest

    def close(self) -> None:
        """Stop loading, flush refusals to `serve.dlq`, close the consumer."""
        self.loader.shutdown(wait=True, cancel_futures=True)
        self.producer.flush(30)
        self.consumer.close()

    def _position(self) -> int:
        return self.consumer.position([TopicPartition(self.topic, 0)])[0].offset

    def _load(self, msg: Message) -> Scorer:
        """The scorer of `msg`'s version; any failure is a ModelError that says why."""
        if msg.value() is None:
            raise ModelError(f"Model {self.model} was deleted (a tombstone); it is not loaded.")
        try:
            return Scorer.load(ModelUpdate.from_record(self.decode(msg.value())))
        except (ModelError, SchemaError):
            raise
        except Exception as exc:  # onnxruntime and numpy raise untyped errors on odd graphs
            raise ModelError(
                f"Model {self.model} at offset {msg.offset()} could not be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _load_now(self, msg: Message) -> Scorer | None:
        try:
            return self._load(msg)
        except (ModelError, SchemaError) as exc:
            self._refuse(msg, exc)
            return None

    def _refuse(self, msg: Message, exc: Exception) -> None:
        version = self._version(msg)
        log.warning("Refused model %s version %s: %s", self.model, version, exc)
        headers = origin_headers(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp=msg.timestamp()[1],
            group=self.group,
            stage=STAGE,
            error=exc,
        )
        self.producer.produce(
            self.dlq,
            value=msg.value(),
            key=msg.key(),
            headers=merge_headers(msg.headers(), headers),
            on_delivery=self._delivered,
        )
        self.producer.poll(0)
        self.on_refused(version, str(exc))

    def _version(self, msg: Message) -> str:
        try:
            return str(self.decode(msg.value())["version"])
        except (SchemaError, KeyError, TypeError):
            return f"at offset {msg.offset()}"

    @staticmethod
    def _delivered(err: object, msg: Message) -> None:
        if err is not None:
            log.error("A refused model could not be written to %s: %s", msg.topic(), err)
