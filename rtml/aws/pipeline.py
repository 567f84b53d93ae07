"""The simulator, the feature logic and the scoring code of rtml, over any `RecordStream`.

One run, stage by stage, each stage reading a stream from the start and writing the next:

1. `publish`: the simulator's history into `transactions` (key: the week 1 exercise
   `partition_key`, the customer id), `labels` (key: transaction id), and the reference
   data `customers` and `terminals` (key: id), in the Avro wire format of the Kafka topics;
2. `customer_stage`: each shard of `transactions` in its order, the customer windows kept
   per customer (a customer's records all sit in one shard), the week 2 exercise
   `customer_window` as in the Quix app; each result is put to `by-terminal`, keyed by
   terminal id: the Kinesis analogue of the Quix app's repartition topic, so each terminal's
   transactions meet in one shard;
3. `terminal_stage`: each shard of `by-terminal`: the terminal windows from the labels
   (`definitions.terminal_window`, read as a global table, as `rtml.features.labels` does)
   and the distance to the terminal; the features record, Avro, keyed by customer id, to
   `features`;
4. `score_stage`: `features` scored by a saved model through the prediction service's own
   `score_records`, one prediction per record (Avro, keyed by transaction id) to
   `predictions`.

So on Kinesis nothing touches a Kafka topic: the only Kafka-cluster service used is the
schema registry, which gives the Avro schema ids of the wire format. This is a bounded
replay (each stage reads what its input holds when it starts), not a service that runs for
ever: the point is that the same code gives the same predictions on either log.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rtml.aws.streams import RecordStream
from rtml.config import Settings
from rtml.features.definitions import (
    LABEL_DELAY_DAYS,
    MS_PER_DAY,
    WINDOW_DAYS,
    add_to_history,
    calendar_features,
    terminal_window,
)
from rtml.features.errors import FeatureError
from rtml.features.labels import to_millis
from rtml.impl import exercise
from rtml.model.update import Scorer
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.serve.service import prediction, score_records
from rtml.simulate.generator import Simulation
from rtml.simulate.producer import CUSTOMERS, LABELS, TERMINALS, TRANSACTIONS, messages

ROLES = (
    "transactions",
    "labels",
    "customers",
    "terminals",
    "by-terminal",
    "features",
    "predictions",
)
# The Avro schema of each role's values (by-terminal holds JSON, as Quix's repartitions do).
TOPIC_OF = {r: r for r in ROLES if r != "by-terminal"}
GRACE_MS = 60_000  # as the feature app: out of order by more than this is late
SCORE_BATCH = 500

Progress = Callable[[str, int], None]  # (stage, records done in it)


def stream_names(prefix: str) -> dict[str, str]:
    """The name of each role's stream: `<prefix>.<role>`."""
    return {role: f"{prefix}.{role}" for role in ROLES}


