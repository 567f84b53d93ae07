"""How late each record arrived, per key, and what a grace period drops."""

import pytest

from rtml.features.errors import FeatureError
from rtml.features.lateness import arrival_delays, dropped


def test_records_in_order_have_no_delay():
    assert arrival_delays(["a", "a", "a"], [1, 5, 5]) == [0, 0, 0]


def test_delay_is_behind_the_latest_time_of_the_same_key():
    # b's record at 3 is behind b's latest (9), not behind a's; a's latest stays 10.
    keys = ["a", "b", "a", "b", "a"]
    times = [10, 9, 4, 3, 12]
    assert arrival_delays(keys, times) == [0, 0, 6, 6, 0]


def test_a_late_record_does_not_move_its_key_back():
    # After 100 then 40, the latest is still 100: a record at 70 is 30 behind.
    assert arrival_delays([1, 1, 1], [100, 40, 70]) == [0, 60, 30]


def test_grace_drops_the_records_strictly_behind_it():
    delays = [0, 60, 30, 30]
    assert dropped(delays, 30) == 1
    assert dropped(delays, 29) == 3
    assert dropped(delays, 60) == 0


def test_keys_and_times_must_pair_up():
    with pytest.raises(FeatureError, match="one of each per record"):
        arrival_delays(["a"], [1, 2])
