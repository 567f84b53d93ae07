"""Messages per second from end offsets: the rate logic, without a broker."""

import pytest

from rtml.observe.throughput import OffsetSample, ThroughputError, ThroughputTracker, rates


def test_rate_is_records_appended_per_second():
    earlier = OffsetSample(100.0, {"transactions": 1_000, "labels": 50})
    later = OffsetSample(102.5, {"transactions": 1_050, "labels": 50})
    assert rates(earlier, later) == {"transactions": 20.0, "labels": 0.0}


def test_topics_missing_from_either_sample_get_no_rate():
    earlier = OffsetSample(0.0, {"transactions": 10, "gone": 5})
    later = OffsetSample(1.0, {"transactions": 30, "new": 7})
    assert rates(earlier, later) == {"transactions": 20.0}


def test_a_recreated_topic_has_an_unknown_rate_not_a_negative_one():
    earlier = OffsetSample(0.0, {"transactions": 500, "labels": 10})
    later = OffsetSample(1.0, {"transactions": 3, "labels": 12})
    assert rates(earlier, later) == {"labels": 2.0}


@pytest.mark.parametrize("later_time", [10.0, 9.0])
def test_no_time_between_samples_gives_no_rates(later_time):
    assert rates(OffsetSample(10.0, {"t": 1}), OffsetSample(later_time, {"t": 5})) == {}


def test_tracker_needs_two_samples_for_a_rate():
    tracker = ThroughputTracker()
    tracker.add(OffsetSample(0.0, {"transactions": 0}))
    assert tracker.latest() == {}
    assert tracker.totals() == {"transactions": 0}
    assert tracker.history().empty
    tracker.add(OffsetSample(2.0, {"transactions": 40}))
    assert tracker.latest() == {"transactions": 20.0}
    assert tracker.totals() == {"transactions": 40}


def test_tracker_history_is_bounded_and_in_time_order():
    tracker = ThroughputTracker(maxlen=5)
    for i in range(20):
        tracker.add(OffsetSample(float(i), {"transactions": i * 10}))
    assert [s.timestamp for s in tracker.samples] == [15.0, 16.0, 17.0, 18.0, 19.0]
    history = tracker.history()
    assert len(history) == 4  # 5 samples, 4 intervals
    assert list(history["rate"]) == [10.0] * 4
    assert history["time"].is_monotonic_increasing
    assert str(history["time"].dt.tz) == "UTC"


def test_out_of_order_samples_are_ignored():
    tracker = ThroughputTracker()
    tracker.add(OffsetSample(5.0, {"t": 50}))
    tracker.add(OffsetSample(4.0, {"t": 10}))
    assert len(tracker.samples) == 1


def test_history_shows_only_topics_that_moved_unless_asked():
    tracker = ThroughputTracker()
    tracker.add(OffsetSample(0.0, {"transactions": 0, "labels": 0, "features": 7}))
    tracker.add(OffsetSample(1.0, {"transactions": 20, "labels": 0, "features": 7}))
    tracker.add(OffsetSample(2.0, {"transactions": 40, "labels": 20, "features": 7}))
    assert set(tracker.history()["topic"]) == {"transactions", "labels"}
    assert set(tracker.history(active_only=False)["topic"]) == {
        "transactions",
        "labels",
        "features",
    }
    labels = tracker.history().query("topic == 'labels'")
    assert list(labels["rate"]) == [0.0, 20.0]


def test_a_tracker_of_one_sample_is_refused():
    with pytest.raises(ThroughputError, match="maxlen must be 2 or more"):
        ThroughputTracker(maxlen=1)
