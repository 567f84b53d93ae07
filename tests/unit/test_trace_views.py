"""What the Events and Replay pages show around a trace, without a broker: the services'
counters, dead-letter tables and redrive sentences, reset targets and plans, and the
verdict of a rebuilt read model."""

from __future__ import annotations

import time

import pytest

from rtml import services
from rtml.cards import compare
from rtml.cards.aggregate import applier
from rtml.cards.compare import (
    ModelState,
    RebuildComparison,
    _moved_ids,
    comparison_table,
)
from rtml.cards.projection import Delivered, connect, write_batch
from rtml.cards.readmodel import Counts, ReadModel
from rtml.observe.events import (
    STAGE_COLUMNS,
    record_label,
    record_table,
    redrive_sentence,
    stage_table,
    summary_table,
)
from rtml.observe.resets import (
    LAB_GROUPS,
    NOTES,
    owning_service,
    plan_sentence,
    plan_table,
    target_of,
)
from rtml.ops.dlq import DlqRecord, DlqSummary, RedriveItem, RedriveReport
from rtml.ops.replay import Move, ReplayError, ResetPlan, Target
from rtml.stage import StageStatus
from rtml.trace import Trace


def test_the_lab_groups_are_the_services_own():
    from rtml.cards import decisions, notifications, projection, service
    from rtml.features import app
    from rtml.serve import service as serve

    owners = {
        decisions.GROUP: "decisions",
        service.GROUP: "cards",
        notifications.GROUP: "notifications",
        projection.GROUP: "projections",
        serve.GROUP: "serve",
        app.GROUP: "features",
    }
    assert owners == LAB_GROUPS
    assert set(LAB_GROUPS.values()) <= set(services.NAMES)
    assert set(NOTES) == set(LAB_GROUPS)
    assert owning_service("rtml-cards") == "cards"
    assert owning_service("someone-elses-group") is None


def test_stage_counters_say_whether_every_record_was_handled_or_dead_lettered():
    now = time.time()
    fine = StageStatus("decisions", "rtml-decisions", 0, 1, "exactly-once", "running")
    fine.records, fine.handled, fine.outputs, fine.dlq, fine.updated = 10, 8, 5, 2, now
    old = StageStatus("cards", "rtml-cards", 1, 2, "at-least-once", "running", updated=now - 60)
    old.records, old.handled = 4, 3
    table = stage_table([fine, old])
    assert list(table.columns) == STAGE_COLUMNS
    assert table.to_dict("records")[0] == {
        "stage": "decisions",
        "instance": 0,
        "group": "rtml-decisions",
        "state": "running",
        "guarantee": "exactly-once",
        "in": 10,
        "handled": 8,
        "out": 5,
        "dlq": 2,
        "retries": 0,
        "in == handled + dlq": True,
    }
    assert list(table["state"]) == ["running", "stale"]
    assert list(table["in == handled + dlq"]) == [True, False]
    assert stage_table([]).empty


def _record(partition: int, offset: int, value) -> DlqRecord:
    origin = {
        "topic": "card-commands",
        "partition": "3",
        "offset": "17",
        "error_type": "SchemaError",
        "error": "not Avro",
        "attempts": "1",
    }
    return DlqRecord(
        "cards.dlq", partition, offset, 1_764_000_000_000, origin, (), "42", value, "text"
    )


def test_dead_letter_tables_name_each_record_its_error_and_origin():
    summary = summary_table(
        [
            DlqSummary("cards", "cards.dlq", True, 3, {"SchemaError": 2, "KeyError": 1}),
            DlqSummary("connect", "connect.dlq", False),
        ]
    )
    assert summary.to_dict("records")[0]["errors"] == "SchemaError 2, KeyError 1"
    assert summary["records"].isna().tolist() == [False, True]
    assert "rtml topics apply" in summary["errors"][1]

    records = [_record(0, 5, "bad bytes"), _record(1, 2, {"a": 1})]
    table = record_table(records)
    assert list(table["record"]) == ["0:5", "1:2"] == [record_label(r) for r in records]
    assert list(table["origin"]) == ["card-commands 3:17"] * 2
    assert list(table["value"]) == ["(text) bad bytes", '(text) {"a": 1}']
    assert table["time"][0] == "2025-11-24T16:00:00.000Z"


def test_a_redrive_is_told_in_one_sentence():
    sent = RedriveReport("cards", "cards.dlq", False, (RedriveItem(0, 5, "card-commands", "sent"),))
    assert redrive_sentence(sent) == (
        True,
        "Sent 1 record(s) of cards.dlq back to card-commands, once: redriving again sends nothing.",
    )
    again = RedriveReport(
        "cards", "cards.dlq", False, (RedriveItem(0, 5, None, "already redriven"),)
    )
    ok, sentence = redrive_sentence(again)
    assert ok and sentence.startswith("1 record(s) were redriven before, so not again")
    skipped = RedriveReport(
        "cards", "cards.dlq", False, (RedriveItem(0, 6, None, "skipped", "its origin is gone"),)
    )
    assert redrive_sentence(skipped) == (False, "1 skipped: its origin is gone.")
    assert redrive_sentence(RedriveReport("cards", "cards.dlq", False, ())) == (
        True,
        "Nothing to redrive in cards.dlq.",
    )


