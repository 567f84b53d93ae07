"""Week 1 exercise: choose the record key for a transaction.

Kafka keeps order only within a partition, and the producer picks the partition by
hashing the record key (murmur2 of the key bytes, modulo the partition count). So every
record with the same key lands in the same partition, in the order it was produced.

Fraud features are per customer (a customer's last-hour spend, last-day count, ...), so a
customer's transactions must be read in the order they happened: they must share a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def partition_key(transaction: Mapping[str, Any]) -> bytes:
    """Return the key that keeps one customer's transactions in order.

    `transaction` is a dict such as {"transaction_id": 7, "customer_id": 42,
    "terminal_id": 1234, "tx_amount": 57.16}. Kafka keys are bytes.

    Think about: which field identifies the customer? Would the transaction id keep one
    customer's transactions together? Would the amount? The same customer must always
    give the same bytes, and two customers should not share a key.
    """
    raise NotImplementedError(
        "TODO week 1: return the customer id encoded as bytes, e.g. str(...).encode()"
    )
