"""Which partition a key lands in: Kafka's murmur2 partitioner, as the producers use it.

Every rtml producer (and Kafka's Java clients, Connect included) hashes a record key with
murmur2 and takes it modulo the partition count. Knowing that function lets code find the
one partition that holds a key (the control room reads a customer's windows from it) and
check that two topics are co-partitioned, the precondition of a local join. confluent-kafka
does not expose librdkafka's partitioner, so this is Kafka's algorithm in Python; a test
checks it against where a real producer put records.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` (org.apache.kafka.common.utils.Utils.murmur2), unsigned."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a producer with the murmur2 partitioner sends `key` to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
