"""Week 3 exercise: how fresh are the features, and how long until a prediction?

Every prediction record carries the timestamps of the stages its transaction went through:

- `appended_ms`: when the transaction was appended to Kafka (its record timestamp);
- `feature_ms`: when the feature app had its features ready;
- `predicted_ms`: when the prediction was appended to `predictions` (that record's own
  Kafka timestamp).

Three measures follow from them, and `rtml.observe.latency` records them per prediction in
HDR histograms (the notebook's histograms, `rtml observe latency`, the control room):

- **freshness**: how old the transaction is when its features are ready;
- **event_to_prediction**: the design's "prediction within 100 ms", from the transaction
  being appended to its prediction being appended;
- **scoring**: what the prediction service adds, from features ready to prediction.

The histograms hold microseconds (so stages that stamp finer times fit too); Kafka's
timestamps are milliseconds.
"""

from __future__ import annotations


def latency_measures(appended_ms: int, feature_ms: int, predicted_ms: int) -> dict[str, int]:
    """Return {"freshness": ..., "event_to_prediction": ..., "scoring": ...} in whole µs.

    Each is a later timestamp minus an earlier one (see the module docstring for which),
    converted from ms to µs. Example: appended 1_000, features ready 1_004, predicted 1_010
    -> freshness 4_000, event_to_prediction 10_000, scoring 6_000.

    Think about:
    - Which pairs of timestamps: freshness and scoring add up to event_to_prediction.
    - Units: the inputs are ms, the histograms want µs, as int (not float).
    - Two machines' clocks can disagree, so a measure can come out negative: return it as
      it is; the histogram clamps it to 0 and counts it, so the skew is visible.
    """
    raise NotImplementedError(
        "TODO week 3: subtract the right timestamps for each measure and convert ms to µs"
    )
