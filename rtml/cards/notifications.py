"""The notification service: tells the card holder when their card is blocked or flagged.

It reacts to events, not commands: it reads `card-events` (`read_committed`) and, for
`CardBlocked` and `AlertRaised`, writes one JSON notification to `notifications`, keyed by
card id and carrying the event's trace. Nothing asks it to; adding it changed no other
service (that is what publishing events buys).

A notification must not be sent twice, but `card-events` can hold the same event twice
when the card service runs at-least-once. So this is an idempotent consumer: it remembers
the ids of the last `window` events it handled and skips an id it has seen (the duplicate
follows its original closely, so a bounded window suffices; a restart forgets the window,
which the exactly-once card service, the default, makes harmless).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import datetime
from typing import Any

from confluent_kafka import Message, TopicPartition

from rtml.cards.service import EVENTS
from rtml.cards.state import card_key
from rtml.config import Settings
from rtml.impl import exercise
from rtml.schemas.wire import WireDeserializer
from rtml.stage import Out, Stage, StageOptions, decode_value
from rtml.trace import Trace, read_trace

STAGE = "notifications"
GROUP = "rtml-notifications"
NOTIFICATIONS = "notifications"
TEXT = {
    "CardBlocked": "Your card was blocked: {reason}",
    "AlertRaised": "Please confirm a recent payment on your card ({reason})",
}


class SeenIds:
    """The ids of the last `window` messages handled, oldest forgotten first."""

    def __init__(self, window: int = 100_000, impl: str | None = None) -> None:
        self.window = window
        self.ids: OrderedDict[str, None] = OrderedDict()
        self._first = exercise("first_delivery", impl)  # the week-4 exercise seam

    def first_time(self, message_id: str) -> bool:
        """True (and remembered) the first time an id is seen; False for a duplicate."""
        return self._first(self.ids, message_id, self.window)

    def forget(self, message_id: str) -> None:
        """Forget one id, so its message counts as new again (its batch was not committed)."""
        self.ids.pop(message_id, None)


def notification(event: dict[str, Any]) -> dict[str, Any] | None:
    """The notification an event calls for, or None."""
    template = TEXT.get(event["type"])
    if template is None:
        return None
    occurred = event["occurred_at"]
    if isinstance(occurred, datetime):
        occurred = int(occurred.timestamp() * 1000)
    return {
        "notification_id": f"n-{event['event_id']}",
        "event_id": event["event_id"],
        "card_id": event["card_id"],
        "kind": event["type"],
        "text": template.format(reason=event["reason"] or "no reason given"),
        "occurred_at": occurred,
    }


class NotificationHandler:
    """One notification per new blocking or alert event; duplicates skipped."""

    def __init__(self, settings: Settings, window: int = 100_000) -> None:
        self.decode = WireDeserializer.for_topic(settings, EVENTS)
        self.seen = SeenIds(window, settings.impl)
        self.batch: list[str] = []  # ids first seen in this batch, forgotten on a rollback
        self.duplicates = 0

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """The window of seen ids is kept across rebalances (ids are unique across cards)."""

    def finished(self, committed: bool) -> None:
        """End of a batch: forget its ids if the batch was not committed, so a retry sends them."""
        if not committed:
            for message_id in self.batch:
                self.seen.forget(message_id)
        self.batch.clear()

    def handle(self, msg: Message) -> list[Out]:
        """A notification for a new `CardBlocked` or `AlertRaised` event; none for a duplicate."""
        event = decode_value(self.decode, msg.value())
        if not self.seen.first_time(event["event_id"]):
            self.duplicates += 1
            return []
        self.batch.append(event["event_id"])
        note = notification(event)
        if note is None:
            return []
        trace = read_trace(msg.headers()) or Trace(event["event_id"], "", "")
        return [
            Out(
                NOTIFICATIONS,
                card_key(event["card_id"]),
                json.dumps(note).encode(),
                trace.child(note["notification_id"]).headers(),
            )
        ]


def notification_service(settings: Settings, options: StageOptions | None = None) -> Stage:
    """The notification service as a stage: `run()` until `stop()`."""
    options = options or StageOptions(group=GROUP)
    return Stage(settings, STAGE, [EVENTS], [NOTIFICATIONS], NotificationHandler(settings), options)
