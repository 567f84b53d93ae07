"""Grading: week 4, route_failure (labs/week4/dead_letters.py)."""

import pytest

from rtml.impl import exercise
from rtml.schemas import SchemaError
from rtml.stage import Transient

pytestmark = pytest.mark.grading

TRANSIENT = [
    Transient("the registry did not answer"),
    TimeoutError("slow"),
    ConnectionError("reset by peer"),
]
POISON = [
    ValueError("amount < 0"),
    KeyError("card_id"),
    TypeError("unsupported operand"),
    SchemaError("not Avro of any known schema"),
    RuntimeError("a bug"),
]


def test_the_docstring_example():
    """TimeoutError: retry at attempt 1 of 3 retries, dead-letter at 4; ValueError at once."""
    route = exercise("route_failure")
    assert route(TimeoutError("slow"), 1, 3) == "retry"
    assert route(TimeoutError("slow"), 4, 3) == "dead-letter"
    assert route(ValueError("amount < 0"), 1, 3) == "dead-letter"


def test_transient_errors_are_retried_exactly_retries_times():
    """Transient, TimeoutError, ConnectionError: "retry" up to `retries` times, then DLQ.

    After attempts 1..retries the answer is "retry"; after attempt retries + 1 (the first
    attempt and every retry used) it is "dead-letter"."""
    route = exercise("route_failure")
    for error in TRANSIENT:
        for retries in (1, 3, 10):
            routes = [route(error, attempts, retries) for attempts in range(1, retries + 2)]
            assert routes == ["retry"] * retries + ["dead-letter"], (error, retries)


def test_other_errors_are_dead_lettered_at_once():
    """Bad data or a bug (ValueError, KeyError, SchemaError, ...) is never retried."""
    route = exercise("route_failure")
    for error in POISON:
        routes = [route(error, attempts, 3) for attempts in (1, 2, 3)]
        assert routes == ["dead-letter"] * 3, error


def test_subclasses_of_transient_errors_are_transient():
    """Subclasses count: ConnectionRefusedError and subclasses of TimeoutError are retried."""
    route = exercise("route_failure")

    class GatewayTimeout(TimeoutError):
        pass

    class RegistryDown(Transient):
        pass

    for error in (ConnectionRefusedError("refused"), GatewayTimeout("slow"), RegistryDown()):
        assert route(error, 1, 3) == "retry"


def test_no_retries_means_no_retry():
    """With retries 0 even a transient error goes to the DLQ after its one attempt."""
    route = exercise("route_failure")
    assert all(route(error, 1, 0) == "dead-letter" for error in TRANSIENT)


def test_exactly_two_answers():
    """The answer is one of the two strings the stage understands, "retry" or "dead-letter"."""
    route = exercise("route_failure")
    answers = {route(e, a, 3) for e in TRANSIENT + POISON for a in range(1, 6)}
    assert answers == {"retry", "dead-letter"}
