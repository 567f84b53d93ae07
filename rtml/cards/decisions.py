"""The decision service: each prediction becomes a command to the card service, or nothing.

It reads `predictions` and writes `card-commands`: DECLINE asks the card service to block
the card (`BlockCard`), REVIEW asks it to raise an alert for a human (`RaiseAlert`), APPROVE
needs nothing. It does not look at the card: whether a block is still possible is the card
service's decision, made on the card's events (a command is a request, an event a fact).

A command's id and time derive from its prediction (`BlockCard-<transaction id>`, issued at
the prediction's time), so a prediction read twice (the prediction service is at-least-once
by default) gives the same command twice, and its event the same event id: the readers of
`card-events` drop the second one. Each command starts the transaction's trace
(`rtml.trace`): correlation id `tx-<transaction id>`, caused by `pred-<transaction id>`.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message, TopicPartition

from rtml.cards.service import COMMANDS
from rtml.cards.state import card_key
from rtml.config import Settings
from rtml.schemas.registry import projection, registry_client
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.stage import Out, Stage, StageOptions, decode_value
from rtml.trace import Trace, transaction_correlation

STAGE = "decisions"
GROUP = "rtml-decisions"
PREDICTIONS = "predictions"
COMMAND_OF = {"DECLINE": "BlockCard", "REVIEW": "RaiseAlert"}
_READER = projection(
    "prediction",
    ("transaction_id", "customer_id", "score", "decision", "model_version", "predicted_time"),
)


def command_for(prediction: dict[str, Any]) -> tuple[dict[str, Any], Trace] | None:
    """The command a prediction calls for, with its trace; None for APPROVE."""
    kind = COMMAND_OF.get(prediction["decision"])
    if kind is None:
        return None
    tx = prediction["transaction_id"]
    command_id = f"{kind}-{tx}"
    command = {
        "command_id": command_id,
        "card_id": prediction["customer_id"],
        "type": kind,
        "expected_version": None,
        "transaction_id": tx,
        "reason": (
            f"{prediction['decision']}: score {prediction['score']:.3f} "
            f"by model {prediction['model_version']}"
        ),
        "issued_at": prediction["predicted_time"],
    }
    trace = Trace(f"pred-{tx}", transaction_correlation(tx), "").child(command_id)
    return command, trace


class DecisionHandler:
    """Turns one prediction into at most one command."""

    def __init__(self, settings: Settings) -> None:
        self.decode = WireDeserializer(registry_client(settings), _READER)
        self.encode = PreparedSerializer.for_topic(settings, COMMANDS)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Stateless: nothing to rebuild."""

    def finished(self, committed: bool) -> None:
        """Stateless: nothing to keep or forget."""

    def handle(self, msg: Message) -> list[Out]:
        """The command a prediction causes (DECLINE, REVIEW), or nothing (APPROVE)."""
        found = command_for(decode_value(self.decode, msg.value()))
        if found is None:
            return []
        command, trace = found
        return [Out(COMMANDS, card_key(command["card_id"]), self.encode(command), trace.headers())]


def decision_service(settings: Settings, options: StageOptions | None = None) -> Stage:
    """The decision service as a stage: `run()` until `stop()`."""
    options = options or StageOptions(group=GROUP)
    return Stage(settings, STAGE, [PREDICTIONS], [COMMANDS], DecisionHandler(settings), options)
