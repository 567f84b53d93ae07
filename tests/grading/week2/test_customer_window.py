"""Grading: week 2, customer_window (labs/week2/windows.py)."""

import numpy as np
import pytest

from rtml.features.batch import batch_features
from rtml.impl import exercise
from rtml.simulate import SimulationParams, simulate

pytestmark = pytest.mark.grading
DAY = 86_400_000


def test_the_current_transaction_is_in_every_window():
    """A customer's first transaction: one transaction in the window, its own amount."""
    window = exercise("customer_window")
    for days in (1, 7, 30):
        assert window([5 * DAY], [42.0], 5 * DAY, days) == (1, 42.0)


def test_the_window_start_is_open():
    """(now - 1 day, now]: a transaction exactly one day old is outside the 1-day window."""
    window = exercise("customer_window")
    assert window([0, DAY], [10.0, 30.0], DAY, 1) == (1, 30.0)
    assert window([1, DAY], [10.0, 30.0], DAY, 1) == (2, 20.0)


def test_longer_windows_reach_further_back():
    """7 and 30 days see transactions the 1-day window does not."""
    window = exercise("customer_window")
    times = [0, 10 * DAY, 25 * DAY, 29 * DAY, 30 * DAY]
    amounts = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert window(times, amounts, 30 * DAY, 1) == (1, 5.0)
    assert window(times, amounts, 30 * DAY, 7) == (3, 4.0)
    assert window(times, amounts, 30 * DAY, 30) == (4, 3.5)


def test_matches_the_batch_features_on_a_history():
    """Replayed over a simulated month, every customer feature equals the pandas reference."""
    window = exercise("customer_window")
    sim = simulate(SimulationParams(n_customers=30, n_terminals=60, n_days=40, seed=5))
    batch = batch_features(sim.transactions, sim.labels)
    history: dict[int, tuple[list[int], list[float]]] = {}
    txs = sim.transactions.sort_values(["event_time_ms", "transaction_id"])
    for tx_id, customer, t, amount in txs[
        ["transaction_id", "customer_id", "event_time_ms", "tx_amount"]
    ].itertuples(index=False):
        times, amounts = history.setdefault(customer, ([], []))
        times.append(t)
        amounts.append(amount)
        for days in (1, 7, 30):
            count, mean = window(times, amounts, t, days)
            assert count == batch.at[tx_id, f"customer_nb_tx_{days}d"]
            assert np.isclose(mean, batch.at[tx_id, f"customer_avg_amount_{days}d"], rtol=1e-9)
