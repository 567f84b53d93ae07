"""Rebuild the card read model from `card-events` and compare it with the live one.

The claim of event sourcing with CQRS: the read model is a cache of the log, so replaying
the log from offset 0 rebuilds it, content for content (`ReadModel.content_hash`). Checking
that on a running system needs care, because the live projection keeps reading while the
rebuild runs: two models that read different stretches of the log differ for that reason
alone. So `compare_rebuild` compares them at the same position:

1. `rebuild` replays `card-events` into a new file, to the end offsets it found;
2. the live model gets a moment to reach that position, then is copied with SQLite's
   backup API: a consistent snapshot (one committed batch, never half of one), with the
   offsets it has read stored beside its rows;
3. the rebuild reads on from the offsets stored in it to exactly the snapshot's offsets,
   and folds those events with the projection's own `write_batch`.

Both have then read the same events, so their hashes must be equal. If the live model did
not reach the rebuild's position in time (its projection is stopped or far behind), they
are compared as they are and `same_position` says why they may differ. The live file is
only ever read; the rebuild and the snapshot live in a temporary folder, deleted afterwards.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from confluent_kafka import Consumer, Message, TopicPartition

from rtml.cards.aggregate import applier
from rtml.cards.projection import (
    GROUP,
    TOPIC,
    Delivered,
    ProjectionError,
    connect,
    default_db_path,
    rebuild,
    stored_offsets,
    write_batch,
)
from rtml.cards.readmodel import Counts, ReadModel, ReadModelError
from rtml.clients import QUIET
from rtml.config import Settings
from rtml.schemas import SchemaError
from rtml.schemas.wire import WireDeserializer
from rtml.trace import read_trace

SETTLE_S = 15.0  # how long the live projection gets to reach the rebuild's position


@dataclass(frozen=True)
class ModelState:
    """One read model at one moment: what it holds, its hash, and how far it has read."""

    counts: Counts
    content_hash: str
    offsets: dict[int, int]  # card-events partition -> next offset to read
    stats: dict[str, int]  # records read, applied, duplicates, dlq

    @property
    def events(self) -> int:
        """Events the read model holds, of every type."""
        return sum(self.counts.events.values())


@dataclass(frozen=True)
class RebuildComparison:
    """The live read model and its rebuild from offset 0, compared."""

    live: ModelState
    rebuilt: ModelState
    seconds: float  # how long the rebuild and the comparison took
    moved_ids: int = 0  # event ids that belong to a different card in each model

    @property
    def equal(self) -> bool:
        """True when the rebuilt read model has the live one's content hash."""
        return self.live.content_hash == self.rebuilt.content_hash

    @property
    def same_position(self) -> bool:
        """True when both read models stopped at the same offsets of `card-events`."""
        return _same(self.live.offsets, self.rebuilt.offsets)

    def sentence(self) -> str:
        """The verdict, and the reason when the hashes differ."""
        if self.equal:
            return (
                f"Equal: replaying card-events from offset 0 gave the same read model "
                f"({self.rebuilt.events:,} events, {self.rebuilt.counts.cards:,} cards), "
                "hash for hash."
            )
        if not self.same_position:
            ahead = sum(self.live.offsets.values()) - sum(self.rebuilt.offsets.values())
            which = "live model" if ahead > 0 else "rebuild"
            return (
                f"Differs, because the two read different stretches of card-events: the "
                f"{which} is {abs(ahead):,} offset(s) further (events kept arriving, or the "
                "live projection is behind or stopped). Compare again."
            )
        if self.moved_ids:
            return (
                f"Differs at the same position: {self.moved_ids:,} event id(s) belong to a "
                "different card in each model. Event ids derive from transaction ids "
                "(`<Type>-<transaction id>#0`): when transactions of two cards share an id, "
                "the projection keeps the event it reads first and drops the other as a "
                "duplicate, so the result depends on how partitions interleave. Transaction "
                "ids must be unique: does the live simulator reuse the ids of an earlier run "
                "or of a replayed history?"
            )
        return (
            "Differs at the same position: the same events gave different read models. "
            "Has the fold (apply_card_event, RTML_IMPL) changed since the live model was built?"
        )


def compare_rebuild(
    settings: Settings,
    live_path: Path | None = None,
    timeout: float = 600.0,
    settle_s: float = SETTLE_S,
) -> RebuildComparison:
    """Rebuild the read model into a temporary file and compare it with the live one at
    the same position of `card-events` (see the module docstring)."""
    live = Path(live_path) if live_path is not None else default_db_path(settings)
    ReadModel(live)  # a sentence, before minutes of rebuilding, if there is none
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rtml-rebuild-") as folder:
        rebuilt_path = Path(folder) / "rebuilt.sqlite"
        rebuilt = rebuild(settings, rebuilt_path, timeout)
        _wait_for(live, rebuilt.offsets(), settle_s)
        snapshot = _snapshot(live, Path(folder) / "live.sqlite")
        position = snapshot.offsets()
        if _at_or_after(position, rebuilt.offsets()):
            _read_up_to(settings, rebuilt_path, position, timeout)
        return RebuildComparison(
            _state(snapshot),
            _state(rebuilt),
            time.monotonic() - started,
            _moved_ids(snapshot.path, rebuilt_path),
        )


