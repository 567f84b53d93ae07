"""What the control room's Windows page shows of the `windows` topic.

The feature app writes every closed window there as JSON, keyed by customer (or terminal)
id (see `windows.py`). The page needs a key to show without typing (the busiest among the
newest window records), that key's windows laid out on one time axis (overlapping windows
of a kind on lanes of their own, so none hides another), and the latest window of each kind.
The readers are thin; the layout is pure and unit-tested.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, KafkaException, TopicPartition

from rtml.clients import QUIET
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.features.windows import CUSTOMER_KINDS, TERMINAL_KINDS, TOPIC, read_windows
from rtml.observe import no_broker
from rtml.observe.tail import last_ranges

KINDS = (*CUSTOMER_KINDS, *TERMINAL_KINDS)
HOUR_MS = 3_600_000
# A session or count window of one payment starts and ends at that payment: draw it this
# wide so it shows, as the week 2 notebook does.
MIN_BAR_MS = 240_000
_BOUNDS = ("kind", "start", "end")


class WindowViewError(RtmlError):
    """The windows topic cannot be read: no broker answers, or it does not exist."""


def recent_windows(
    settings: Settings, per_partition: int = 1000, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The newest `per_partition` records of each partition of `windows`, each with its
    `key` (the customer or terminal id) added; oldest first within a partition.

    Assigns partitions itself (no group joins or commits) and reads for at most about
    `timeout` seconds, so a page refresh stays short whatever the topic holds.
    """
    consumer = Consumer(
        settings.client_config(
            group_id="rtml-windows-view",
            enable_auto_commit=False,
            socket_timeout_ms=int(min(timeout, 10) * 1000),
            logger=QUIET,
        )
    )
    deadline = time.monotonic() + timeout
    try:
        ends = last_ranges(
            settings, consumer, TOPIC, per_partition, min(timeout, 3), WindowViewError
        )
        consumer.assign([TopicPartition(TOPIC, p, start) for p, (start, _end) in ends.items()])
        pending = {p for p, (start, end) in ends.items() if end > start}
        found: list[dict[str, Any]] = []
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None or msg.partition() not in pending:
                    continue
                record = _parse(msg.key(), msg.value())
                if record is not None:
                    found.append(record)
                if msg.offset() + 1 >= ends[msg.partition()][1]:
                    pending.discard(msg.partition())
    finally:
        consumer.close()
    return found


def _parse(key: bytes | None, value: bytes | None) -> dict[str, Any] | None:
    """A window record with its key, or None for anything that is not one."""
    try:
        record = json.loads(value) if value else None
        number = int(key) if key else None
    except ValueError:
        return None
    if not isinstance(record, dict) or number is None or record.get("kind") not in KINDS:
        return None
    return {**record, "key": number}


def key_windows(
    settings: Settings, key: int, kinds: tuple[str, ...] = CUSTOMER_KINDS
) -> list[dict[str, Any]]:
    """`read_windows` with a stopped cluster as one sentence instead of a librdkafka error."""
    try:
        return read_windows(settings, key, kinds)
    except KafkaException as exc:
        raise WindowViewError(no_broker(settings)) from exc


def busiest_key(records: Iterable[Mapping[str, Any]], kinds: Sequence[str]) -> int | None:
    """The key with the most window records of `kinds` (the smaller id on a tie); None
    when there is none."""
    counts = Counter(r["key"] for r in records if r.get("kind") in kinds)
    if not counts:
        return None
    return min(counts, key=lambda k: (-counts[k], k))


def lanes(starts: Sequence[int], ends: Sequence[int]) -> list[int]:
    """A lane for each window (given in order of start) such that the windows on one lane
    never overlap: each takes the first lane free by its start."""
    lane_ends: list[int] = []
    out = []
    for start, end in zip(starts, ends, strict=True):
        free = next((i for i, e in enumerate(lane_ends) if e <= start), None)
        if free is None:
            free = len(lane_ends)
            lane_ends.append(end)
        else:
            lane_ends[free] = end
        out.append(free)
    return out


def details(record: Mapping[str, Any]) -> str:
    """A window's aggregates as one line: `count 3 · sum 152.30 · terminals 4, 17`."""
    parts = []
    for name, value in record.items():
        if name in (*_BOUNDS, "key"):
            continue
        if isinstance(value, float):
            text = f"{value:.2f}"
        elif isinstance(value, list):
            text = ", ".join(map(str, value))
        else:
            text = str(value)
        parts.append(f"{name} {text}")
    return " · ".join(parts)


def timeline(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per window, for a timeline with a row (lane) per kind.

    Columns: kind, lane (the kind, numbered when its windows overlap: `hopping 2`),
    from/to (UTC; at least MIN_BAR_MS apart), start/end (ms) and details (the aggregates).
    Ordered by kind as KINDS lists them, then by start.
    """
    columns = ["kind", "lane", "from", "to", "start", "end", "details"]
    if not records:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(
        {
            "kind": [r["kind"] for r in records],
            "start": [int(r["start"]) for r in records],
            "end": [int(r["end"]) for r in records],
            "details": [details(r) for r in records],
        }
    )
    frame["order"] = frame["kind"].map(KINDS.index)
    frame = frame.sort_values(["order", "start", "end"], kind="mergesort").reset_index(drop=True)
    frame["lane"] = frame["kind"]
    for kind, group in frame.groupby("kind", sort=False):
        numbers = lanes(group["start"].tolist(), group["end"].tolist())
        if max(numbers) > 0:
            frame.loc[group.index, "lane"] = [f"{kind} {n + 1}" for n in numbers]
    frame["from"] = pd.to_datetime(frame["start"], unit="ms", utc=True)
    frame["to"] = pd.to_datetime(
        np.maximum(frame["end"], frame["start"] + MIN_BAR_MS), unit="ms", utc=True
    )
    return frame[columns]


def focus(
    records: Sequence[Mapping[str, Any]], span_ms: int = 24 * HOUR_MS
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The stretch of event time a timeline opens on: `span_ms` up to the newest window end
    (and a little after, so the last bar shows whole).

    Windows longer than the span do not set its end: a count window whose first payments
    were replayed from history and whose last came live spans years, and would otherwise
    leave every other window out of sight.
    """
    if not records:
        raise ValueError("focus needs at least one window")
    ends = [int(r["end"]) for r in records if int(r["end"]) - int(r["start"]) <= span_ms]
    newest = max(ends) if ends else max(int(r["end"]) for r in records)
    return (
        pd.Timestamp(newest - span_ms, unit="ms", tz="UTC"),
        pd.Timestamp(newest + span_ms // 24, unit="ms", tz="UTC"),
    )


def latest(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The window of each kind that ended last (in KINDS order): kind, start and end (UTC),
    then each aggregate (lists as text)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for r in records:
        if r["kind"] not in newest or int(r["end"]) >= int(newest[r["kind"]]["end"]):
            newest[r["kind"]] = r
    rows = []
    for kind in (k for k in KINDS if k in newest):
        r = newest[kind]
        row: dict[str, Any] = {
            "kind": kind,
            "start": pd.Timestamp(int(r["start"]), unit="ms", tz="UTC"),
            "end": pd.Timestamp(int(r["end"]), unit="ms", tz="UTC"),
        }
        for name, value in r.items():
            if name not in (*_BOUNDS, "key"):
                row[name] = ", ".join(map(str, value)) if isinstance(value, list) else value
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["kind", "start", "end"])
    return pd.DataFrame(rows)
