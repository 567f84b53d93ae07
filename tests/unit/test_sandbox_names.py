"""Sandbox names and the sameness of two prediction runs: pure logic, no broker."""

import pandas as pd
import pytest

from rtml.ops.sandbox import SandboxError, identical, topic_of


def test_names_become_sandbox_topics_and_predictions_stays_itself():
    assert topic_of("candidate-2") == "predictions.sandbox-candidate-2"
    assert topic_of("predictions.sandbox-x") == "predictions.sandbox-x"
    assert topic_of("predictions") == topic_of("live") == "predictions"


@pytest.mark.parametrize("bad", ["", "Big", "a b", "x;rm", "a" * 41, "-x"])
def test_a_bad_name_is_one_sentence(bad):
    with pytest.raises(SandboxError, match="is not a sandbox name"):
        topic_of(bad)


def _run(ids, scores, decisions=None, version="v1"):
    return pd.DataFrame(
        {
            "transaction_id": ids,
            "score": scores,
            "decision": decisions or ["APPROVE"] * len(ids),
            "model_version": [version] * len(ids),
            "predicted_time": range(len(ids)),
        }
    )


def test_identical_ignores_order_and_predicted_time_but_nothing_else():
    a = _run([1, 2, 3], [0.1, 0.2, 0.3])
    b = _run([3, 1, 2], [0.3, 0.1, 0.2]).assign(predicted_time=99)
    assert identical(a, b)
    assert not identical(a, _run([1, 2, 3], [0.1, 0.2, 0.30001]))
    assert not identical(a, _run([1, 2, 3], [0.1, 0.2, 0.3], version="v2"))
    assert not identical(a, _run([1, 2], [0.1, 0.2]))
    assert not identical(a, _run([1, 2, 3, 3], [0.1, 0.2, 0.3, 0.3]))
    assert not identical(a, _run([1, 2, 3], [0.1, 0.2, 0.3], ["APPROVE", "REVIEW", "APPROVE"]))
