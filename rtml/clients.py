"""Kafka clients configured from `Settings`.

Admin clients used for probing (readiness, status) get a logger that discards librdkafka's
connection errors: while a node is down those are expected and would bury the real output.
"""

from __future__ import annotations

import logging

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from rtml.config import Settings

QUIET = logging.getLogger("rtml.kafka.quiet")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def admin(settings: Settings, timeout: float = 5.0, **overrides: object) -> AdminClient:
    """An admin client whose connection errors are silent; failures surface as exceptions."""
    conf = settings.client_config(socket_timeout_ms=int(timeout * 1000), **overrides)
    conf["logger"] = QUIET
    return AdminClient(conf)


def durable_producer(settings: Settings, quiet: bool = False, **overrides: object) -> Producer:
    """A producer that loses nothing it acknowledged: acks=all and idempotence."""
    conf = settings.client_config(acks="all", enable_idempotence=True, **overrides)
    if quiet:
        conf["logger"] = QUIET
    return Producer(conf)
