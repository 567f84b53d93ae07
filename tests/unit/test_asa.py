"""The ASA job in infra/asa: parsed as rtml's live windows are configured, and the model of
ASA's documented window semantics on hand-made events whose answers are known."""

from __future__ import annotations

import pandas as pd
import pytest

from rtml.asa.compare import compare_kind
from rtml.asa.query import AsaQueryError, load_job, parse_query
from rtml.asa.semantics import evaluate
from rtml.features import windows

H = 3_600_000
M = 60_000
T0 = 1_000 * H  # an hour boundary


def _tx(*stamps: int, customer: int = 1, amount: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": customer,
            "terminal_id": range(len(stamps)),
            "tx_amount": [amount + i for i in range(len(stamps))],
            "event_time_ms": list(stamps),
        }
    )


def test_the_query_has_the_windows_the_quix_app_runs() -> None:
    job = load_job()
    assert [w.kind for w in job.windows] == [
        "tumbling",
        "hopping",
        "sliding",
        "session",
        "terminals",
    ]
    assert job.window("tumbling").size_ms == windows.HOUR.total_seconds() * 1000
    hopping = job.window("hopping")
    assert (hopping.size_ms, hopping.hop_ms) == (H, 15 * M)
    assert job.window("sliding").size_ms == H
    session = job.window("session")
    assert (session.size_ms, session.max_duration_ms) == (30 * M, 2 * H)
    assert job.window("terminals").key == "terminal_id"
    # The job's out-of-order tolerance is the app's grace, and late records are dropped as
    # Quix skips them.
    assert job.out_of_order_ms == windows.GRACE.total_seconds() * 1000
    assert job.out_of_order_policy == "Drop"
    names = {a.name: a.func for a in job.window("terminals").aggregates}
    assert names == {"count": "COUNT", "customers": "COUNT_DISTINCT"}


def test_a_query_without_timestamp_by_or_with_an_unknown_window_is_refused() -> None:
    with pytest.raises(AsaQueryError, match="TIMESTAMP BY"):
        parse_query(
            "SELECT 'x' AS kind, k, COUNT(*) AS c FROM T GROUP BY k, TumblingWindow(hour, 1)"
        )
    with pytest.raises(AsaQueryError, match="unit, size"):
        parse_query(
            "SELECT 'x' AS kind, k, COUNT(*) AS c FROM T TIMESTAMP BY t "
            "GROUP BY k, TumblingWindow(fortnight, 1)"
        )


def test_tumbling_windows_include_their_end_and_not_their_start() -> None:
    spec = load_job().window("tumbling")
    # One event on the boundary T0, one inside the next hour.
    got = evaluate(spec, _tx(T0, T0 + 10 * M))
    assert got[["start", "end", "count"]].values.tolist() == [[T0 - H, T0, 1], [T0, T0 + H, 1]]


def test_hopping_windows_cover_each_event_size_over_hop_times() -> None:
    got = evaluate(load_job().window("hopping"), _tx(T0 + 5 * M))
    assert got["end"].tolist() == [T0 + 15 * M, T0 + 30 * M, T0 + 45 * M, T0 + 60 * M]


def test_sliding_windows_emit_on_entry_and_on_exit() -> None:
    got = evaluate(load_job().window("sliding"), _tx(T0, T0 + H, T0 + 90 * M))
    rows = got[["end", "trigger", "count"]].values.tolist()
    assert rows == [
        [T0, "enter", 1],
        # T0 has left (t - size, t] exactly as T0 + H enters: one event.
        [T0 + H, "enter", 1],
        [T0 + 90 * M, "enter", 2],
        [T0 + 2 * H, "exit", 1],
    ]


def test_sessions_end_a_timeout_after_the_last_event_or_at_a_max_duration_check() -> None:
    spec = load_job().window("session")
    # Two events 20 min apart, then a gap of 31 min: two sessions.
    got = evaluate(spec, _tx(T0 + M, T0 + 21 * M, T0 + 52 * M))
    assert got[["first", "end", "count", "trigger"]].values.tolist() == [
        [T0 + M, T0 + 51 * M, 2, "timeout"],
        [T0 + 52 * M, T0 + 82 * M, 1, "timeout"],
    ]
    # Every 20 min for 5 hours: never a 30 min gap, so only the 2 h checks cut it. T0 is a
    # multiple of 2 h, so the first check past 2 h of length is at T0 + 4 h.
    chatty = evaluate(spec, _tx(*(T0 + 20 * M * i for i in range(16))))
    assert chatty["trigger"].tolist() == ["max-duration", "timeout"]
    assert chatty["end"].iloc[0] == T0 + 4 * H
    assert chatty["count"].tolist() == [13, 3]


def test_the_comparison_names_each_difference() -> None:
    spec = load_job().window("tumbling")
    tx = _tx(T0, T0 + 10 * M, T0 + 5 * H)
    # What Quix's [start, end) tumbling windows give on the same events.
    quix = pd.DataFrame(
        [
            {
                "kind": "tumbling",
                "key": 1,
                "start": T0,
                "end": T0 + H,
                "count": 2,
                "sum": 21.0,
                "mean": 10.5,
                "min": 10.0,
                "max": 11.0,
            },
        ]
    )
    result = compare_kind(spec, tx, quix, grace_ms=M)
    status = dict(zip(result["asa_end"], result["status"], strict=True))
    assert status[T0] == "ASA only: boundary"
    assert status[T0 + H] == "differs: boundary"
    assert status[T0 + 5 * H] == "open at end"
