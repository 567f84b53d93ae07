"""The live simulator's lap bookkeeping: a new run starts past every lap used before."""

from collections import deque

import pytest

from rtml.config import Settings
from rtml.simulate import SimulationParams, laps, simulate
from rtml.simulate.errors import SimulatorError
from rtml.simulate.producer import _live_messages


@pytest.fixture()
def settings(tmp_path):
    return Settings(home=tmp_path)


def test_a_new_cluster_starts_at_lap_zero_and_each_used_lap_moves_it_on(settings):
    assert laps.next_free(settings) == 0
    laps.mark_used(settings, 0)
    assert laps.next_free(settings) == 1
    laps.mark_used(settings, 4)
    assert laps.next_free(settings) == 5
    laps.mark_used(settings, 2)  # an older run still looping never moves it back
    assert laps.next_free(settings) == 5


def test_a_damaged_file_is_one_sentence(settings):
    laps.laps_file(settings).parent.mkdir(parents=True)
    laps.laps_file(settings).write_text("five")
    with pytest.raises(SimulatorError, match="should hold a lap number"):
        laps.next_free(settings)


def test_each_lap_is_announced_before_its_first_record():
    txs = simulate(SimulationParams(n_customers=5, n_terminals=20, n_days=2, seed=1)).transactions
    txs = txs.sort_values("event_time_ms")
    told: list[int] = []
    stream = _live_messages(
        txs,
        {"transactions": lambda record: b"v"},
        lambda record: b"k",
        rate=1_000_000,
        duration=None,
        label_delay=None,
        pending=deque(),
        first_lap=3,
        on_lap=told.append,
    )
    seen = [told[-1] for _ in range(len(txs) + 1) if next(stream)]
    assert told == [3, 4]
    assert seen == [3] * len(txs) + [4]
