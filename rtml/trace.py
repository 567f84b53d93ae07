"""Correlation and causation ids: how one transaction's path through the services is traced.

Every message a week-4 service writes carries three headers:
- `rtml.message_id`: this message's own id (a command id, an event id, ...);
- `rtml.correlation_id`: the id of the transaction that started the chain, the same on
  every message that follows from it (`tx-<transaction_id>`);
- `rtml.causation_id`: the `rtml.message_id` of the message that caused this one.

So the correlation id finds every message of one transaction's path, and the causation ids
order them into a tree (prediction -> command -> event -> notification). Upstream of the
decision service the transaction id is the key of the records, so the decision service
starts the chain from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MESSAGE_ID = "rtml.message_id"
CORRELATION_ID = "rtml.correlation_id"
CAUSATION_ID = "rtml.causation_id"

Headers = list[tuple[str, bytes]]


def transaction_correlation(transaction_id: int) -> str:
    """The correlation id of every message that follows from one transaction."""
    return f"tx-{transaction_id}"


@dataclass(frozen=True)
class Trace:
    """The trace headers of one message, decoded."""

    message_id: str
    correlation_id: str
    causation_id: str

    def headers(self) -> Headers:
        """The trace as Kafka headers: message, correlation and causation ids."""
        return [
            (MESSAGE_ID, self.message_id.encode()),
            (CORRELATION_ID, self.correlation_id.encode()),
            (CAUSATION_ID, self.causation_id.encode()),
        ]

    def child(self, message_id: str) -> Trace:
        """The trace of a message this one causes: same correlation, caused by this one."""
        return Trace(message_id, self.correlation_id, self.message_id)


def read_trace(headers: Iterable[tuple[str, bytes | None]] | Mapping | None) -> Trace | None:
    """The trace of a message's headers, or None when it carries none."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    found = {
        name: (value or b"").decode(errors="replace")
        for name, value in items
        if name in (MESSAGE_ID, CORRELATION_ID, CAUSATION_ID)
    }
    if MESSAGE_ID not in found or CORRELATION_ID not in found:
        return None
    return Trace(found[MESSAGE_ID], found[CORRELATION_ID], found.get(CAUSATION_ID, ""))
