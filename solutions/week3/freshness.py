"""Week 3 reference: feature freshness, event-to-prediction latency and scoring time."""

from __future__ import annotations


def latency_measures(appended_ms: int, feature_ms: int, predicted_ms: int) -> dict[str, int]:
    """The three measures of one prediction, in µs, from its timestamps in ms."""
    return {
        "freshness": (feature_ms - appended_ms) * 1000,
        "event_to_prediction": (predicted_ms - appended_ms) * 1000,
        "scoring": (predicted_ms - feature_ms) * 1000,
    }