@dataclass
class RunReport:
    """Records per stage, and seconds per stage."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    late: int = 0

    def sentence(self) -> str:
        """What the run did, as one sentence."""
        parts = [f"{stage} {n:,} ({self.seconds[stage]:.1f} s)" for stage, n in self.counts.items()]
        return "Records per stage: " + ", ".join(parts) + f"; late: {self.late}."


class Pipeline:
    """The stages of one run over the streams `streams` (role -> stream)."""

    def __init__(
        self,
        settings: Settings,
        streams: dict[str, RecordStream],
        progress: Progress | None = None,
    ) -> None:
        missing = [r for r in ROLES if r not in streams]
        if missing:
            raise FeatureError(f"The pipeline needs stream(s) for {', '.join(missing)}.")
        self.settings = settings
        self.streams = streams
        self.progress = progress or (lambda _stage, _n: None)
        self.decode = {r: WireDeserializer.for_topic(settings, t) for r, t in TOPIC_OF.items()}
        self.report = RunReport()

    def run(self, sim: Simulation, scorer: Scorer, units: int = 2) -> RunReport:
        """Create every stream with `units` shards or partitions, then run every stage."""
        for stream in self.streams.values():
            stream.create(units)
        self._timed("publish", lambda: self.publish(sim))
        self._timed("customer windows", self.customer_stage)
        self._timed("terminal windows", self.terminal_stage)
        self._timed("predictions", lambda: self.score_stage(scorer))
        return self.report

    def _timed(self, stage: str, step: Callable[[], int]) -> None:
        started = time.monotonic()
        self.report.counts[stage] = step()
        self.report.seconds[stage] = time.monotonic() - started
        self.progress(stage, self.report.counts[stage])

    # --- 1. the simulator's history ---------------------------------------------------------

    def publish(self, sim: Simulation) -> int:
        """Put the history: reference data, labels, and transactions in event-time order."""
        txs = sim.transactions.sort_values(["event_time_ms", "transaction_id"], kind="stable")
        by_id = {s.topic: _id_key(s.id_field) for s in (LABELS, CUSTOMERS, TERMINALS)}
        plan = [
            (CUSTOMERS, sim.customers, by_id["customers"]),
            (TERMINALS, sim.terminals, by_id["terminals"]),
            (LABELS, sim.labels.sort_values("label_time_ms", kind="stable"), by_id["labels"]),
            (TRANSACTIONS, txs, exercise("partition_key", self.settings.impl)),
        ]
        for spec, frame, key in plan:
            encode = PreparedSerializer.for_topic(self.settings, spec.topic)
            batch = [(k, v) for _topic, k, v, _ts in messages(spec, frame, encode, key)]
            self.streams[spec.topic].put(batch)
        return len(txs)

    # --- 2. the customer windows, then re-keyed by terminal ---------------------------------

    def customer_stage(self) -> int:
        """Customer windows per shard, in shard order; out to by-terminal, keyed by terminal."""
        window = exercise("customer_window", self.settings.impl)
        homes = {
            c["customer_id"]: (c["x"], c["y"]) for c in self._values("customers")
        }  # a table from a log: the last record of each key wins
        history: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        out: list[tuple[bytes, bytes]] = []
        for records in self.streams["transactions"].read().values():
            for record in records:
                tx = self.decode["transactions"](record.value)
                t = to_millis(tx["tx_datetime"])
                times, amounts = history[tx["customer_id"]]
                if times and t < times[-1] - GRACE_MS:
                    self.report.late += 1  # the feature app sends these to transactions.late
                    continue
                add_to_history(times, amounts, t, tx["tx_amount"])
                row = {**tx, "tx_datetime": t, "home": homes.get(tx["customer_id"])}
                row["is_weekend"], row["is_night"] = calendar_features(t)
                for d in WINDOW_DAYS:
                    count, mean = window(times, amounts, t, d)
                    row[f"customer_nb_tx_{d}d"] = count
                    row[f"customer_avg_amount_{d}d"] = mean
                # JSON keeps every float exactly (repr round-trips), as Quix's repartitions do.
                out.append((str(tx["terminal_id"]).encode(), json.dumps(row).encode()))
        return self.streams["by-terminal"].put(out)

    # --- 3. the terminal windows and the features record ------------------------------------

    def terminal_stage(self) -> int:
        """Terminal windows and distance per by-terminal shard; features keyed by customer."""
        places = {t["terminal_id"]: (t["x"], t["y"]) for t in self._values("terminals")}
        labels = KnownLabels(self._values("labels"))
        encode = PreparedSerializer.for_topic(self.settings, "features")
        out: list[tuple[bytes, bytes]] = []
        for records in self.streams["by-terminal"].read().values():
            for record in records:
                tx = json.loads(record.value)
                home, place = tx["home"], places.get(tx["terminal_id"])
                features = {
                    k: tx[k]
                    for k in (
                        "transaction_id",
                        "tx_datetime",
                        "customer_id",
                        "terminal_id",
                        "tx_amount",
                        "is_weekend",
                        "is_night",
                    )
                }
                features["terminal_distance"] = (
                    math.hypot(home[0] - place[0], home[1] - place[1]) if home and place else None
                )
                for d in WINDOW_DAYS:
                    features[f"customer_nb_tx_{d}d"] = tx[f"customer_nb_tx_{d}d"]
                    features[f"customer_avg_amount_{d}d"] = tx[f"customer_avg_amount_{d}d"]
                    count, risk = labels.window(tx["terminal_id"], tx["tx_datetime"], d)
                    features[f"terminal_nb_tx_{d}d"] = count
                    features[f"terminal_risk_{d}d"] = risk
                features["feature_time"] = int(time.time() * 1000)
                out.append((str(tx["customer_id"]).encode(), encode(features)))
        return self.streams["features"].put(out)

    # --- 4. the predictions ------------------------------------------------------------------

    def score_stage(self, scorer: Scorer) -> int:
        """Score features with the service's own code, in batches; predictions keyed by id."""
        score_batch = exercise("score_batch", self.settings.impl)
        encode = PreparedSerializer.for_topic(self.settings, "predictions")
        out: list[tuple[bytes, bytes]] = []
        for records in self.streams["features"].read().values():
            for first in range(0, len(records), SCORE_BATCH):
                chunk = records[first : first + SCORE_BATCH]
                decoded = [self.decode["features"](r.value) for r in chunk]
                scores, decisions, _, _ = score_records(scorer, decoded, score_batch)
                now = int(time.time() * 1000)
                for rec, raw, score, decision in zip(
                    decoded, chunk, scores, decisions, strict=True
                ):
                    value = prediction(rec, score, decision, scorer.version, raw.appended_ms, now)
                    out.append((str(rec["transaction_id"]).encode(), encode(value)))
        return self.streams["predictions"].put(out)

    def predictions(self) -> pd.DataFrame:
        """Every prediction written: transaction_id, score, decision, model_version."""
        return read_predictions(self.settings, self.streams["predictions"])

    def _values(self, role: str) -> Iterable[dict[str, Any]]:
        decode = self.decode[role]
        for records in self.streams[role].read().values():
            for record in records:
                yield decode(record.value)


