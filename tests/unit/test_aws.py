"""EventBridge patterns as a predicate, the card-event envelope, and the label table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rtml.aws.eventbridge import RULES, envelope, kafka_matches
from rtml.aws.patterns import PatternError, matches
from rtml.aws.pipeline import KnownLabels, stream_names
from rtml.features.definitions import MS_PER_DAY
from rtml.features.errors import FeatureError

EVENT = {
    "source": "rtml.cards",
    "detail-type": "AlertRaised",
    "detail": {"score": 0.9, "tags": ["a", "b"]},
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["rtml.cards"]}, True),
        ({"source": ["other", "rtml.cards"]}, True),
        ({"source": ["other"]}, False),
        ({"detail": {"score": [{"numeric": [">=", 0.8]}]}}, True),
        ({"detail": {"score": [{"numeric": [">", 0.5, "<", 0.9]}]}}, False),
        ({"detail-type": [{"prefix": "Alert"}]}, True),
        ({"detail-type": [{"anything-but": ["AlertRaised"]}]}, False),
        ({"detail": {"missing": [{"exists": False}]}}, True),
        ({"detail": {"missing": [{"exists": True}]}}, False),
        ({"detail": {"missing": ["x"]}}, False),
        ({"detail": {"tags": ["b"]}}, True),
        ({"detail": {"score": ["0.9"]}}, False),
        ({"source": ["rtml.cards"], "detail": {"score": [{"numeric": ["<", 0.5]}]}}, False),
    ],
)
def test_patterns_match_as_eventbridge_does(pattern, expected) -> None:
    assert matches(pattern, EVENT) is expected


def test_a_pattern_outside_the_subset_is_refused() -> None:
    with pytest.raises(PatternError):
        matches({"source": "rtml.cards"}, EVENT)
    with pytest.raises(PatternError):
        matches({"source": [{"wildcard": "rtml.*"}]}, EVENT)


def _card_event(kind: str, reason: str) -> dict:
    return {
        "event_id": f"{kind}-{reason}",
        "card_id": 1,
        "version": 1,
        "type": kind,
        "transaction_id": 5,
        "reason": reason,
        "command_id": "c",
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def test_card_events_carry_their_score_and_the_rules_select_by_it() -> None:
    high = _card_event("AlertRaised", "REVIEW: score 0.912 by model v3")
    low = _card_event("AlertRaised", "REVIEW: score 0.2 by model v3")
    plain = _card_event("AlertRaised", "by hand")
    blocked = _card_event("CardBlocked", "DECLINE: score 0.99 by model v3")
    wrapped = envelope(high)
    assert wrapped["detail"]["score"] == 0.912
    assert wrapped["detail"]["occurred_at"] == 1_767_225_600_000
    assert "score" not in envelope(plain)["detail"]
    events = [high, low, plain, blocked]
    assert kafka_matches(events, RULES["high-risk"]) == [high["event_id"]]
    assert kafka_matches(events, RULES["card-blocked"]) == [blocked["event_id"]]
    assert set(RULES) == {"high-risk", "card-blocked"}


def test_the_label_table_counts_labels_in_the_delayed_window() -> None:
    day = MS_PER_DAY
    labels = [
        {
            "transaction_id": i,
            "terminal_id": 3,
            "tx_datetime": t,
            "label_time": t + 7 * day,
            "tx_fraud": f,
        }
        for i, (t, f) in enumerate([(1 * day, True), (2 * day, False), (9 * day, True)])
    ]
    table = KnownLabels(labels)
    # At day 10, the 1-day window is (day 2, day 3]; the 7-day one (day -4, day 3].
    assert table.window(3, 10 * day, 1) == (0, 0.0)
    assert table.window(3, 10 * day, 7) == (2, 0.5)
    assert table.window(99, 10 * day, 7) == (0, 0.0)
    late = [{**labels[0], "label_time": labels[0]["tx_datetime"] + 8 * day}]
    with pytest.raises(FeatureError, match="more than 7 days"):
        KnownLabels(late)


def test_each_role_has_its_stream() -> None:
    names = stream_names("lab")
    assert names["by-terminal"] == "lab.by-terminal"
    assert len(set(names.values())) == len(names) == 7


def test_without_the_emulator_rtml_says_how_to_start_it(tmp_path, capsys, monkeypatch) -> None:
    from rtml.aws.errors import AwsError
    from rtml.aws.server import MotoServer
    from rtml.cli import main
    from rtml.config import Settings

    with pytest.raises(AwsError, match="start it with `rtml aws up`"):
        MotoServer(Settings(home=tmp_path)).require()
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    assert main(["aws", "status"]) == 1
    assert "DOWN: start it with `rtml aws up`" in capsys.readouterr().out
    assert main(["aws", "eventbridge"]) == 2
    assert "rtml aws up" in capsys.readouterr().err
