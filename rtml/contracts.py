"""The exercise seams: each is a typed signature that `labs/` and `solutions/` implement.

The system calls a seam through `rtml.impl.exercise`, never a week module directly, so a
learner's own function shows up in the running system when RTML_IMPL=labs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rtml.cards.state import CardState


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


class ChooseGrace(Protocol):
    """Week 2: the smallest grace period (ms) that drops at most `max_loss` of the records."""

    def __call__(self, delays_ms: list[int], max_loss: float) -> int: ...


class DistinctInitialize(Protocol):
    """Week 2, custom aggregator: the state of a window that has seen nothing yet."""

    def __call__(self) -> list: ...


class DistinctAgg(Protocol):
    """Week 2, custom aggregator: a window's state after it sees one more value."""

    def __call__(self, state: list, value: Any) -> list: ...


class DistinctMerge(Protocol):
    """Week 2, custom aggregator: one state from the states of two sessions being merged."""

    def __call__(self, a: list, b: list) -> list: ...


class DistinctResult(Protocol):
    """Week 2, custom aggregator: what a closed window reports from its state."""

    def __call__(self, state: list) -> int: ...


class LabelsKnownAt(Protocol):
    """Week 3: which labels (by arrival time) a training run at `cutoff_ms` may use."""

    def __call__(self, label_times_ms: Any, cutoff_ms: int | None) -> Any: ...


class ScoreBatch(Protocol):
    """Week 3: one score per row of a micro-batch, one model call, NaN for invalid rows."""

    def __call__(self, score: Callable[[Any], Any], rows: Any, valid: Any) -> Any: ...


class LatencyMeasures(Protocol):
    """Week 3: freshness, event-to-prediction and scoring time (µs) of one prediction."""

    def __call__(self, appended_ms: int, feature_ms: int, predicted_ms: int) -> dict[str, int]: ...


class ApplyCardEvent(Protocol):
    """Week 4, event sourcing: a card's state after one more of its events."""

    def __call__(self, state: Any, event: Mapping[str, Any]) -> Any: ...


class FirstDelivery(Protocol):
    """Week 4, idempotent consumer: True the first time a message id is seen, else False."""

    def __call__(self, seen: MutableMapping[str, None], message_id: str, window: int) -> bool: ...


class RouteFailure(Protocol):
    """Week 4, dead letters: "retry" or "dead-letter" for a record whose handling failed."""

    def __call__(self, error: BaseException, attempts: int, retries: int) -> str: ...


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it lives, its contract, and an example call to check it with."""

    week: int
    module: str
    name: str
    contract: type
    example: tuple[Any, ...]
    returns: type
    # Functions that only make sense together (an aggregator's) form one exercise: graded
    # together, in tests/grading/weekN/test_<part_of>.py.
    part_of: str | None = None

    @property
    def qualname(self) -> str:
        """The exercise's name as the grader shows it: `weekN.module.name`."""
        return f"week{self.week}.{self.module}.{self.name}"

    @property
    def graded_as(self) -> str:
        """The exercise this function is graded under (its own name, or its group's)."""
        return self.part_of or self.name


_DISTINCT = "distinct_values"


def _first_column(rows: np.ndarray) -> np.ndarray:
    """A stand-in model for the examples: the first input column is the score."""
    return rows[:, 0].astype(np.float64)


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
    Exercise(2, "lateness", "choose_grace", ChooseGrace, ([0, 0, 500, 20_000], 0.25), int),
    Exercise(2, "aggregators", "distinct_initialize", DistinctInitialize, (), list, _DISTINCT),
    Exercise(2, "aggregators", "distinct_agg", DistinctAgg, ([3, 9], 5), list, _DISTINCT),
    Exercise(2, "aggregators", "distinct_merge", DistinctMerge, ([3, 9], [5, 9]), list, _DISTINCT),
    Exercise(2, "aggregators", "distinct_result", DistinctResult, ([3, 5, 9],), int, _DISTINCT),
    Exercise(
        3, "point_in_time", "labels_known_at", LabelsKnownAt, ([100, 200, 300], 200), np.ndarray
    ),
    Exercise(
        3,
        "batching",
        "score_batch",
        ScoreBatch,
        (_first_column, np.array([[0.2], [0.9]], np.float32), np.array([True, False])),
        np.ndarray,
    ),
    Exercise(3, "freshness", "latency_measures", LatencyMeasures, (1_000, 1_004, 1_010), dict),
    Exercise(
        4,
        "aggregate",
        "apply_card_event",
        ApplyCardEvent,
        (CardState(7), {"type": "CardBlocked", "version": 1, "card_id": 7}),
        CardState,
    ),
    Exercise(4, "idempotence", "first_delivery", FirstDelivery, ({}, "e1#0", 10), bool),
    Exercise(4, "dead_letters", "route_failure", RouteFailure, (TimeoutError("slow"), 1, 3), str),
)

ExerciseFn = Callable[..., Any]
