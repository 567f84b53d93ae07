"""Grading: week 3, labels_known_at (labs/week3/point_in_time.py)."""

import numpy as np
import pytest

from rtml.impl import exercise

pytestmark = pytest.mark.grading


def test_the_docstring_example():
    """Label times [100, 200, 300] at cutoff 200: the first two are known, the third is not."""
    mask = exercise("labels_known_at")(np.array([100, 200, 300]), 200)
    assert mask.tolist() == [True, True, False]


def test_a_boolean_array_in_the_labels_order():
    """The mask is a numpy bool array with one entry per label, in the labels' order."""
    times = np.array([500, 100, 900, 300, 700])
    mask = exercise("labels_known_at")(times, 400)
    assert isinstance(mask, np.ndarray) and mask.dtype == bool
    assert mask.tolist() == [False, True, False, True, False]


def test_a_label_stamped_at_the_cutoff_is_known():
    """The cutoff is inclusive: a label that arrived exactly at the cutoff may be used."""
    assert exercise("labels_known_at")(np.array([1_000, 1_001]), 1_000).tolist() == [True, False]


def test_no_cutoff_uses_every_label():
    """cutoff None means every label, however late it arrived."""
    mask = exercise("labels_known_at")(np.array([1, 10**12, 5]), None)
    assert mask.dtype == bool and mask.tolist() == [True, True, True]


def test_no_labels_gives_an_empty_mask():
    """No labels at all is not an error: an empty boolean mask."""
    for cutoff in (0, None):
        mask = exercise("labels_known_at")(np.array([], dtype=np.int64), cutoff)
        assert mask.dtype == bool and mask.shape == (0,)


def test_it_selects_a_frame_like_the_training_set_does():
    """Used as a pandas mask, it keeps exactly the labels that arrived by the cutoff."""
    import pandas as pd

    rng = np.random.default_rng(3)
    labels = pd.DataFrame({"label_time_ms": rng.integers(0, 10**9, 10_000)})
    cutoff = int(labels["label_time_ms"].median())
    kept = labels[exercise("labels_known_at")(labels["label_time_ms"].to_numpy(), cutoff)]
    assert len(kept) == int((labels["label_time_ms"] <= cutoff).sum())
    assert (kept["label_time_ms"] <= cutoff).all()
