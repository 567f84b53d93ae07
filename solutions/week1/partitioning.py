"""Week 1 reference: key a transaction by its customer, so a customer's order holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def partition_key(transaction: Mapping[str, Any]) -> bytes:
    """Return the customer id as UTF-8 bytes: one customer, one key, one partition."""
    return str(transaction["customer_id"]).encode()
