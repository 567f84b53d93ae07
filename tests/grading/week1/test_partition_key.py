"""Grading: week 1, partition_key (labs/week1/partitioning.py)."""

import pytest

from rtml.impl import exercise

pytestmark = pytest.mark.grading


def txn(customer_id: int, transaction_id: int = 1, amount: float = 10.0, terminal_id: int = 5):
    return {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "terminal_id": terminal_id,
        "tx_amount": amount,
    }


def test_returns_bytes():
    """The key is bytes, as Kafka needs."""
    assert isinstance(exercise("partition_key")(txn(42)), bytes)


def test_same_customer_same_key():
    """All of a customer's transactions share one key, whatever the amount or terminal."""
    key = exercise("partition_key")
    keys = {key(txn(42, transaction_id=i, amount=i * 3.5, terminal_id=i % 7)) for i in range(50)}
    assert len(keys) == 1


def test_customers_get_their_own_keys():
    """Different customers get different keys (so load spreads over partitions)."""
    key = exercise("partition_key")
    assert len({key(txn(c)) for c in range(500)}) == 500