def read_predictions(settings: Settings, stream: RecordStream) -> pd.DataFrame:
    """The predictions in `stream`, one row per record."""
    decode = WireDeserializer.for_topic(settings, "predictions")
    rows = [decode(r.value) for records in stream.read().values() for r in records]
    columns = ["transaction_id", "score", "decision", "model_version"]
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


class KnownLabels:
    """Every terminal's fraud labels, read whole (a global table, as in the feature app).

    A label counts in a terminal window ending `LABEL_DELAY_DAYS` before t only if it is
    known at t; with every label at most that late, reading them all first changes nothing,
    and a later one is refused as the batch reference refuses it.
    """

    def __init__(self, labels: Iterable[dict[str, Any]]) -> None:
        found: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for label in labels:
            event, known = to_millis(label["tx_datetime"]), to_millis(label["label_time"])
            if known - event > LABEL_DELAY_DAYS * MS_PER_DAY:
                raise FeatureError(
                    f"The label of transaction {label['transaction_id']} came more than "
                    f"{LABEL_DELAY_DAYS} days after it, so the terminal windows would depend "
                    "on when labels are read: use a longer delay."
                )
            found[label["terminal_id"]].append((event, int(bool(label["tx_fraud"]))))
        self.terminals = {
            terminal: ([t for t, _ in sorted(rows)], [f for _, f in sorted(rows)])
            for terminal, rows in found.items()
        }

    def window(self, terminal_id: int, now_ms: int, days: int) -> tuple[int, float]:
        """(count, fraud risk) of the terminal's labels in its window at `now_ms`."""
        times, frauds = self.terminals.get(terminal_id, ([], []))
        return terminal_window(times, frauds, now_ms, days)


def _id_key(field_name: str) -> Callable[[Any], bytes]:
    def key(record: Any) -> bytes:
        return str(record[field_name]).encode()

    return key
