"""The batch features against a row-by-row replay of the definitions the stream uses."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from rtml.features.batch import batch_features
from rtml.features.definitions import (
    FEATURE_COLUMNS,
    MS_PER_DAY,
    WINDOW_DAYS,
    calendar_features,
    terminal_window,
)
from rtml.features.errors import FeatureError
from rtml.impl import exercise
from rtml.simulate import SimulationParams, simulate


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationParams(n_customers=60, n_terminals=120, n_days=50, seed=3))


customer_window = exercise("customer_window", "solutions")


def _row_by_row(transactions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Walk the history in event-time order, as the stream does, with labels due by then."""
    history: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    known: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    lbs = labels.sort_values(["label_time_ms", "transaction_id"]).to_dict("records")
    li = 0
    rows = {}
    for tx in transactions.sort_values(["event_time_ms", "transaction_id"]).to_dict("records"):
        t = tx["event_time_ms"]
        while li < len(lbs) and lbs[li]["label_time_ms"] <= t:
            times, frauds = known[lbs[li]["terminal_id"]]
            at = np.searchsorted(times, lbs[li]["event_time_ms"], side="right")
            times.insert(at, lbs[li]["event_time_ms"])
            frauds.insert(at, int(lbs[li]["tx_fraud"]))
            li += 1
        times, amounts = history[tx["customer_id"]]
        times.append(t)
        amounts.append(tx["tx_amount"])
        row = dict(zip(("is_weekend", "is_night"), calendar_features(t), strict=True))
        for d in WINDOW_DAYS:
            n, mean = customer_window(times, amounts, t, d)
            row[f"customer_nb_tx_{d}d"], row[f"customer_avg_amount_{d}d"] = n, mean
            n, risk = terminal_window(*known[tx["terminal_id"]], t, d)
            row[f"terminal_nb_tx_{d}d"], row[f"terminal_risk_{d}d"] = n, risk
        rows[tx["transaction_id"]] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")[list(FEATURE_COLUMNS)]
    return frame.rename_axis("transaction_id").sort_index()


def test_batch_equals_the_row_by_row_definitions(sim) -> None:
    batch = batch_features(sim.transactions, sim.labels)
    rows = _row_by_row(sim.transactions, sim.labels)
    assert len(batch) == len(sim.transactions)
    pd.testing.assert_index_equal(batch.index, rows.index)
    for column in FEATURE_COLUMNS:
        left, right = batch[column].to_numpy(), rows[column].to_numpy()
        if left.dtype.kind == "f":
            np.testing.assert_allclose(left, right, rtol=1e-9, atol=1e-9, err_msg=column)
        else:
            np.testing.assert_array_equal(left, right, err_msg=column)
    # The windows are not trivially empty: a month of history fills them.
    assert batch["customer_nb_tx_30d"].max() > 30
    assert batch["terminal_nb_tx_30d"].max() > 0
    assert batch["terminal_risk_30d"].max() > 0


def test_windows_include_the_current_transaction_and_exclude_the_edge() -> None:
    times = [0, MS_PER_DAY, 2 * MS_PER_DAY]
    amounts = [10.0, 20.0, 30.0]
    # (t - 1 day, t]: the transaction exactly one day earlier is outside.
    assert customer_window(times, amounts, 2 * MS_PER_DAY, 1) == (1, 30.0)
    assert customer_window(times, amounts, 2 * MS_PER_DAY, 7) == (3, 20.0)


def test_terminal_window_ends_a_week_back() -> None:
    times = [0, 1, 2]
    frauds = [1, 0, 0]
    now = 7 * MS_PER_DAY + 1  # the window (now - 8d, now - 7d] = (-1d + 1, 1]
    assert terminal_window(times, frauds, now, 1) == (2, 0.5)
    assert terminal_window(times, frauds, 7 * MS_PER_DAY - 1, 30) == (0, 0.0)


def test_calendar_features_in_utc() -> None:
    saturday_3am = pd.Timestamp("2018-04-07T03:00:00Z").value // 1_000_000
    monday_noon = pd.Timestamp("2018-04-02T12:00:00Z").value // 1_000_000
    assert calendar_features(saturday_3am) == (True, True)
    assert calendar_features(monday_noon) == (False, False)


def test_labels_later_than_the_window_shift_are_refused(sim) -> None:
    labels = sim.labels.copy()
    labels["label_time_ms"] += MS_PER_DAY
    with pytest.raises(FeatureError, match="more than 7 days"):
        batch_features(sim.transactions, labels)


def test_missing_columns_are_named(sim) -> None:
    with pytest.raises(FeatureError, match="tx_amount"):
        batch_features(sim.transactions.drop(columns="tx_amount"), sim.labels)
