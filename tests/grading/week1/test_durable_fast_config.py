"""Grading: week 1, durable_fast_config (labs/week1/producer.py)."""

import pytest

from rtml.impl import exercise

pytestmark = pytest.mark.grading


def config():
    return exercise("durable_fast_config")()


def test_waits_for_every_in_sync_replica():
    """acks is 'all' (or -1): a record counts only once every in-sync replica has it."""
    assert str(config().get("acks")) in {"all", "-1"}


def test_retries_cannot_duplicate():
    """enable.idempotence is on: a retried batch is written once."""
    assert config().get("enable.idempotence") in {True, "true"}


def test_batches_fill_before_sending():
    """linger.ms is between 5 and 50, and batch.size is at least 64 KB."""
    c = config()
    assert 5 <= int(c.get("linger.ms", 0)) <= 50
    assert int(c.get("batch.size", 0)) >= 65536


def test_batches_are_compressed():
    """compression.type is lz4, zstd or snappy."""
    assert config().get("compression.type") in {"lz4", "zstd", "snappy"}


def test_librdkafka_accepts_it():
    """librdkafka accepts the settings as a producer configuration."""
    from confluent_kafka import Producer

    Producer({"bootstrap.servers": "127.0.0.1:1", **config()}).flush(0)
