"""The offline training set: its shape, its labels, and that no row uses the future."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from rtml.features.definitions import LABEL_DELAY_DAYS, MS_PER_DAY
from rtml.model.dataset import COLUMNS, INPUTS, _feature_frame, _labelled, training_set
from rtml.model.update import feature_fields
from rtml.simulate import SimulationParams, simulate


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationParams(n_customers=150, n_terminals=300, n_days=40, seed=5))


def test_rows_are_every_labelled_transaction_with_its_label(sim) -> None:
    frame = training_set(sim)
    assert list(frame.columns) == list(COLUMNS)
    assert dict(frame.dtypes.astype(str)) == COLUMNS
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    truth = sim.transactions.set_index("transaction_id").sort_index()
    assert frame.index.equals(truth.index)
    np.testing.assert_array_equal(frame["tx_fraud"], truth["tx_fraud"])
    np.testing.assert_array_equal(frame["tx_amount"], truth["tx_amount"])
    assert frame["tx_fraud"].sum() > 0, "the history must hold frauds for this test to mean much"
    # Every input is a numeric field of the features topic, so a service can send it.
    assert set(INPUTS) <= set(feature_fields())


def test_features_of_the_past_do_not_change_when_the_future_is_added(sim) -> None:
    """Point in time: features computed from the first 25 days alone (and only the labels
    published by then) equal those the full 40-day history gives the same transactions."""
    cutoff = sim.params.start_ms + 25 * MS_PER_DAY
    txs, labels = sim.transactions, sim.labels
    past = dataclasses.replace(
        sim,
        transactions=txs[txs["event_time_ms"] < cutoff],
        labels=labels[labels["label_time_ms"] < cutoff],
    )
    early = training_set(past)
    full = training_set(sim)
    # Only transactions labelled by day 25 are rows of the short history ...
    assert len(early) == int((labels["label_time_ms"] < cutoff).sum()) > 1000
    # ... and the full history has many later ones, which must not leak into these.
    assert len(full) > 1.5 * len(early)
    pd.testing.assert_frame_equal(early, full.loc[early.index], check_exact=True)


def test_a_cutoff_keeps_only_labels_that_had_arrived(sim) -> None:
    cutoff = sim.params.start_ms + 30 * MS_PER_DAY
    frame = training_set(sim, cutoff_ms=cutoff)
    arrived = sim.labels[sim.labels["label_time_ms"] <= cutoff]["transaction_id"]
    assert sorted(frame.index) == sorted(arrived)
    assert (frame["label_time_ms"] <= cutoff).all()
    # With a label delay of a week, nothing after cutoff - 7 days is labelled yet.
    assert frame["event_time_ms"].max() <= cutoff - LABEL_DELAY_DAYS * MS_PER_DAY
    assert len(frame) < len(training_set(sim))


def _decoded(transaction_id: int, distance: float | None) -> dict:
    """A record as the features topic's deserializer returns it."""
    when = dt.datetime(2018, 4, 2, 12, tzinfo=dt.UTC)
    record = {name: 0.5 for name in INPUTS}
    record.update(
        transaction_id=transaction_id,
        tx_datetime=when,
        customer_id=3,
        terminal_id=4,
        is_weekend=False,
        is_night=True,
        terminal_distance=distance,
    )
    for name in INPUTS:
        if "_nb_tx_" in name:
            record[name] = 2
    return record


def test_log_records_become_the_same_columns_and_unknown_distance_is_nan() -> None:
    rows = _feature_frame([_decoded(11, 1.25), _decoded(10, None)])
    labels = pd.DataFrame(
        {"tx_fraud": [1, 0, 1], "label_time_ms": [5, 50, 7]},
        index=pd.Index([10, 11, 12], name="transaction_id"),
    )
    frame = _labelled(rows, labels, cutoff_ms=10)
    # 11's label arrived after the cutoff and 12 has no features: only 10 is a row.
    assert list(frame.index) == [10]
    assert dict(frame.dtypes.astype(str)) == COLUMNS
    assert np.isnan(frame.loc[10, "terminal_distance"])
    assert frame.loc[10, "event_time_ms"] == 1522670400000  # 2018-04-02T12:00Z in ms
    both = _labelled(rows, labels, cutoff_ms=None)
    assert list(both.index) == [10, 11]
    assert both.loc[11, "terminal_distance"] == 1.25