def _moved_ids(one: Path, other: Path) -> int:
    """How many event ids belong to a different card in `one` than in `other`."""
    conn = sqlite3.connect(f"{one.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS other", (f"{other.resolve().as_uri()}?mode=ro",))
        (moved,) = conn.execute(
            "SELECT count(*) FROM events e JOIN other.events o ON o.event_id = e.event_id "
            "WHERE o.card_id != e.card_id"
        ).fetchone()
    finally:
        conn.close()
    return moved


def _state(model: ReadModel) -> ModelState:
    return ModelState(model.counts(), model.content_hash(), model.offsets(), model.stats())


def _same(a: dict[int, int], b: dict[int, int]) -> bool:
    return all(a.get(p, 0) == b.get(p, 0) for p in a.keys() | b.keys())


def _at_or_after(position: dict[int, int], other: dict[int, int]) -> bool:
    """True when `position` has read at least as far as `other` in every partition."""
    return all(position.get(p, 0) >= o for p, o in other.items())


def _wait_for(live: Path, position: dict[int, int], settle_s: float) -> None:
    """Until the live model has read at least up to `position` (or `settle_s` passed)."""
    deadline = time.monotonic() + settle_s
    while not _at_or_after(ReadModel(live).offsets(), position):
        if time.monotonic() > deadline:
            return
        time.sleep(0.25)


def _snapshot(live: Path, target: Path) -> ReadModel:
    """A consistent copy of the live model (SQLite's online backup: one committed state)."""
    try:
        source = sqlite3.connect(f"{live.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise ReadModelError(f"The card read model {live} cannot be read: {exc}.") from exc
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # a plain file, readable read-only
    finally:
        copy.close()
        source.close()
    return ReadModel(target)


def _read_up_to(settings: Settings, path: Path, ends: dict[int, int], timeout: float) -> None:
    """Continue the rebuilt file at `path` from the offsets stored in it to exactly `ends`
    (next offset per partition): the events in between, folded by the projection's own
    `write_batch` in one transaction with the new offsets."""
    conn = connect(path)
    try:
        starts = stored_offsets(conn)
        todo = {p: end for p, end in ends.items() if end > starts.get(p, 0)}
        if not todo:
            return
        messages = _read_range(settings, {p: starts.get(p, 0) for p in todo}, todo, timeout)
        decode = WireDeserializer.for_topic(settings, TOPIC)
        events: list[Delivered] = []
        undecodable = 0
        for msg in messages:
            try:
                event = decode(msg.value())
            except SchemaError:
                undecodable += 1  # counted, not dead-lettered again: the live run did that
                continue
            trace = read_trace(msg.headers())
            events.append(Delivered(event, msg.partition(), msg.offset(), trace))
        write_batch(conn, events, todo, applier(settings.impl), undecodable=undecodable)
    finally:
        conn.close()


def _read_range(
    settings: Settings, starts: dict[int, int], ends: dict[int, int], timeout: float
) -> list[Message]:
    """The committed records of `card-events` from `starts` to before `ends`, per partition
    in log order."""
    consumer = Consumer(
        settings.client_config(
            group_id=f"{GROUP}-rebuild-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            logger=QUIET,
        )
    )
    got: list[Message] = []
    pending = dict(ends)
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(TOPIC, p, o) for p, o in starts.items()])
        while pending:
            if time.monotonic() > deadline:
                raise ProjectionError(
                    f"The rebuild did not read {TOPIC} up to the live read model's offsets "
                    f"within {timeout:g} s: is a broker down?"
                )
            for msg in consumer.consume(500, timeout=0.2):
                p = msg.partition()
                if msg.error() is not None or p not in pending or msg.offset() >= ends[p]:
                    continue
                got.append(msg)
                if msg.offset() + 1 >= ends[p]:
                    del pending[p]
            if pending:  # past aborted records and markers, the position tells
                for tp in consumer.position([TopicPartition(TOPIC, p) for p in pending]):
                    if tp.offset >= ends[tp.partition]:
                        pending.pop(tp.partition, None)
    finally:
        consumer.close()
    return got


def comparison_table(result: RebuildComparison) -> pd.DataFrame:
    """The two models side by side: what they hold, how far they read, their hashes."""
    rows: list[tuple[str, object, object]] = [
        ("cards", result.live.counts.cards, result.rebuilt.counts.cards),
        ("blocked cards", result.live.counts.blocked, result.rebuilt.counts.blocked),
        ("alerts", result.live.counts.alerts, result.rebuilt.counts.alerts),
    ]
    rows += [
        (f"{kind} events", n, result.rebuilt.counts.events.get(kind, 0))
        for kind, n in result.live.counts.events.items()
    ]
    rows += [
        ("card-events read up to", _position(result.live), _position(result.rebuilt)),
        ("content hash", result.live.content_hash, result.rebuilt.content_hash),
    ]
    return pd.DataFrame(
        [
            {"": name, "live": str(live), "rebuilt": str(rebuilt), "same": live == rebuilt}
            for name, live, rebuilt in rows
        ]
    )


def _position(state: ModelState) -> str:
    """Next offsets per partition, as `p:offset` items."""
    return " ".join(f"{p}:{o}" for p, o in sorted(state.offsets.items())) or "-"
