"""The models learn something real: well above chance on a later window, and no better than
chance when the labels carry no information."""

from __future__ import annotations

import numpy as np
import pytest

from rtml.model.dataset import training_set
from rtml.model.train import FOREST, LOGREG, time_split, train_candidates
from rtml.simulate import SimulationParams, simulate


@pytest.fixture(scope="module")
def history():
    sim = simulate(SimulationParams(n_customers=600, n_terminals=1200, n_days=50, seed=3))
    frame = training_set(sim)
    return frame, time_split(frame, train_days=14, test_days=7)


def test_both_models_beat_chance_by_a_wide_margin(history) -> None:
    frame, split = history
    candidates, _, test = train_candidates(frame, split)
    rate = test["tx_fraud"].mean()
    assert 0 < rate < 0.2, "the test window needs frauds and a clear majority of genuine ones"
    for c in candidates:
        assert c.kind in (LOGREG, FOREST)
        assert c.metrics["roc_auc"] > 0.8, c
        assert c.metrics["average_precision"] > 4 * rate, c
        # A random ranking checks cards in proportion to the fraud rate; the model does better.
        assert c.metrics["card_precision_at_100"] > 0.05, c


def test_a_forest_trained_on_shuffled_labels_is_no_better_than_chance(history) -> None:
    """The same pipeline, with labels that say nothing, must fail the bars above: the
    metrics measure what the features tell about fraud, not an artefact of the split."""
    frame, split = history
    noise = frame.copy()
    noise["tx_fraud"] = np.random.default_rng(0).permutation(noise["tx_fraud"].to_numpy())
    candidates, _, test = train_candidates(noise, split, kinds=[FOREST])
    auc = candidates[0].metrics["roc_auc"]
    assert 0.4 < auc < 0.6
    assert candidates[0].metrics["average_precision"] < 2 * test["tx_fraud"].mean()
