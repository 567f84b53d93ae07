"""The training set rebuilt from the log equals the offline one, and rebuilds identically.

A small history is replayed into fresh topics and the feature app runs over it (as
`rtml features run`, in a subprocess) until `features` holds every transaction. Reading
`features` and `labels` back must then give exactly `training_set(sim)`: the same rows and
the same values, from offset 0 as often as asked, from a timestamp exactly the later rows,
and with a cutoff only the labels that had arrived by then.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtml.features.definitions import MS_PER_DAY
from rtml.features.runner import PIPELINE_TOPICS, FeatureRun, fresh_topics
from rtml.model.dataset import COLUMNS, read_log, training_set, training_set_from_log
from rtml.schemas import register_all
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.producer import publish_reference, replay

pytestmark = pytest.mark.slow


def _assert_same(log: pd.DataFrame, offline: pd.DataFrame) -> None:
    assert log.index.equals(offline.index)
    assert list(log.columns) == list(COLUMNS)
    assert dict(log.dtypes.astype(str)) == dict(offline.dtypes.astype(str))
    for column in COLUMNS:
        left, right = log[column].to_numpy(), offline[column].to_numpy()
        if right.dtype.kind == "f":
            np.testing.assert_allclose(left, right, rtol=1e-9, atol=1e-9, err_msg=column)
        else:
            np.testing.assert_array_equal(left, right, err_msg=column)


@pytest.fixture(scope="module")
def replayed(cluster_settings):
    """A 40-day history replayed, and its features computed by the streaming app."""
    settings = cluster_settings
    fresh_topics(settings, PIPELINE_TOPICS)
    register_all(settings)
    sim = simulate(SimulationParams(n_customers=200, n_terminals=400, n_days=40, seed=8))
    publish_reference(settings, sim)
    assert replay(settings, sim, progress=False).ok
    with FeatureRun(settings, windows=False) as app:
        app.wait_for("features", len(sim.transactions), timeout=600)
    return settings, sim


def test_the_log_gives_the_offline_training_set_and_rebuilds_it_identically(replayed) -> None:
    settings, sim = replayed
    offline = training_set(sim)
    first = read_log(settings)
    assert first.feature_records == len(sim.transactions)
    assert first.duplicates == 0 and first.unreadable == 0
    _assert_same(first.frame, offline)
    # The rebuild: read again from offset 0, the same frame to the bit.
    pd.testing.assert_frame_equal(training_set_from_log(settings), first.frame, check_exact=True)


def test_reading_from_a_timestamp_gives_exactly_the_later_rows(replayed) -> None:
    settings, sim = replayed
    since = sim.params.start_ms + 20 * MS_PER_DAY + 12 * 3_600_000  # mid-day: a partial day
    later = read_log(settings, since_ms=since)
    offline = training_set(sim)
    expected = offline[offline["event_time_ms"] >= since]
    assert 0 < len(expected) < len(offline)
    _assert_same(later.frame, expected)
    # The start offsets skipped what was certainly older: less than the whole topic.
    assert later.features.records < read_log(settings).features.records


def test_a_cutoff_hides_labels_that_arrived_after_it(replayed) -> None:
    settings, sim = replayed
    cutoff = sim.params.start_ms + 30 * MS_PER_DAY
    read = read_log(settings, cutoff_ms=cutoff)
    _assert_same(read.frame, training_set(sim, cutoff_ms=cutoff))
    assert read.labels_after_cutoff == int((sim.labels["label_time_ms"] > cutoff).sum()) > 0
    assert (read.frame["label_time_ms"] <= cutoff).all()
