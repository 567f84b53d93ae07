"""Card events routed by content with EventBridge rules, beside a Kafka consumer's filter.

Kafka's way: every consumer reads the whole `card-events` topic and keeps what it wants;
nothing is pushed, each group keeps its own position, and any of them can replay from
offset 0. EventBridge's way: producers put events on a bus; rules with event patterns push
each matching event to targets (here SQS queues); no consumer sees what no rule routed,
and nothing is replayed unless an archive was set up before the events came.

`Router.route` does the EventBridge side for events read from `card-events` (the bridge a
service, or EventBridge Pipes with a Kafka source, would be); `kafka_matches` is the Kafka
side, the same pattern applied by a consumer (`rtml.aws.patterns`). Both must select the
same event ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rtml.aws.errors import AwsError
from rtml.aws.patterns import matches
from rtml.aws.server import client
from rtml.cards.service import EVENTS, read_events
from rtml.clients import admin
from rtml.config import Settings
from rtml.features.labels import to_millis

SOURCE = "rtml.cards"
BUS = "rtml-cards"
PUT_BATCH = 10  # PutEvents takes at most 10 entries per call
HIGH_RISK = 0.8
# Rule name -> event pattern. Blocks go to one queue; alerts and declines whose score is high
# to another (a notification service would read it).
RULES: dict[str, dict[str, Any]] = {
    "card-blocked": {"source": [SOURCE], "detail-type": ["CardBlocked"]},
    "high-risk": {
        "source": [SOURCE],
        "detail-type": ["AlertRaised", "TransactionDeclined"],
        "detail": {"score": [{"numeric": [">=", HIGH_RISK]}]},
    },
}
_SCORE = re.compile(r"\bscore (\d+(?:\.\d+)?)")


def detail(event: Mapping[str, Any]) -> dict[str, Any]:
    """A card event as JSON, plus `score` when its reason names one (the decision service
    writes "DECLINE: score 0.912 by model v3"), so a rule can compare it as a number."""
    out = {k: v for k, v in event.items() if k != "occurred_at"}
    out["occurred_at"] = to_millis(event["occurred_at"])
    found = _SCORE.search(event.get("reason") or "")
    if found:
        out["score"] = float(found.group(1))
    return out


def envelope(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as EventBridge sees it: source, detail-type and detail."""
    return {"source": SOURCE, "detail-type": event["type"], "detail": detail(event)}


def kafka_matches(events: Iterable[Mapping[str, Any]], pattern: Mapping[str, Any]) -> list[str]:
    """Event ids a Kafka consumer keeps when it filters `events` with an event pattern."""
    return [e["event_id"] for e in events if matches(pattern, envelope(e))]


def card_events(settings: Settings) -> list[dict[str, Any]]:
    """Every committed event of `card-events`, read from offset 0 by a plain consumer."""
    partitions = list(
        admin(settings, timeout=10).list_topics(EVENTS, timeout=10).topics[EVENTS].partitions
    )
    return [event for _p, event in read_events(settings, partitions)]


@dataclass(frozen=True)
class Routed:
    """What one rule delivered, against what the Kafka filter kept."""

    rule: str
    routed: tuple[str, ...]
    filtered: tuple[str, ...]

    @property
    def same(self) -> bool:
        """Whether both selected the same event ids, each once."""
        return sorted(self.routed) == sorted(self.filtered)


class Router:
    """A bus with `RULES`, each rule's target an SQS queue, on the emulator at `endpoint`."""

    def __init__(self, endpoint: str, bus: str = BUS) -> None:
        self.events = client(endpoint, "events")
        self.sqs = client(endpoint, "sqs")
        self.bus = bus
        self.queues: dict[str, str] = {}

    def setup(self) -> None:
        """Create the bus, one queue per rule, the rules and their targets (idempotent)."""
        try:
            names = [b["Name"] for b in self.events.list_event_buses()["EventBuses"]]
            if self.bus not in names:
                self.events.create_event_bus(Name=self.bus)
            for rule, pattern in RULES.items():
                url = self.sqs.create_queue(QueueName=f"{self.bus}-{rule}")["QueueUrl"]
                arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                self.events.put_rule(
                    Name=rule, EventBusName=self.bus, EventPattern=json.dumps(pattern)
                )
                self.events.put_targets(
                    Rule=rule,
                    EventBusName=self.bus,
                    Targets=[{"Id": "queue", "Arn": arn["Attributes"]["QueueArn"]}],
                )
                self.queues[rule] = url
        except (BotoCoreError, ClientError) as exc:
            raise AwsError(f"EventBridge could not set up bus {self.bus}: {exc}") from exc

    def put(self, events: Iterable[Mapping[str, Any]]) -> int:
        """PutEvents, 10 at a time; fail if EventBridge refuses any."""
        batch: list[dict[str, Any]] = []
        done = 0
        for event in [*events, None]:
            if event is not None:
                e = envelope(event)
                batch.append(
                    {
                        "Source": e["source"],
                        "DetailType": e["detail-type"],
                        "Detail": json.dumps(e["detail"]),
                        "EventBusName": self.bus,
                    }
                )
            if batch and (event is None or len(batch) == PUT_BATCH):
                answer = self._call(self.events.put_events, Entries=batch)
                if answer.get("FailedEntryCount"):
                    raise AwsError(f"EventBridge refused {answer['FailedEntryCount']} events.")
                done += len(batch)
                batch = []
        return done

    def drain(self, rule: str) -> list[dict[str, Any]]:
        """Receive and delete every message in `rule`'s queue; return the events' details.

        One empty receive ends it: moto delivers during PutEvents. Real EventBridge
        delivers asynchronously, so a real reader keeps polling (long polls) instead.
        """
        url = self.queues[rule]
        out: list[dict[str, Any]] = []
        while True:
            got = self._call(self.sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=10)
            messages = got.get("Messages", [])
            if not messages:
                return out
            for m in messages:
                out.append(json.loads(m["Body"])["detail"])
                self._call(self.sqs.delete_message, QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def route(self, events: list[Mapping[str, Any]]) -> list[Routed]:
        """Put `events` on the bus, drain each rule's queue, and set the Kafka filter beside it."""
        self.setup()
        for rule in RULES:
            self.drain(rule)  # whatever an earlier run left
        self.put(events)
        return [
            Routed(
                rule,
                tuple(d["event_id"] for d in self.drain(rule)),
                tuple(kafka_matches(events, RULES[rule])),
            )
            for rule in RULES
        ]

    @staticmethod
    def _call(method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise AwsError(f"The AWS emulator refused {method.__name__}: {exc}") from exc
