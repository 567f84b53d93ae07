"""Queries over the card read model: the SQLite file `rtml.cards.projection` writes.

The query side of CQRS: the control room's Events page asks these questions and never
touches Kafka. The file is opened read-only, one connection per query, so a `ReadModel`
can be shared between threads and every query sees the last batch the projection
committed, whole (WAL mode: readers never wait for the writer, nor see half a batch).

Lists come back as pandas DataFrames (times as UTC timestamps), ready to render.
`content_hash` digests the cards and their events in a canonical order, leaving out where
the events were read (partition, offset) and how (offsets, counters): two read models with
the same hash hold the same state, however and wherever they were built.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rtml.cards.state import EVENT_TYPES
from rtml.errors import RtmlError

CARD_COLUMNS = (
    "card_id",
    "version",
    "blocked",
    "blocked_since",
    "block_reason",
    "alerts",
    "declined",
    "rejected",
    "last_event_at",
)
# What an event says, and who caused it; the part of an event the content hash covers.
EVENT_CONTENT = (
    "event_id",
    "card_id",
    "version",
    "type",
    "transaction_id",
    "reason",
    "command_id",
    "occurred_at",
    "correlation_id",
    "causation_id",
)
EVENT_COLUMNS = (*EVENT_CONTENT, "partition", "offset")
TIME_COLUMNS = ("blocked_since", "last_event_at", "occurred_at")
# The projection's counters: `records == applied + duplicates + dlq`.
STATS = ("records", "applied", "duplicates", "dlq")


class ReadModelError(RtmlError):
    """The read model file is missing or cannot be read."""


@dataclass(frozen=True)
class Counts:
    """How many cards, blocked cards and alerts the read model holds, and events per type."""

    cards: int
    blocked: int
    alerts: int
    events: dict[str, int]  # every event type, 0 when none


def _select(columns: tuple[str, ...], table: str) -> str:
    names = ", ".join('"' + c + '"' for c in columns)  # "partition" and "offset" are keywords
    return f"SELECT {names} FROM {table}"


class ReadModel:
    """Read-only queries over one read model file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ReadModelError(
                f"There is no card read model at {self.path}: start the card projection, "
                "which creates it."
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise ReadModelError(f"The card read model {self.path} cannot be read: {exc}.") from exc
        with closing(conn):
            yield conn

    def _frame(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        with self._connect() as conn:
            frame = pd.read_sql_query(sql, conn, params=params)
        for name in TIME_COLUMNS:
            if name in frame:
                frame[name] = pd.to_datetime(frame[name], unit="ms", utc=True)
        if "blocked" in frame:
            frame["blocked"] = frame["blocked"].astype(bool)
        return frame

    def blocked_cards(self) -> pd.DataFrame:
        """The cards blocked now, longest blocked first."""
        return self._frame(
            f"{_select(CARD_COLUMNS, 'cards')} WHERE blocked = 1 ORDER BY blocked_since, card_id"
        )

    def alerts(self, limit: int = 50) -> pd.DataFrame:
        """The latest `limit` AlertRaised events, newest first."""
        return self._frame(
            f"{_select(EVENT_COLUMNS, 'events')} WHERE type = 'AlertRaised' "
            "ORDER BY occurred_at DESC, event_id DESC LIMIT ?",
            (limit,),
        )

    def card_history(self, card_id: int) -> pd.DataFrame:
        """Every event of `card_id`, in version order (the order the card service decided)."""
        return self._frame(
            f"{_select(EVENT_COLUMNS, 'events')} WHERE card_id = ? ORDER BY version, event_id",
            (card_id,),
        )

    def trace(self, correlation_id: str) -> pd.DataFrame:
        """Every event carrying `correlation_id` (one transaction's path), oldest first."""
        return self._frame(
            f"{_select(EVENT_COLUMNS, 'events')} WHERE correlation_id = ? "
            "ORDER BY occurred_at, card_id, version",
            (correlation_id,),
        )

    def card(self, card_id: int) -> pd.DataFrame:
        """The row of `card_id` (an empty frame if it has no events)."""
        return self._frame(f"{_select(CARD_COLUMNS, 'cards')} WHERE card_id = ?", (card_id,))

    def counts(self) -> Counts:
        """Cards, blocked cards, alerts raised, and events per type."""
        with self._connect() as conn:
            cards, blocked, alerts = conn.execute(
                "SELECT count(*), coalesce(sum(blocked), 0), coalesce(sum(alerts), 0) FROM cards"
            ).fetchone()
            by_type = dict(conn.execute("SELECT type, count(*) FROM events GROUP BY type"))
        return Counts(cards, blocked, alerts, {t: by_type.get(t, 0) for t in EVENT_TYPES})

    def stats(self) -> dict[str, int]:
        """Records read in total, and how many were applied, duplicates or dead-lettered."""
        with self._connect() as conn:
            found = dict(conn.execute("SELECT name, value FROM stats"))
        return {name: found.get(name, 0) for name in STATS}

    def offsets(self) -> dict[int, int]:
        """Partition -> the next offset the projection reads, as committed with the rows."""
        with self._connect() as conn:
            return dict(
                conn.execute(
                    'SELECT "partition", next_offset FROM offsets ORDER BY "partition"'
                ).fetchall()
            )

    def content_hash(self) -> str:
        """SHA-256 of every card and event in a canonical order (by card, then version).

        Partitions, offsets and counters are left out: they say how the model was read, not
        what it holds. A rebuild from offset 0 gives the live read model's hash."""
        digest = hashlib.sha256()
        with self._connect() as conn:
            for table, columns, order in (
                ("cards", CARD_COLUMNS, "card_id"),
                ("events", EVENT_CONTENT, "card_id, version, event_id"),
            ):
                digest.update(f"{table}\n".encode())
                for row in conn.execute(f"{_select(columns, table)} ORDER BY {order}"):
                    digest.update(json.dumps(row).encode() + b"\n")
        return digest.hexdigest()
