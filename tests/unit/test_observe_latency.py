"""Latency histograms without a broker: percentiles, clamping, windows, merging, encoding."""

import math

import numpy as np
import pytest

from rtml.observe.latency import (
    MEASURES,
    PERCENTILES,
    Histogram,
    LatencyError,
    LatencyHistograms,
    LatencySnapshot,
    measures_us,
    render,
)

# HDR with 3 significant digits: a value is within 0.1% of the one recorded (+1 µs rounding).
REL = 1e-3


def _close(hdr_ms: float, exact_ms: float) -> bool:
    return abs(hdr_ms - exact_ms) <= exact_ms * REL + 0.001


def test_percentiles_match_numpy_within_hdr_precision():
    rng = np.random.default_rng(7)
    values_us = np.round(rng.lognormal(mean=9.5, sigma=0.8, size=20_000)).astype(np.int64)
    h = Histogram()
    for v in values_us:
        h.record(int(v))
    assert h.count == values_us.size
    for p in PERCENTILES:
        # HdrHistogram answers the nearest rank, numpy's "inverted_cdf" method.
        exact = np.percentile(values_us, p, method="inverted_cdf") / 1000
        assert _close(h.percentile_ms(p), exact), (p, h.percentile_ms(p), exact)
    assert _close(h.max_ms(), values_us.max() / 1000)
    buckets = h.buckets()
    assert buckets["count"].sum() == values_us.size


def test_out_of_range_values_are_clamped_and_counted():
    h = Histogram()
    for v in (-5_000, 1_000, 90_000_000):
        h.record(v)
    assert (h.count, h.below, h.above) == (3, 1, 1)
    assert h.max_ms() == pytest.approx(60_000, rel=REL)
    assert math.isnan(Histogram().percentile_ms(50))


def test_the_three_measures_come_from_the_stage_timestamps():
    assert measures_us(1_000, 1_004, 1_010) == {
        "freshness": 4_000,
        "event_to_prediction": 10_000,
        "scoring": 6_000,
    }


def _fill(hist: LatencyHistograms, start_ms: int, n: int, step_ms: int, lat_ms: int) -> None:
    """n predictions, one every step_ms from start_ms, each lat_ms after its transaction."""
    for i in range(n):
        predicted = start_ms + i * step_ms
        hist.record(predicted - lat_ms, predicted - lat_ms // 2, predicted)


def test_a_window_merges_only_its_seconds_and_old_seconds_are_dropped():
    hist = LatencyHistograms(keep_s=5)
    base = 1_700_000_000_000
    _fill(hist, base, 100, 10, lat_ms=20)  # second 0: 100 records at 20 ms
    _fill(hist, base + 1_000, 100, 10, lat_ms=40)  # second 1: 100 records at 40 ms
    last = hist.window(1)
    assert last.histograms["event_to_prediction"].count == 100
    assert last.histograms["event_to_prediction"].max_ms() == pytest.approx(40, rel=REL)
    both = hist.window(2)
    assert both.histograms["event_to_prediction"].count == 200
    assert both.histograms["event_to_prediction"].percentile_ms(50) == pytest.approx(20, rel=REL)
    assert (both.start_ms, both.end_ms) == (base, base + 2_000)
    # Ten seconds later the first two seconds leave the windows but stay in the total.
    _fill(hist, base + 10_000, 10, 10, lat_ms=5)
    assert sorted(hist.seconds) == [base // 1000 + 10]
    assert hist.window(5).histograms["freshness"].count == 10
    assert hist.snapshot().histograms["freshness"].count == 210
    assert hist.records == 210
    # A window ending at "now" with nothing recorded since is empty, not stale.
    assert hist.window(5, now_ms=base + 60_000).histograms["scoring"].count == 0
    with pytest.raises(LatencyError):
        hist.window(6)


def test_snapshots_merge_like_one_histogram_of_all_values():
    a, b, both = LatencyHistograms(), LatencyHistograms(), LatencyHistograms()
    base = 1_700_000_000_000
    _fill(a, base, 300, 3, lat_ms=12)
    _fill(b, base + 500, 300, 3, lat_ms=70)
    _fill(both, base, 300, 3, lat_ms=12)
    _fill(both, base + 500, 300, 3, lat_ms=70)
    merged = a.snapshot().merge(b.snapshot())
    assert merged.table().equals(both.snapshot().table())
    assert (merged.start_ms, merged.end_ms) == (base, both.snapshot().end_ms)


def test_a_snapshot_survives_its_file(tmp_path):
    hist = LatencyHistograms()
    _fill(hist, 1_700_000_000_000, 500, 2, lat_ms=33)
    hist.record(1_000, 900, 1_100)  # freshness below 0: clamped
    path = tmp_path / "latency.json"
    hist.snapshot().write(path)
    back = LatencySnapshot.read(path)
    assert back.table().equals(hist.snapshot().table())
    assert back.histograms["freshness"].below == 1
    assert set(back.histograms) == set(MEASURES)
    assert "event_to_prediction" in render(back, "since start")


def test_a_missing_or_broken_snapshot_file_is_one_sentence(tmp_path):
    with pytest.raises(LatencyError, match="No latency snapshot"):
        LatencySnapshot.read(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LatencyError, match="malformed"):
        LatencySnapshot.read(tmp_path / "bad.json")
