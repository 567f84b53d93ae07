"""Kafka clients configured from `Settings`.

Admin clients used for probing (readiness, status) get a logger that discards librdkafka's
connection errors: while a node is down those are expected and would bury the real output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from rtml.config import Settings
from rtml.errors import RtmlError

QUIET = logging.getLogger("rtml.kafka.quiet")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def admin(settings: Settings, timeout: float = 5.0, **overrides: object) -> AdminClient:
    """An admin client whose connection errors are silent; failures surface as exceptions."""
    conf = settings.client_config(socket_timeout_ms=int(timeout * 1000), **overrides)
    conf["logger"] = QUIET
    return AdminClient(conf)


def durable_producer(settings: Settings, quiet: bool = False, **overrides: object) -> Producer:
    """A producer that loses nothing it acknowledged: acks=all and idempotence.

    It hashes keys with murmur2, as Kafka's Java clients do (librdkafka's default is CRC32),
    so a key lands in the same partition whoever writes it: joins rely on that."""
    defaults: dict[str, object] = {
        "acks": "all",
        "enable_idempotence": True,
        "partitioner": "murmur2_random",
    }
    conf = settings.client_config(**{**defaults, **overrides})
    if quiet:
        conf["logger"] = QUIET
    return Producer(conf)


def create_missing_topics(settings: Settings, topics: Sequence[NewTopic]) -> list[str]:
    """Create each topic that does not exist yet; return the names created.

    A topic created meanwhile by someone else counts as existing, not as an error.
    """
    client = admin(settings, timeout=10)  # keep a reference: a collected client cancels futures
    existing = client.list_topics(timeout=10).topics
    wanted = [t for t in topics if t.topic not in existing]
    if not wanted:
        return []
    created = []
    for name, fut in client.create_topics(wanted, operation_timeout=30).items():
        try:
            fut.result(timeout=60)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RtmlError(f"Topic {name} could not be created: {exc.args[0].str()}.") from exc
    return created


def partitions_of(
    consumer: Consumer,
    settings: Settings,
    topic: str,
    error: type[RtmlError] = RtmlError,
    timeout: float = 10.0,
) -> list[int]:
    """The partition numbers of `topic`, sorted; `error` with one sentence when the cluster
    cannot be reached or the topic does not exist."""
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
    except KafkaException as exc:
        raise error(
            f"Cannot read topic {topic} at {settings.bootstrap} ({exc}): is the cluster up "
            "(`rtml cluster status`)?"
        ) from exc
    if meta.error is not None:
        raise error(f"Topic {topic} does not exist: create it with `rtml topics apply`.")
    return sorted(meta.partitions)
