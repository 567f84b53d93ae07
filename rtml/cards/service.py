"""The card service: commands in, events out, with the card aggregate as the only rules.

It reads `card-commands`, decides each command against the card's current state
(`rtml.cards.aggregate.decide`), and appends the event to `card-events`. The state lives
nowhere but in those events: when the service is given a partition of `card-commands` it
rebuilds the state of that partition's cards by folding `card-events` of the same partition
number from the beginning (`read_committed`, so aborted writes never count). Commands and
events are both keyed by card id and each event is written to its command's partition, so
one partition number holds all of a card's commands and events and the rebuild reads only
what the instance needs (the co-partitioning rule of week 2, used for state).

Exactly-once (the default): each batch of commands is one Kafka transaction holding its
events, its DLQ records and its command offsets. Killed mid-batch, the service restarts,
fences its previous incarnation (same transactional id: its open transaction is aborted),
rebuilds the state from committed events only, and reads the uncommitted commands again:
each command ends up with exactly one event. At-least-once (`--guarantee at-least-once`)
commits offsets every second instead, so commands handled since the last commit are
handled again after a crash: their events are appended twice, with the same `event_id`,
which is why the projections deduplicate by event id (an idempotent consumer).

It also answers queries (`rtml.cards.requests`): a request on `card-queries` gets the card's
state now on the reply topic it names, the one request-reply exchange of the system.

Events copy the command's trace (`rtml.trace`): same correlation id, caused by the command.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from rtml.cards.aggregate import applier, decide
from rtml.cards.requests import QUERIES, REPLIES, answer
from rtml.cards.state import CardState, card_key
from rtml.config import Settings
from rtml.schemas import SchemaError
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.stage import Out, Stage, StageError, StageOptions, Transient, decode_value
from rtml.trace import Trace, read_trace

log = logging.getLogger(__name__)

STAGE = "cards"
GROUP = "rtml-cards"
COMMANDS = "card-commands"
EVENTS = "card-events"
REBUILD_TIMEOUT_S = 120.0


def read_events(
    settings: Settings, partitions: list[int], timeout: float = REBUILD_TIMEOUT_S
) -> list[tuple[int, dict[str, Any]]]:
    """Every committed event of the given `card-events` partitions, as (partition, event).

    Reads each partition from its start to its last stable offset (a `read_committed`
    consumer's end: open transactions are not waited for, aborted ones are skipped).
    """
    decode = WireDeserializer.for_topic(settings, EVENTS)
    consumer = Consumer(
        settings.client_config(
            group_id=f"rtml-cards-rebuild-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
    )
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(EVENTS, p), timeout=10)[1]
            for p in partitions
        }
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(EVENTS, p, OFFSET_BEGINNING) for p in todo])
        deadline = time.monotonic() + timeout
        while todo:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is not None:
                    continue
                try:
                    out.append((msg.partition(), _decode_patiently(decode, msg.value())))
                except SchemaError as exc:
                    # Not an event this service wrote: the projections dead-letter it; the
                    # state is what the real events say.
                    log.warning("Skipped %s[%d]@%d: %s", EVENTS, msg.partition(), msg.offset(), exc)
            for tp in consumer.position([TopicPartition(EVENTS, p) for p in todo]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)
            if todo and time.monotonic() > deadline:
                raise StageError(
                    f"The card events of partition(s) {sorted(todo)} were not read within "
                    f"{timeout:g} s: is a broker down?"
                )
    finally:
        consumer.close()
    return out


def _decode_patiently(decode: WireDeserializer, data: bytes | None) -> dict[str, Any]:
    """Decode an event, waiting out a registry that does not answer (up to about 30 s):
    skipping a real event would rebuild a wrong state."""
    attempts = 0
    while True:
        try:
            return decode_value(decode, data)
        except Transient as exc:
            attempts += 1
            if attempts >= 30:
                raise StageError(f"The card events cannot be read: {exc}") from exc
            time.sleep(1.0)  # the registry's own recovery: nothing to poll


class CardHandler:
    """Decides commands on the cards of this instance's partitions; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.decode = WireDeserializer.for_topic(settings, COMMANDS)
        self.encode = PreparedSerializer.for_topic(settings, EVENTS)
        self.apply = applier(settings.impl)  # the week-4 exercise seam
        self.cards: dict[int, CardState] = {}
        self.pending: dict[int, CardState] = {}  # this batch's changes, until it commits

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Rebuild the state of every card of the assignment from its events alone.

        The group's (eager) rebalancing hands over the whole assignment each time, so the
        states are rebuilt from scratch: cards of partitions this instance no longer owns
        are dropped, none is folded twice."""
        numbers = sorted({tp.partition for tp in partitions})
        events = read_events(self.settings, numbers)
        cards: dict[int, CardState] = {}
        for _, event in events:
            card = event["card_id"]
            cards[card] = self.apply(cards.get(card) or CardState(card), event)
        self.cards = cards
        log.info(
            "Rebuilt %d card(s) from %d event(s) of partition(s) %s.",
            len({e["card_id"] for _, e in events}),
            len(events),
            numbers,
        )

    def state(self, card_id: int) -> CardState:
        """The card's state including this batch's uncommitted events."""
        return self.pending.get(card_id) or self.cards.get(card_id) or CardState(card_id)

    def handle(self, msg: Message) -> list[Out]:
        """Answer a query, or decide a command on its card's state and return the event."""
        if msg.topic() == QUERIES:
            return [answer(msg, self.state)]
        command = decode_value(self.decode, msg.value())
        card = command["card_id"]
        state = self.state(card)
        events = decide(state, command)
        for event in events:
            state = self.apply(state, event)
        self.pending[card] = state
        trace = read_trace(msg.headers()) or _untraced(command)
        return [
            Out(
                EVENTS,
                card_key(card),
                self.encode(event),
                trace.child(event["event_id"]).headers(),
                partition=msg.partition(),
            )
            for event in events
        ]

    def finished(self, committed: bool) -> None:
        """End of a batch: keep the batch's new card states only if its transaction committed."""
        if committed:
            self.cards.update(self.pending)
        self.pending.clear()


def _untraced(command: Mapping[str, Any]) -> Trace:
    """A command sent without trace headers starts its own trace."""
    return Trace(command["command_id"], f"cmd-{command['command_id']}", "")


def card_service(settings: Settings, options: StageOptions | None = None) -> Stage:
    """The card service as a stage: `run()` until `stop()`."""
    options = options or StageOptions(group=GROUP)
    return Stage(
        settings, STAGE, [COMMANDS, QUERIES], [EVENTS, REPLIES], CardHandler(settings), options
    )
