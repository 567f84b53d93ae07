"""The card read model without a broker: events written with `write_batch`, then queried."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rtml.cards.aggregate import applier, decide, fold
from rtml.cards.projection import (
    Delivered,
    Projection,
    ProjectionError,
    ProjectionOptions,
    connect,
    rebuild,
    stored_offsets,
    write_batch,
)
from rtml.cards.readmodel import ReadModel, ReadModelError
from rtml.cards.state import CardState
from rtml.config import Settings
from rtml.trace import Trace

APPLY = applier("solutions")
T0 = 1_700_000_000_000
KINDS = ("BlockCard", "UnblockCard", "RaiseAlert", "DeclineTransaction")


def card_events(card_id: int, commands: list[tuple[str, str]], start: int = T0) -> list[dict]:
    """The events `decide` makes of (type, reason) commands sent to one card, in order."""
    state, events = CardState(card_id), []
    for i, (kind, reason) in enumerate(commands):
        command = {
            "command_id": f"cmd-{card_id}-{i}",
            "card_id": card_id,
            "type": kind,
            "expected_version": None,
            "transaction_id": card_id * 1000 + i,
            "reason": reason,
            "issued_at": start + i * 1000,
        }
        for event in decide(state, command):
            state = APPLY(state, event)
            events.append(event)
    return events


def random_events(card_ids: range, per_card: int, seed: int = 1) -> dict[int, list[dict]]:
    rng = random.Random(seed)
    return {
        card: card_events(card, [(rng.choice(KINDS), f"r{i}") for i in range(per_card)])
        for card in card_ids
    }


def delivered(event: dict, partition: int, offset: int) -> Delivered:
    trace = Trace(event["event_id"], f"tx-{event['transaction_id']}", event["command_id"])
    return Delivered(event, partition, offset, trace)


def interleave(by_card: dict[int, list[dict]], seed: int) -> list[Delivered]:
    """Every card's events in its own order, the cards interleaved at random (as partitions
    are), each at its offset in partition card_id % 6."""
    rng = random.Random(seed)
    queues = {card: list(events) for card, events in by_card.items()}
    offsets: dict[int, int] = {}
    out = []
    while queues:
        card = rng.choice(sorted(queues))
        event = queues[card].pop(0)
        if not queues[card]:
            del queues[card]
        partition = card % 6
        offsets[partition] = offsets.get(partition, -1) + 1
        out.append(delivered(event, partition, offsets[partition]))
    return out


def write_in_batches(path: Path, items: list[Delivered], sizes: list[int]) -> ReadModel:
    conn = connect(path)
    try:
        i = 0
        for size in sizes:
            batch = items[i : i + size]
            write_batch(conn, batch, next_offsets(batch), APPLY)
            i += size
        assert i >= len(items)
    finally:
        conn.close()
    return ReadModel(path)


def next_offsets(batch: list[Delivered]) -> dict[int, int]:
    return {d.partition: d.offset + 1 for d in batch}


def test_cards_are_the_fold_of_their_events_and_queries_read_them(tmp_path: Path) -> None:
    by_card = random_events(range(1, 21), 12)
    model = write_in_batches(tmp_path / "cards.sqlite", interleave(by_card, 3), [50] * 10)

    folded = {card: fold(card, events, "solutions") for card, events in by_card.items()}
    blocked = model.blocked_cards()
    assert set(blocked["card_id"]) == {c for c, s in folded.items() if s.blocked}
    assert blocked["blocked"].all()
    counts = model.counts()
    assert counts.cards == 20 and counts.blocked == len(blocked)
    assert counts.alerts == sum(s.alerts for s in folded.values())
    assert sum(counts.events.values()) == 240
    assert counts.events["AlertRaised"] == counts.alerts
    assert counts.events["CommandRejected"] == sum(s.rejected for s in folded.values())

    history = model.card_history(7)
    assert list(history["version"]) == list(range(1, 13))
    assert list(history["event_id"]) == [e["event_id"] for e in by_card[7]]
    assert history["occurred_at"].iloc[0] == datetime.fromtimestamp(T0 / 1000, UTC)
    assert set(history["partition"]) == {1}

    alerts = model.alerts(limit=5)
    assert len(alerts) == min(5, counts.alerts)
    assert (alerts["type"] == "AlertRaised").all()
    assert alerts["occurred_at"].is_monotonic_decreasing

    first = by_card[7][0]
    trace = model.trace(f"tx-{first['transaction_id']}")
    assert list(trace["event_id"]) == [first["event_id"]]
    assert trace["causation_id"].iloc[0] == first["command_id"]
    assert model.trace("tx-nobody").empty
    assert model.stats() == {"records": 240, "applied": 240, "duplicates": 0, "dlq": 0}


def test_a_block_keeps_its_time_and_reason_until_the_unblock(tmp_path: Path) -> None:
    events = card_events(
        5,
        [
            ("BlockCard", "fraud score 0.97"),
            ("RaiseAlert", "review"),
            ("BlockCard", "again"),  # rejected: already blocked
            ("UnblockCard", "customer called"),
        ],
    )
    conn = connect(tmp_path / "cards.sqlite")
    model = ReadModel(tmp_path / "cards.sqlite")
    write_batch(conn, [delivered(e, 5, i) for i, e in enumerate(events[:3])], {5: 3}, APPLY)
    card = model.blocked_cards().iloc[0]
    assert card["card_id"] == 5 and card["version"] == 3 and card["rejected"] == 1
    assert card["block_reason"] == "fraud score 0.97"
    assert card["blocked_since"] == datetime.fromtimestamp(T0 / 1000, UTC)
    assert card["last_event_at"] == datetime.fromtimestamp((T0 + 2000) / 1000, UTC)

    write_batch(conn, [delivered(events[3], 5, 3)], {5: 4}, APPLY)
    conn.close()
    assert model.blocked_cards().empty
    assert model.counts().blocked == 0 and model.counts().cards == 1


def test_duplicates_are_counted_and_not_applied(tmp_path: Path) -> None:
    events = card_events(9, [("RaiseAlert", "a"), ("RaiseAlert", "b")])
    items = [delivered(e, 3, i) for i, e in enumerate(events)]
    conn = connect(tmp_path / "cards.sqlite")
    # The second alert twice in one batch, then the first again in a later batch (an
    # at-least-once card service appends the same event, same event_id, at a new offset).
    again = delivered(events[1], 3, 2)
    first = write_batch(conn, [*items, again], {3: 3}, APPLY)
    later = write_batch(conn, [delivered(events[0], 3, 3)], {3: 4}, APPLY)
    conn.close()

    assert (first.applied, first.duplicates, later.applied, later.duplicates) == (2, 1, 0, 1)
    model = ReadModel(tmp_path / "cards.sqlite")
    assert model.counts().alerts == 2
    assert list(model.card_history(9)["offset"]) == [0, 1]  # the first copy is kept
    assert model.stats() == {"records": 4, "applied": 2, "duplicates": 2, "dlq": 0}


def test_an_event_the_fold_refuses_is_dead_lettered_before_the_commit(tmp_path: Path) -> None:
    good, unknown = card_events(4, [("RaiseAlert", "a"), ("RaiseAlert", "b")])
    unknown = {**unknown, "type": "CardStolen"}
    conn = connect(tmp_path / "cards.sqlite")

    def refuse(_refused: list) -> None:
        raise ProjectionError("the dead-letter topic did not answer")

    items = [delivered(good, 0, 0), delivered(unknown, 0, 1)]
    with pytest.raises(ProjectionError):
        write_batch(conn, items, {0: 2}, APPLY, dead_letter=refuse)
    assert stored_offsets(conn) == {}  # rolled back: nothing of the batch, offsets included
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)

    sent: list = []
    result = write_batch(conn, items, {0: 2}, APPLY, undecodable=1, dead_letter=sent.extend)
    conn.close()
    assert [(d.offset, type(exc)) for d, exc in sent] == [(1, ValueError)]
    assert (result.records, result.applied, result.duplicates, result.dlq) == (3, 1, 0, 2)
    model = ReadModel(tmp_path / "cards.sqlite")
    assert model.stats() == {"records": 3, "applied": 1, "duplicates": 0, "dlq": 2}
    assert model.offsets() == {0: 2}
    assert model.counts().alerts == 1


def test_stored_offsets_only_move_forward(tmp_path: Path) -> None:
    events = card_events(2, [("RaiseAlert", "a"), ("RaiseAlert", "b")])
    conn = connect(tmp_path / "cards.sqlite")
    write_batch(conn, [delivered(e, 2, i) for i, e in enumerate(events)], {2: 2}, APPLY)
    # The same records read again after a rebalance: all duplicates, no step back.
    write_batch(conn, [delivered(events[0], 2, 0)], {2: 1}, APPLY)
    assert stored_offsets(conn) == {2: 2}
    conn.close()


def test_the_hash_does_not_depend_on_how_cards_interleave_or_are_batched(tmp_path: Path) -> None:
    by_card = random_events(range(100, 130), 10, seed=7)
    one = write_in_batches(tmp_path / "one.sqlite", interleave(by_card, 1), [300])
    rng = random.Random(2)
    sizes = [rng.randint(1, 40) for _ in range(300)]
    # Decoded by fastavro, occurred_at is an aware datetime: the same instant, the same row.
    as_datetimes = [
        Delivered(
            {**d.event, "occurred_at": datetime.fromtimestamp(d.event["occurred_at"] / 1000, UTC)},
            d.partition,
            d.offset + 1000,  # read from another copy of the log: where is not what
            d.trace,
        )
        for d in interleave(by_card, 2)
    ]
    two = write_in_batches(tmp_path / "two.sqlite", as_datetimes, sizes)
    assert one.content_hash() == two.content_hash()
    assert one.card_history(105)["offset"].iloc[0] != two.card_history(105)["offset"].iloc[0]

    by_card[129] = by_card[129][:-1]
    fewer = write_in_batches(tmp_path / "fewer.sqlite", interleave(by_card, 1), [300])
    assert fewer.content_hash() != one.content_hash()


def test_a_missing_read_model_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ReadModelError, match="start the card projection"):
        ReadModel(tmp_path / "nothing.sqlite")


def test_options_and_their_errors(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    live = settings.cluster_dir / "readmodel" / "cards.sqlite"
    assert ProjectionOptions().path(settings) == live
    assert ProjectionOptions(db_path=tmp_path / "x.sqlite").path(settings) == tmp_path / "x.sqlite"
    with pytest.raises(ProjectionError, match="use 1 to 100,000"):
        Projection(settings, ProjectionOptions(batch_size=0))
    connect(live).close()
    with pytest.raises(ProjectionError, match="choose another path"):
        rebuild(settings, live)
