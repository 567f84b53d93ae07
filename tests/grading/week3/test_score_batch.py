"""Grading: week 3, score_batch (labs/week3/batching.py)."""

import numpy as np
import pytest

from rtml.impl import exercise

pytestmark = pytest.mark.grading


class Model:
    """A stand-in model that records its calls: the score of a row is its first column / 10."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        assert not np.isnan(rows).any(), "the model was given an invalid row"
        self.calls.append(rows.copy())
        return rows[:, 0].astype(np.float64) / 10


def test_the_docstring_example():
    """Rows [[1], [2], [3]] with the middle one invalid: one call on [[1], [3]], NaN between."""
    model = Model()
    rows = np.array([[1.0], [np.nan], [3.0]], dtype=np.float32)
    out = exercise("score_batch")(model, rows, np.array([True, False, True]))
    assert len(model.calls) == 1 and model.calls[0].tolist() == [[1.0], [3.0]]
    assert out[0] == pytest.approx(0.1) and np.isnan(out[1]) and out[2] == pytest.approx(0.3)


def test_one_call_for_a_whole_batch():
    """500 valid rows are scored in exactly one model call, scores in the rows' order."""
    model = Model()
    rows = np.arange(1000, dtype=np.float32).reshape(500, 2)
    out = exercise("score_batch")(model, rows, np.ones(500, dtype=bool))
    assert len(model.calls) == 1 and model.calls[0].shape == (500, 2)
    np.testing.assert_allclose(out, rows[:, 0] / 10, rtol=1e-6)


def test_a_float64_array_with_one_score_per_row():
    """The result is a float64 numpy array of the batch's length, invalid rows NaN."""
    rows = np.array([[5.0, 1.0], [np.inf, 0.0], [2.0, 2.0], [np.nan, 1.0]], dtype=np.float32)
    valid = np.array([True, False, True, False])
    out = exercise("score_batch")(Model(), rows, valid)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (4,)
    assert np.isnan(out[~valid]).all() and np.isfinite(out[valid]).all()


def test_no_valid_row_makes_no_call():
    """A batch with no valid row: no model call, every score NaN."""
    model = Model()
    rows = np.full((3, 2), np.nan, dtype=np.float32)
    out = exercise("score_batch")(model, rows, np.zeros(3, dtype=bool))
    assert model.calls == [] and out.shape == (3,) and np.isnan(out).all()


def test_valid_rows_keep_their_order_on_random_batches():
    """On random batches and masks, each valid row gets its own score, invalid rows NaN."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        rows = rng.uniform(0, 10, (n, 3)).astype(np.float32)
        valid = rng.random(n) < 0.7
        rows[~valid] = np.nan
        model = Model()
        out = exercise("score_batch")(model, rows, valid)
        assert len(model.calls) == (1 if valid.any() else 0)
        np.testing.assert_allclose(out[valid], rows[valid, 0] / 10, rtol=1e-6)
        assert np.isnan(out[~valid]).all()
