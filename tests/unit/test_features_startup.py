"""The feature app's start-up checks without a broker: a moving leader is waited out."""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from rtml.features.app import watermarks
from rtml.poll import WaitTimeout


class _Consumer:
    """Answers with the errors given, in order, then with (low, high)."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.asked = 0

    def get_watermark_offsets(self, tp, timeout):
        self.asked += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return (3, 42)


def test_a_leader_that_moves_is_asked_again():
    consumer = _Consumer(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
    assert watermarks(consumer, TopicPartition("transactions", 2)) == (3, 42)
    assert consumer.asked == 3


def test_other_errors_are_not_retried():
    consumer = _Consumer(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("transactions", 2))
    assert consumer.asked == 1


def test_a_leader_that_never_comes_is_one_sentence():
    consumer = _Consumer(*[KafkaError.NOT_LEADER_FOR_PARTITION] * 100)
    with pytest.raises(WaitTimeout, match=r"a leader for transactions\[2\]"):
        watermarks(consumer, TopicPartition("transactions", 2), timeout=1)
