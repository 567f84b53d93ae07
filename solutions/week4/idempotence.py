"""Week 4 reference: an idempotent consumer's memory of the message ids it has handled."""

from __future__ import annotations

from collections.abc import MutableMapping


def first_delivery(seen: MutableMapping[str, None], message_id: str, window: int) -> bool:
    """True (and remembered) the first time `message_id` is seen; False for a duplicate.

    `seen` keeps insertion order; past `window` ids the oldest is forgotten."""
    if message_id in seen:
        return False
    seen[message_id] = None
    while len(seen) > window:
        del seen[next(iter(seen))]
    return True
