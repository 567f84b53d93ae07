"""The transaction simulator's pure core: profiles, transactions, fraud scenarios, labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from rtml.errors import RtmlError
from rtml.simulate import (
    LABEL_COLUMNS,
    TRANSACTION_COLUMNS,
    SimulationParams,
    SimulatorError,
    add_frauds,
    draw_compromised_customers,
    draw_compromised_terminals,
    generate_customer_profiles,
    generate_terminal_profiles,
    generate_transactions,
    make_labels,
    simulate,
    terminals_within_radius,
)
from rtml.simulate import profiles as profiles_module

pytestmark = pytest.mark.unit

# Small enough to run in milliseconds, large enough that every customer has terminals
# nearby (radius 10 on a 100 x 100 grid with 100 terminals: about 3 each on average).
SMALL = SimulationParams(n_customers=50, n_terminals=100, n_days=7, radius=10.0, seed=3)


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL)


@pytest.fixture(scope="module")
def medium():
    """About 30,000 transactions: enough for every scenario to show up."""
    return simulate(SimulationParams(n_customers=500, n_terminals=1000, n_days=30, seed=0))


def _tables(sim):
    return (
        sim.customers,
        sim.terminals,
        sim.transactions,
        sim.labels,
        sim.compromised_terminals,
        sim.compromised_customers,
    )


# --- determinism -----------------------------------------------------------------------


def test_same_params_give_identical_tables(small):
    again = simulate(SMALL)
    for ours, theirs in zip(_tables(small), _tables(again), strict=True):
        pdt.assert_frame_equal(ours, theirs, check_exact=True)
    # Byte-identical, column by column, not just equal within a tolerance.
    for column in TRANSACTION_COLUMNS:
        ours, theirs = small.transactions[column], again.transactions[column]
        assert ours.to_numpy().tobytes() == theirs.to_numpy().tobytes(), column


def test_different_seed_gives_different_history(small):
    other = simulate(SimulationParams(**{**SMALL.__dict__, "seed": SMALL.seed + 1}))
    assert not small.customers[["x", "y"]].equals(other.customers[["x", "y"]])
    assert not small.transactions.equals(other.transactions)


def test_simulation_does_not_touch_global_random_state():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    simulate(SMALL)
    assert np.array_equal(np.random.get_state()[1], before)


# --- shapes and dtypes -----------------------------------------------------------------


def test_transaction_columns_and_dtypes(small):
    tx = small.transactions
    assert tuple(tx.columns) == TRANSACTION_COLUMNS
    assert tx.dtypes.astype(str).to_dict() == {
        "transaction_id": "int64",
        "tx_datetime": "datetime64[ms]",
        "event_time_ms": "int64",
        "customer_id": "int64",
        "terminal_id": "int64",
        "tx_amount": "float64",
        "tx_time_seconds": "int64",
        "tx_time_days": "int64",
        "tx_fraud": "int64",
        "tx_fraud_scenario": "int64",
    }
    assert 200 < len(tx) < 1000  # "a few hundred" at this size


def test_label_columns_and_dtypes(small):
    assert tuple(small.labels.columns) == LABEL_COLUMNS
    assert set(small.labels.dtypes.astype(str)) == {"int64"}


def test_profiles_follow_the_handbook_distributions(medium):
    c, t = medium.customers, medium.terminals
    assert c["customer_id"].tolist() == list(range(500))
    assert t["terminal_id"].tolist() == list(range(1000))
    for frame in (c, t):
        assert frame["x"].between(0, 100).all() and frame["y"].between(0, 100).all()
    assert c["mean_amount"].between(5, 100).all()
    assert np.array_equal(c["std_amount"], c["mean_amount"] / 2)
    assert c["mean_nb_tx_per_day"].between(0, 4).all()
    # Uniform draws: the sample means are near the middle of each range.
    assert c["mean_amount"].mean() == pytest.approx(52.5, abs=5)
    assert c["mean_nb_tx_per_day"].mean() == pytest.approx(2.0, abs=0.3)


# --- time ------------------------------------------------------------------------------


def test_transaction_ids_follow_event_time(small):
    tx = small.transactions
    assert np.array_equal(tx["transaction_id"], np.arange(len(tx)))
    assert tx["event_time_ms"].is_monotonic_increasing
    assert tx.index.equals(pd.RangeIndex(len(tx)))


def test_times_agree_with_each_other(small):
    tx = small.transactions
    start_ms = int(pd.Timestamp("2018-04-01").value // 1_000_000)
    assert np.array_equal(tx["event_time_ms"], start_ms + tx["tx_time_seconds"] * 1000)
    assert np.array_equal(tx["tx_datetime"].astype("int64"), tx["event_time_ms"])
    assert np.array_equal(tx["tx_time_days"], tx["tx_time_seconds"] // 86_400)
    assert tx["tx_time_days"].between(0, SMALL.n_days - 1).all()
    assert tx["tx_datetime"].min() >= pd.Timestamp("2018-04-01")
    assert tx["tx_datetime"].max() < pd.Timestamp("2018-04-08")


def test_time_of_day_centres_on_noon(medium):
    seconds_of_day = medium.transactions["tx_time_seconds"] % 86_400
    assert seconds_of_day.mean() == pytest.approx(43_200, abs=600)
    # Normal(noon, 20,000 s) truncated to one day has a spread of about 17,000 s.
    assert 15_000 < seconds_of_day.std() < 19_000


# --- where customers pay ---------------------------------------------------------------


def test_every_terminal_used_is_within_radius(small):
    tx = small.transactions.merge(small.customers, on="customer_id").merge(
        small.terminals, on="terminal_id", suffixes=("_c", "_t")
    )
    assert len(tx) == len(small.transactions)
    distance = np.hypot(tx["x_c"] - tx["x_t"], tx["y_c"] - tx["y_t"])
    assert (distance < SMALL.radius).all()


def test_terminals_within_radius_matches_brute_force(monkeypatch):
    rng = np.random.Generator(np.random.PCG64(7))
    customers = generate_customer_profiles(40, rng)
    terminals = generate_terminal_profiles(300, rng)
    # A tiny chunk makes the blocked computation cross many block boundaries.
    monkeypatch.setattr(profiles_module, "_PAIRS_PER_CHUNK", 700)
    got = terminals_within_radius(customers, terminals, 8.0)
    expected = [
        (c.customer_id, t.terminal_id)
        for c in customers.itertuples()
        for t in terminals.itertuples()
        if ((c.x - t.x) ** 2 + (c.y - t.y) ** 2) ** 0.5 < 8.0
    ]
    assert len(expected) > 100
    assert list(zip(got["customer_id"], got["terminal_id"], strict=True)) == expected
    assert (got["distance"] < 8.0).all()


def test_customers_without_terminals_make_no_transactions():
    sim = simulate(SimulationParams(n_customers=60, n_terminals=20, n_days=5, radius=5.0))
    lonely = sim.customers.loc[sim.customers["nb_terminals"] == 0, "customer_id"]
    assert len(lonely) > 0
    assert not sim.transactions["customer_id"].isin(lonely).any()
    assert len(sim.transactions) > 0


def test_an_empty_history_keeps_its_columns():
    sim = simulate(SimulationParams(n_customers=3, n_terminals=1, n_days=2, radius=0.001))
    assert len(sim.transactions) == 0 and len(sim.labels) == 0
    assert tuple(sim.transactions.columns) == TRANSACTION_COLUMNS
    assert str(sim.transactions["tx_datetime"].dtype) == "datetime64[ms]"
    assert sim.fraud_rate == 0.0


def test_amounts_are_non_negative_cents(small):
    raw = _legit(SMALL)
    assert (raw["tx_amount"] >= 0).all()
    assert np.allclose(raw["tx_amount"] * 100, np.round(raw["tx_amount"] * 100))


# --- fraud scenarios -------------------------------------------------------------------


def _steps(params):
    """The same steps as `simulate`, up to the frauds: (legit transactions, rng, profiles)."""
    rng = np.random.Generator(np.random.PCG64(params.seed))
    customers = generate_customer_profiles(params.n_customers, rng)
    terminals = generate_terminal_profiles(params.n_terminals, rng)
    nearby = terminals_within_radius(customers, terminals, params.radius)
    legit = generate_transactions(customers, nearby, params.n_days, params.start_ms, rng)
    return legit, rng, customers, terminals


def _legit(params):
    """The fraud-free transactions `simulate` starts from (the same random draws)."""
    return _steps(params)[0]


def test_the_public_steps_compose_to_simulate(small):
    legit, rng, customers, terminals = _steps(SMALL)
    bad_terminals = draw_compromised_terminals(terminals["terminal_id"], SMALL.n_days, rng)
    bad_customers = draw_compromised_customers(customers["customer_id"], SMALL.n_days, rng)
    pdt.assert_frame_equal(bad_terminals, small.compromised_terminals)
    pdt.assert_frame_equal(bad_customers, small.compromised_customers)
    transactions = add_frauds(legit, bad_terminals, bad_customers, rng)
    pdt.assert_frame_equal(transactions, small.transactions, check_exact=True)
    pdt.assert_frame_equal(make_labels(transactions, 7), small.labels)
    assert (legit["tx_fraud"] == 0).all()  # add_frauds returned a copy


def test_draws_take_every_id_when_there_are_fewer_than_asked():
    drawn = draw_compromised_customers(np.array([4, 9]), 3, np.random.default_rng(0))
    assert drawn.groupby("day")["customer_id"].apply(sorted).tolist() == [[4, 9]] * 3


def _hand_made(rows):
    """Transactions from (customer_id, terminal_id, day, amount) tuples, in that order."""
    frame = pd.DataFrame(rows, columns=["customer_id", "terminal_id", "tx_time_days", "tx_amount"])
    frame.insert(0, "transaction_id", np.arange(len(frame), dtype=np.int64))
    return frame.astype({"tx_amount": "float64"})


def _schedule(column, rows, length):
    frame = pd.DataFrame(rows, columns=["day", column], dtype="int64")
    frame["end_day"] = frame["day"] + length
    return frame


NO_TERMINALS = _schedule("terminal_id", [], 28)
NO_CUSTOMERS = _schedule("customer_id", [], 14)


def test_scenario_1_marks_every_amount_above_220():
    tx = _hand_made([(1, 1, 0, 220.0), (1, 1, 0, 220.01), (2, 2, 3, 999.0), (2, 2, 3, 5.0)])
    out = add_frauds(tx, NO_TERMINALS, NO_CUSTOMERS, np.random.default_rng(0))
    assert out["tx_fraud_scenario"].tolist() == [0, 1, 1, 0]
    assert out["tx_fraud"].tolist() == [0, 1, 1, 0]
    assert out["tx_amount"].tolist() == tx["tx_amount"].tolist()


def test_later_scenarios_override_earlier_ones():
    # Customer 7 pays 300 three times on terminal 9, which is compromised (scenario 2),
    # while customer 7 is compromised too (scenario 3): a third of the three, i.e. one,
    # becomes scenario 3 at 5 x 300; the other two stay scenario 2, not 1. Customer 8's
    # large amount on a clean terminal stays scenario 1.
    tx = _hand_made([(7, 9, 2, 300.0), (7, 9, 3, 300.0), (7, 9, 4, 300.0), (8, 1, 2, 500.0)])
    terminals = _schedule("terminal_id", [(0, 9)], 28)
    customers = _schedule("customer_id", [(1, 7)], 14)
    out = add_frauds(tx, terminals, customers, np.random.default_rng(0))
    scenario = out["tx_fraud_scenario"].tolist()
    assert sorted(scenario[:3]) == [2, 2, 3]
    assert scenario[3] == 1
    assert out.loc[out["tx_fraud_scenario"] == 3, "tx_amount"].tolist() == [1500.0]
    assert out["tx_fraud"].tolist() == [1, 1, 1, 1]


def test_scenario_2_window_is_28_days_from_the_draw():
    tx = _hand_made([(1, 5, d, 10.0) for d in (2, 3, 30, 31)] + [(1, 6, 10, 10.0)])
    terminals = _schedule("terminal_id", [(3, 5)], 28)  # days 3..30
    out = add_frauds(tx, terminals, NO_CUSTOMERS, np.random.default_rng(0))
    assert out["tx_fraud_scenario"].tolist() == [0, 2, 2, 0, 0]


def test_scenario_2_is_exactly_the_compromised_terminal_windows(medium):
    tx, schedule = medium.transactions, medium.compromised_terminals
    expected = np.zeros(len(tx), dtype=bool)
    for row in schedule.itertuples():
        expected |= (
            (tx["terminal_id"] == row.terminal_id)
            & (tx["tx_time_days"] >= row.day)
            & (tx["tx_time_days"] < row.end_day)
        ).to_numpy()
    scenario = tx["tx_fraud_scenario"].to_numpy()
    assert expected.sum() > 100
    # Everything on a compromised terminal in its window is fraud (scenario 3 may override).
    assert np.array_equal(scenario == 2, expected & (scenario != 3))
    assert (tx["tx_fraud"].to_numpy()[expected] == 1).all()


def test_compromise_schedules_follow_the_handbook(medium):
    terminals, customers = medium.compromised_terminals, medium.compromised_customers
    assert terminals.groupby("day")["terminal_id"].nunique().tolist() == [2] * 30
    assert customers.groupby("day")["customer_id"].nunique().tolist() == [3] * 30
    assert ((terminals["end_day"] - terminals["day"]) == 28).all()
    assert ((customers["end_day"] - customers["day"]) == 14).all()
    assert terminals["terminal_id"].isin(medium.terminals["terminal_id"]).all()
    assert customers["customer_id"].isin(medium.customers["customer_id"]).all()


def test_scenario_3_multiplies_a_third_of_one_customers_amounts_by_5():
    params = SimulationParams(n_customers=30, n_terminals=200, n_days=20, radius=10.0)
    legit = _legit(params)
    victim = int(legit["customer_id"].value_counts().index[0])  # the busiest customer
    customers = _schedule("customer_id", [(2, victim)], 14)  # days 2..15
    out = add_frauds(legit, NO_TERMINALS, customers, np.random.default_rng(1))
    in_window = ((legit["customer_id"] == victim) & legit["tx_time_days"].between(2, 15)).to_numpy()
    hit = (out["tx_fraud_scenario"] == 3).to_numpy()
    assert in_window.sum() >= 6
    assert hit.sum() == in_window.sum() // 3
    assert not (hit & ~in_window).any()
    assert np.array_equal(out["tx_amount"][hit], np.round(legit["tx_amount"][hit] * 5, 2))
    assert np.array_equal(out["tx_amount"][~hit], legit["tx_amount"][~hit])


def test_scenario_3_in_a_full_simulation(medium):
    params = SimulationParams(n_customers=500, n_terminals=1000, n_days=30, seed=0)
    legit, tx = _legit(params), medium.transactions
    assert np.array_equal(legit["transaction_id"], tx["transaction_id"])
    hit = (tx["tx_fraud_scenario"] == 3).to_numpy()
    assert hit.sum() > 100
    # Amounts are multiplied by 5 (by 25 where two windows of one customer overlap and
    # the same transaction is drawn twice, as in the handbook).
    ratio = tx["tx_amount"][hit] / legit["tx_amount"][hit].where(legit["tx_amount"][hit] > 0)
    ratio = ratio.dropna()
    assert np.isin(np.round(ratio), [5, 25, 125]).all()
    assert (np.abs(ratio - np.round(ratio)) < 1e-3 * ratio).all()
    assert np.array_equal(tx["tx_amount"][~hit], legit["tx_amount"][~hit])
    # Only compromised customers inside their 14-day windows.
    allowed = np.zeros(len(tx), dtype=bool)
    for row in medium.compromised_customers.itertuples():
        allowed |= (
            (tx["customer_id"] == row.customer_id)
            & (tx["tx_time_days"] >= row.day)
            & (tx["tx_time_days"] < row.end_day)
        ).to_numpy()
    assert not (hit & ~allowed).any()


def test_after_frauds_large_amounts_are_all_fraud(medium):
    tx = medium.transactions
    assert (tx.loc[tx["tx_amount"] > 220, "tx_fraud"] == 1).all()
    assert (tx.loc[tx["tx_fraud_scenario"] == 1, "tx_amount"] > 220).all()
    assert np.array_equal(tx["tx_fraud"], (tx["tx_fraud_scenario"] > 0).astype("int64"))


def _expected_fraud_rate(params: SimulationParams) -> float:
    """A back-of-the-envelope fraud rate from the scenario rules alone.

    On day d about 2 * min(d + 1, 28) of the n_terminals terminals are compromised, so that
    share of the day's transactions is scenario 2; about 3 * min(d + 1, 14) customers are
    compromised and a third of their transactions are scenario 3; scenario 1 adds about
    0.06% (amounts above 220). Because 2 terminals and 3 customers a day are fixed numbers,
    the rate grows as the population shrinks: about 5% at 500 customers / 1,000 terminals /
    30 days, while at the default size the same formula gives 0.85%, the ~0.8% the
    handbook reports (and measured here: 0.848% of 1,791,962 transactions at seed 0).
    """
    days = np.arange(params.n_days)
    terminal_share = 2 * np.minimum(days + 1, 28) / params.n_terminals
    customer_share = 3 * np.minimum(days + 1, 14) / params.n_customers / 3
    return float(np.mean(terminal_share + customer_share)) + 0.0006


def test_expected_fraud_rate_formula_matches_the_handbook_at_full_size():
    assert _expected_fraud_rate(SimulationParams()) == pytest.approx(0.0085, abs=0.0005)


def test_fraud_rate_is_plausible(medium):
    expected = _expected_fraud_rate(medium.params)
    assert 0.7 * expected < medium.fraud_rate < 1.3 * expected
    counts = medium.transactions["tx_fraud_scenario"].value_counts()
    assert counts.get(2, 0) > 0 and counts.get(3, 0) > 0
    assert counts.get(0, 0) > 0.9 * len(medium.transactions)  # fraud stays the minority


# --- labels ----------------------------------------------------------------------------


def test_labels_arrive_exactly_label_delay_days_later(small):
    labels, tx = small.labels, small.transactions
    assert len(labels) == len(tx)
    assert labels["label_time_ms"].is_monotonic_increasing
    joined = labels.merge(tx, on="transaction_id", suffixes=("", "_tx"))
    assert len(joined) == len(tx)
    week_ms = 7 * 86_400_000
    assert (joined["label_time_ms"] - joined["event_time_ms_tx"] == week_ms).all()
    assert (joined["event_time_ms"] == joined["event_time_ms_tx"]).all()
    for column in ("tx_fraud", "customer_id", "terminal_id"):
        assert (joined[column] == joined[f"{column}_tx"]).all()


def test_labels_sort_by_label_time_even_from_unsorted_input(small):
    shuffled = small.transactions.sample(frac=1.0, random_state=0)
    labels = make_labels(shuffled, 0)
    assert labels["label_time_ms"].is_monotonic_increasing
    assert (labels["label_time_ms"] == labels["event_time_ms"]).all()
    assert labels["transaction_id"].tolist() == small.transactions["transaction_id"].tolist()


# --- parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_customers", 0),
        ("n_customers", 2.5),
        ("n_terminals", -1),
        ("n_days", 0),
        ("n_days", True),
        ("radius", 0),
        ("radius", float("nan")),
        ("radius", "5"),
        ("start_date", "not a date"),
        ("start_date", "2018-02-30"),
        ("seed", -1),
        ("label_delay_days", -1),
    ],
)
def test_invalid_params_name_the_parameter(field, value):
    with pytest.raises(SimulatorError, match=rf"^{field} must be .*, got ") as caught:
        SimulationParams(**{field: value})
    assert isinstance(caught.value, RtmlError)
    assert caught.value.args[0].endswith(".") and "\n" not in caught.value.args[0]


def test_params_are_normalised_and_frozen():
    params = SimulationParams(n_customers=np.int64(10), start_date=dt.date(2020, 1, 2))
    assert params.n_customers == 10 and type(params.n_customers) is int
    assert params.start_date == "2020-01-02"
    assert params.start_ms == pd.Timestamp("2020-01-02").value // 1_000_000
    assert params.label_delay_days == 7 and params.radius == 5.0
    with pytest.raises(AttributeError):
        params.seed = 1  # type: ignore[misc]
