"""`FeatureRun` on the live cluster: runs the app to a record count, stops it, cleans up.

Also reads the run's outputs back (`rtml.features.outputs`) and compares them with the
batch features, the way the week 2 notebook does.
"""

from __future__ import annotations

import uuid

import pytest

from rtml.features.batch import batch_features
from rtml.features.definitions import FEATURE_COLUMNS
from rtml.features.errors import FeatureError
from rtml.features.outputs import differences, read_features, read_records
from rtml.features.runner import (
    FeatureRun,
    count_records,
    fresh_topics,
    internal_topics,
    remove_group,
    state_dir,
)
from rtml.schemas import register_all
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.producer import publish_reference, replay


@pytest.fixture(scope="module")
def small_history(cluster_settings):
    settings = cluster_settings
    fresh_topics(settings)
    assert count_records(settings, "features") == 0
    register_all(settings)
    sim = simulate(SimulationParams(n_customers=15, n_terminals=30, n_days=12, seed=4))
    publish_reference(settings, sim)
    assert replay(settings, sim, progress=False).ok
    return settings, sim


def test_runs_until_the_features_are_written_then_stops_and_cleans_up(small_history):
    settings, sim = small_history
    n = len(sim.transactions)
    group = f"runner-{uuid.uuid4().hex[:6]}"
    with FeatureRun(settings, group=group, grace_ms=5000) as run:
        took = run.wait_for("features", n, timeout=600)
        assert run.running
    assert took > 0
    assert not run.running and run.proc is not None
    assert run.proc.returncode == 0, run.output()
    assert "features" in run.output()

    stream = read_features(settings)
    assert len(stream) == n and stream["transaction_id"].is_unique
    batch = batch_features(sim.transactions, sim.labels, sim.customers, sim.terminals)
    gaps = differences(stream, batch, [*FEATURE_COLUMNS, "terminal_distance"])
    assert gaps.max() < 1e-9, gaps
    assert read_records(settings, "transactions.late") == []

    made = internal_topics(settings, group)
    assert any(t.startswith("changelog__") for t in made)
    assert any(t.startswith("repartition__") for t in made)
    assert state_dir(settings, group).is_dir()
    assert sorted(remove_group(settings, group)) == made
    assert internal_topics(settings, group) == []
    assert not state_dir(settings, group).exists()
    assert not run.log.exists()


def test_a_run_that_cannot_reach_its_count_times_out_and_still_stops(small_history):
    settings, sim = small_history
    group = f"runner-{uuid.uuid4().hex[:6]}"
    with (
        FeatureRun(settings, group=group, windows=False) as run,
        pytest.raises(FeatureError, match="too slow or stuck"),
    ):
        run.wait_for("features", len(sim.transactions) + 10_000, timeout=5)
    assert not run.running
    remove_group(settings, group)
