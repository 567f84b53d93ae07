"""Kafka's murmur2, checked against the values in Kafka's own unit tests."""

import pytest

from rtml.partitioner import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results).
KAFKA_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_CASES.items())
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF


def test_partition_is_in_range_and_stable() -> None:
    parts = [partition_for(str(i).encode(), 6) for i in range(1000)]
    assert set(parts) == set(range(6))
    assert parts == [partition_for(str(i).encode(), 6) for i in range(1000)]
