"""Request-reply over Kafka: ask the card service for a card's state and wait for the answer.

Most of the system talks in events: a service says what happened and does not wait for
anyone. Sometimes a caller needs an answer (a support desk asks "is card 42 blocked?"), so
here is the one request-reply exchange, built from the same parts:

- the requester sends `{"card_id": ...}` to `card-queries`, keyed by card id (so it reaches
  the card service instance that holds that card), with two headers: `rtml.correlation_id`
  (a fresh id) and `rtml.reply_to` (the topic to answer on, `card-replies`);
- the card service answers from the card's state on the reply topic, copying the
  correlation id;
- the requester reads the reply topic from where it ended before asking, keeps the reply
  with its correlation id, and gives up after a timeout with one clear sentence.

The contrast with events: the caller is coupled to the card service being up *now* (a
timeout when it is not), while an event waits in its topic until its readers come back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from rtml.cards.state import CardState, card_key
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.stage import Out
from rtml.trace import CORRELATION_ID, MESSAGE_ID

QUERIES = "card-queries"
REPLIES = "card-replies"
REPLY_TO = "rtml.reply_to"


class CardQueryError(RtmlError):
    """A query got no answer in time, or a malformed one."""


def answer(msg: Message, state_of: Callable[[int], CardState]) -> Out:
    """The reply to one query: the card's state, on the reply topic, with its correlation id.

    A query that is not JSON with a card id, or names no correlation id, raises (and goes to
    the DLQ). Replies go only to `card-replies` topics, so a header cannot make the service
    write anywhere else.
    """
    query = json.loads(msg.value() or b"")
    card = int(query["card_id"])
    headers = dict(msg.headers() or [])
    correlation = headers[CORRELATION_ID]
    reply_to = (headers.get(REPLY_TO) or REPLIES.encode()).decode()
    if not reply_to.startswith(REPLIES):
        raise ValueError(f"Replies go to {REPLIES} topics only, not {reply_to!r}.")
    reply = {**asdict(state_of(card)), "answered_at": int(time.time() * 1000)}
    return Out(reply_to, correlation, json.dumps(reply).encode(), [(CORRELATION_ID, correlation)])


class CardQueries:
    """A requester: `ask(card_id)` sends a query and waits for its reply."""

    def __init__(self, settings: Settings) -> None:
        self.producer = Producer(settings.client_config(acks="all", partitioner="murmur2_random"))
        self.consumer = Consumer(
            settings.client_config(
                group_id=f"rtml-card-queries-{uuid.uuid4().hex[:8]}",
                enable_auto_commit=False,
                isolation_level="read_committed",  # replies are written in transactions
                fetch_wait_max_ms=10,
            )
        )

    def ask(self, card_id: int, timeout: float = 5.0) -> CardState:
        """The card's state as the card service holds it now."""
        # Read replies from the current ends, fixed before asking, so no reply is missed.
        parts = self.consumer.list_topics(REPLIES, timeout=10).topics[REPLIES].partitions
        self.consumer.assign(
            [
                TopicPartition(
                    REPLIES,
                    p,
                    self.consumer.get_watermark_offsets(TopicPartition(REPLIES, p), timeout=10)[1],
                )
                for p in parts
            ]
        )
        correlation = uuid.uuid4().hex
        self.producer.produce(
            QUERIES,
            json.dumps({"card_id": card_id}).encode(),
            card_key(card_id),
            headers=[
                (CORRELATION_ID, correlation.encode()),
                (MESSAGE_ID, f"q-{correlation}".encode()),
                (REPLY_TO, REPLIES.encode()),
            ],
        )
        self.producer.flush(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.05)
            if msg is None or msg.error() is not None:
                continue
            if dict(msg.headers() or []).get(CORRELATION_ID) == correlation.encode():
                reply = json.loads(msg.value())
                reply.pop("answered_at", None)
                return CardState(**reply)
        raise CardQueryError(
            f"No reply about card {card_id} within {timeout:g} s: is the card service running "
            "(`rtml services up cards`)?"
        )

    def close(self) -> None:
        """Close the reply consumer."""
        self.consumer.close()
