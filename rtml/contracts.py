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
)

ExerciseFn = Callable[..., Any]
