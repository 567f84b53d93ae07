"""Comparing the stream's features with the batch reference, column by column."""

import math

import numpy as np
import pandas as pd
import pytest

from rtml.features.errors import FeatureError
from rtml.features.outputs import differences


def _batch() -> pd.DataFrame:
    return pd.DataFrame(
        {"count": [1, 2, 3], "mean": [1.0, 2.5, np.nan]},
        index=pd.Index([10, 11, 12], name="transaction_id"),
    )


def test_equal_features_differ_by_zero():
    stream = _batch().reset_index().iloc[::-1]  # order does not matter
    gaps = differences(stream, _batch(), ["count", "mean"])
    assert gaps.to_dict() == {"count": 0.0, "mean": 0.0}


def test_the_largest_absolute_difference_per_column():
    stream = _batch().reset_index()
    stream.loc[1, "mean"] = 2.5 + 1e-12
    stream.loc[0, "count"] = 4
    gaps = differences(stream, _batch(), ["count", "mean"])
    assert gaps["count"] == 3.0
    assert gaps["mean"] == pytest.approx(1e-12, rel=1e-3)


def test_a_value_missing_on_one_side_only_is_infinitely_different():
    stream = _batch().reset_index()
    stream.loc[0, "mean"] = np.nan
    assert math.isinf(differences(stream, _batch(), ["mean"])["mean"])


def test_duplicates_from_a_replay_count_once_and_unknown_ids_are_ignored():
    stream = pd.concat([_batch().reset_index()] * 2, ignore_index=True)
    stream.loc[len(stream)] = {"transaction_id": 99, "count": 7, "mean": 1.0}
    assert differences(stream, _batch(), ["count"])["count"] == 0.0


def test_no_transaction_in_common_is_an_error():
    stream = pd.DataFrame({"transaction_id": [1], "count": [1], "mean": [1.0]})
    with pytest.raises(FeatureError, match="share no transaction id"):
        differences(stream, _batch(), ["count"])