def test_reset_targets_come_from_the_inputs_or_a_sentence():
    assert target_of("earliest") == Target("earliest")
    assert target_of("latest", 5, "x") == Target("latest")
    assert target_of("offset", 12) == Target("offset", 12)
    assert target_of("time", when="2026-11-25T05:00") == Target("time", 1_795_582_800_000)
    with pytest.raises(ReplayError, match="Give the offset"):
        target_of("offset")
    with pytest.raises(ReplayError, match="Give the time"):
        target_of("time", when=" ")
    with pytest.raises(ReplayError, match="is not an ISO 8601 time"):
        target_of("time", when="yesterday; drop table")
    with pytest.raises(ReplayError, match="is not a reset target"):
        target_of("rewind")


def _plan(applied: bool = False) -> ResetPlan:
    moves = (
        Move("predictions", 0, 40, 0, 0, 50),  # 10 behind -> replays 40 more
        Move("predictions", 1, None, 0, 0, 7),  # never committed
        Move("predictions", 2, 30, 30, 0, 30),  # unchanged
    )
    return ResetPlan("rtml-decisions", Target("earliest"), "empty", moves, ("gone",), applied)


def test_a_plan_shows_each_partition_before_and_after_and_says_what_it_does():
    table = plan_table(_plan())
    assert list(table["before"].astype("float").fillna(-1)) == [40, -1, 30]
    assert list(table["after"]) == [0, 0, 30]
    assert list(table["lag before"].astype("float").fillna(-1)) == [10, -1, 0]
    assert list(table["lag after"]) == [50, 7, 0]
    assert list(table["replays"].astype("float").fillna(-1)) == [40, -1, 0]
    assert plan_sentence(_plan()) == (
        "Resetting rtml-decisions to earliest would move 2 of 3 partition(s); it reads 47 "
        "record(s) again when it starts again. Topics it committed to that are gone, left "
        "alone: gone."
    )
    assert plan_sentence(_plan(applied=True)).startswith(
        "Group rtml-decisions was reset to earliest; it reads 47 record(s) again"
    )


def _state(hash_: str, offsets: dict[int, int], alerts: int = 2) -> ModelState:
    events = {"CardBlocked": 1, "AlertRaised": alerts}
    return ModelState(Counts(3, 1, alerts, events), hash_, offsets, {})


def test_a_rebuild_is_equal_or_says_why_not():
    same = RebuildComparison(_state("abc", {0: 4}), _state("abc", {0: 4}), 1.0)
    assert same.equal and same.same_position
    assert same.sentence().startswith("Equal: replaying card-events from offset 0")
    table = comparison_table(same).set_index("")
    assert table.loc["content hash", "live"] == "abc" and table.loc["content hash", "same"]
    assert table.loc["card-events read up to", "rebuilt"] == "0:4"
    assert table["same"].all()

    behind = RebuildComparison(_state("abc", {0: 6}, 3), _state("def", {0: 4}), 1.0)
    assert not behind.equal and not behind.same_position
    assert "the live model is 2 offset(s) further" in behind.sentence()
    assert not comparison_table(behind).set_index("").loc["AlertRaised events", "same"]

    drifted = RebuildComparison(_state("abc", {0: 4}), _state("def", {0: 4}), 1.0)
    assert "Differs at the same position" in drifted.sentence()


def test_an_event_id_shared_by_two_cards_makes_the_result_depend_on_the_order(tmp_path):
    apply = applier("solutions")

    def alert(card: int) -> Delivered:
        event = {
            "event_id": "RaiseAlert-5#0",  # transaction 5 of two different cards
            "card_id": card,
            "version": 1,
            "type": "AlertRaised",
            "transaction_id": 5,
            "reason": "REVIEW",
            "command_id": "RaiseAlert-5",
            "occurred_at": 1_764_000_000_000,
        }
        return Delivered(event, card, 0, Trace("RaiseAlert-5#0", "tx-5", "RaiseAlert-5"))

    paths = []
    for name, order in (("a", [1, 2]), ("b", [2, 1])):
        paths.append(tmp_path / f"{name}.sqlite")
        conn = connect(paths[-1])
        write_batch(conn, [alert(card) for card in order], {1: 1, 2: 1}, apply)
        conn.close()
    one, other = (ReadModel(p) for p in paths)
    assert one.offsets() == other.offsets() and one.content_hash() != other.content_hash()
    assert _moved_ids(paths[0], paths[1]) == 1
    states = [compare._state(one), compare._state(other)]
    compared = RebuildComparison(states[0], states[1], 1.0, _moved_ids(paths[0], paths[1]))
    assert compared.same_position and not compared.equal
    assert compared.sentence().startswith(
        "Differs at the same position: 1 event id(s) belong to a different card in each model."
    )
