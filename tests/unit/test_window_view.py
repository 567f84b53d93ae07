"""The Windows page's layout without a broker: lanes, the busiest key, timeline, latest."""

import pandas as pd

from rtml.features.window_view import (
    HOUR_MS,
    MIN_BAR_MS,
    busiest_key,
    details,
    focus,
    lanes,
    latest,
    timeline,
)

QUARTER = HOUR_MS // 4


def _hopping(first: int, n: int) -> list[dict]:
    """`n` 1-hour windows every 15 minutes, as the app's hopping windows come."""
    return [
        {"kind": "hopping", "start": first + i * QUARTER, "end": first + i * QUARTER + HOUR_MS}
        | {"count": 1, "sum": 10.0}
        for i in range(n)
    ]


def test_overlapping_windows_get_lanes_and_back_to_back_ones_share_one():
    hopping = _hopping(0, 6)
    assert lanes([w["start"] for w in hopping], [w["end"] for w in hopping]) == [0, 1, 2, 3, 0, 1]
    # A window that starts where the last ended does not overlap it.
    assert lanes([0, 10, 20], [10, 20, 30]) == [0, 0, 0]
    assert lanes([], []) == []


def test_the_busiest_key_counts_only_the_kinds_asked_for_and_ties_go_to_the_smaller_id():
    records = [
        {"key": 7, "kind": "tumbling"},
        {"key": 7, "kind": "count"},
        {"key": 3, "kind": "session"},
        {"key": 3, "kind": "hopping"},
        {"key": 9, "kind": "terminals"},
        {"key": 9, "kind": "terminals"},
        {"key": 9, "kind": "terminals"},
    ]
    assert busiest_key(records, ("tumbling", "count", "session", "hopping")) == 3
    assert busiest_key(records, ("terminals",)) == 9
    assert busiest_key(records, ("sliding",)) is None


def test_details_format_each_aggregate_on_one_line():
    record = {"kind": "session", "start": 0, "end": 5, "key": 4, "count": 2, "sum": 12.5}
    assert details(record | {"terminals": [4, 17]}) == "count 2 · sum 12.50 · terminals 4, 17"


def test_the_timeline_orders_kinds_numbers_lanes_and_widens_zero_length_windows():
    day = 24 * HOUR_MS
    records = [
        {"kind": "count", "start": 5 * day, "end": 5 * day, "mean": 3.0},
        *_hopping(5 * day, 5),
        {"kind": "tumbling", "start": 5 * day, "end": 5 * day + HOUR_MS, "count": 2},
        {"kind": "tumbling", "start": 3 * day, "end": 3 * day + HOUR_MS, "count": 1},
    ]
    frame = timeline(records)
    assert list(frame["kind"]) == [*["tumbling"] * 2, *["hopping"] * 5, "count"]
    assert list(frame["lane"]) == [
        "tumbling",
        "tumbling",
        "hopping 1",
        "hopping 2",
        "hopping 3",
        "hopping 4",
        "hopping 1",
        "count",
    ]
    count = frame.iloc[-1]
    assert count["start"] == count["end"] == 5 * day
    assert count["to"] - count["from"] == pd.Timedelta(milliseconds=MIN_BAR_MS)
    tumbling = frame.iloc[1]
    assert tumbling["from"] == pd.Timestamp(5 * day, unit="ms", tz="UTC")
    assert tumbling["to"] - tumbling["from"] == pd.Timedelta(hours=1)
    assert tumbling["details"] == "count 2"
    assert timeline([]).empty


def test_the_timeline_opens_on_the_day_before_the_newest_window_that_fits_in_a_day():
    day = 24 * HOUR_MS
    history = [{"kind": "tumbling", "start": 3 * day, "end": 3 * day + HOUR_MS, "count": 1}]
    lo, hi = focus(history)
    assert lo == pd.Timestamp(2 * day + HOUR_MS, unit="ms", tz="UTC")
    assert hi == pd.Timestamp(3 * day + 2 * HOUR_MS, unit="ms", tz="UTC")
    # A count window from the replayed history into live time does not move it.
    straddling = {"kind": "count", "start": 3 * day, "end": 3000 * day, "mean": 1.0}
    assert focus([*history, straddling]) == (lo, hi)
    assert focus([straddling])[1] == pd.Timestamp(3000 * day + HOUR_MS, unit="ms", tz="UTC")


def test_latest_keeps_the_window_of_each_kind_that_ended_last():
    records = [
        {"kind": "session", "start": 0, "end": 100, "count": 1, "terminals": [3]},
        {"kind": "tumbling", "start": 0, "end": HOUR_MS, "count": 4, "sum": 40.0},
        {"kind": "session", "start": 200, "end": 900, "count": 2, "terminals": [3, 8]},
    ]
    frame = latest(records).set_index("kind")
    assert list(frame.index) == ["tumbling", "session"]
    assert frame.loc["session", "count"] == 2
    assert frame.loc["session", "terminals"] == "3, 8"
    assert frame.loc["session", "end"] == pd.Timestamp(900, unit="ms", tz="UTC")
    assert frame.loc["tumbling", "sum"] == 40.0
    assert list(latest([]).columns) == ["kind", "start", "end"]
