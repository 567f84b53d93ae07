"""The exercise seams: each is a typed signature that `labs/` and `solutions/` implement.

The system calls a seam through `rtml.impl.exercise`, never a week module directly, so a
learner's own function shows up in the running system when RTML_IMPL=labs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class PartitionKey(Protocol):
    """Week 1: the record key for a transaction (Kafka hashes it to choose the partition)."""

    def __call__(self, transaction: Mapping[str, Any]) -> bytes: ...


class PartitionLag(Protocol):
    """Week 1: how many records of one partition a consumer group has not read yet."""

    def __call__(self, committed: int | None, log_start: int, log_end: int) -> int: ...


class ProducerConfig(Protocol):
    """Week 1: librdkafka settings for a producer that loses nothing and still goes fast."""

    def __call__(self) -> dict[str, Any]: ...


class EvolveSchema(Protocol):
    """Week 1: a new version of an Avro record schema that old consumers can still read."""

    def __call__(self, schema: dict[str, Any], field: str) -> dict[str, Any]: ...


class CustomerWindow(Protocol):
    """Week 2: (count, mean amount) of a customer's transactions in (now - days, now]."""

    def __call__(
        self, times: list[int], amounts: list[float], now_ms: int, days: int
    ) -> tuple[int, float]: ...


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it lives, its contract, and an example call to check it with."""

    week: int
    module: str
    name: str
    contract: type
    example: tuple[Any, ...]
    returns: type

    @property
    def qualname(self) -> str:
        return f"week{self.week}.{self.module}.{self.name}"


_TXN = {"transaction_id": 7, "customer_id": 42, "terminal_id": 1234, "tx_amount": 57.16}

EXERCISES: tuple[Exercise, ...] = (
    Exercise(1, "partitioning", "partition_key", PartitionKey, (_TXN,), bytes),
    Exercise(1, "lag", "partition_lag", PartitionLag, (40, 0, 100), int),
    Exercise(1, "producer", "durable_fast_config", ProducerConfig, (), dict),
    Exercise(
        1,
        "evolution",
        "add_optional_field",
        EvolveSchema,
        ({"type": "record", "name": "T", "fields": [{"name": "a", "type": "long"}]}, "channel"),
        dict,
    ),
    Exercise(
        2,
        "windows",
        "customer_window",
        CustomerWindow,
        ([0, 86_400_000], [10.0, 30.0], 86_400_000, 1),
        tuple,
    ),
)

ExerciseFn = Callable[..., Any]
