"""Transactions, the three fraud scenarios, and the delayed fraud labels.

Follows the Fraud Detection Handbook's generator (Le Borgne et al., "Reproducible
Machine Learning for Credit Card Fraud Detection - Practical Handbook", chapter
"Simulated transaction data"), vectorised with numpy so 1.75 million transactions take
seconds: the loops run once per day, never once per transaction.

All randomness comes from one `numpy.random.Generator` that is passed down, so the same
`SimulationParams` always give byte-identical tables. Nothing here talks to Kafka; the
producer in this package replays these tables into topics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rtml.simulate.params import MS_PER_DAY, SimulationParams
from rtml.simulate.profiles import (
    generate_customer_profiles,
    generate_terminal_profiles,
    terminals_within_radius,
)

SECONDS_PER_DAY = 86_400
# Time of day: normal around noon with a spread of 20,000 s (about 5.5 hours).
TIME_OF_DAY_MEAN_S = SECONDS_PER_DAY / 2
TIME_OF_DAY_STD_S = 20_000
# Fraud scenarios of the handbook.
FRAUD_AMOUNT_THRESHOLD = 220  # scenario 1: any amount above this is fraud
COMPROMISED_TERMINALS_PER_DAY = 2  # scenario 2 ...
TERMINAL_COMPROMISE_DAYS = 28  # ... every transaction on them for 28 days is fraud
COMPROMISED_CUSTOMERS_PER_DAY = 3  # scenario 3 ...
CUSTOMER_COMPROMISE_DAYS = 14  # ... for 14 days, a third of their transactions ...
COMPROMISED_AMOUNT_FACTOR = 5  # ... are multiplied by 5 and fraudulent

TRANSACTION_COLUMNS = (
    "transaction_id",
    "tx_datetime",
    "event_time_ms",
    "customer_id",
    "terminal_id",
    "tx_amount",
    "tx_time_seconds",
    "tx_time_days",
    "tx_fraud",
    "tx_fraud_scenario",
)
LABEL_COLUMNS = (
    "transaction_id",
    "customer_id",
    "terminal_id",
    "tx_fraud",
    "event_time_ms",
    "label_time_ms",
)


@dataclass(frozen=True, eq=False)
class Simulation:
    """One simulated history: the reference tables, the transactions and their labels.

    `compromised_terminals` and `compromised_customers` are the ground truth of fraud
    scenarios 2 and 3 (which entity was compromised, from `day` until before `end_day`),
    so a notebook can show which frauds a model should have caught, and why.
    """

    params: SimulationParams
    customers: pd.DataFrame
    terminals: pd.DataFrame
    transactions: pd.DataFrame
    labels: pd.DataFrame
    compromised_terminals: pd.DataFrame
    compromised_customers: pd.DataFrame

    @property
    def fraud_rate(self) -> float:
        """Share of transactions that are fraudulent (the handbook's dataset: about 0.8%)."""
        return float(self.transactions["tx_fraud"].mean()) if len(self.transactions) else 0.0


def simulate(params: SimulationParams) -> Simulation:
    """Generate customers, terminals, a history of transactions with frauds, and labels.

    The steps are the handbook's: profiles, terminals within the radius of each customer,
    legitimate transactions, then the three fraud scenarios. The seed in `params` is the
    only source of randomness.
    """
    rng = np.random.Generator(np.random.PCG64(params.seed))
    customers = generate_customer_profiles(params.n_customers, rng)
    terminals = generate_terminal_profiles(params.n_terminals, rng)
    nearby = terminals_within_radius(customers, terminals, params.radius)
    counts = nearby["customer_id"].value_counts()
    customers["nb_terminals"] = (
        customers["customer_id"].map(counts).fillna(0).astype(np.int64).to_numpy()
    )
    legit = generate_transactions(customers, nearby, params.n_days, params.start_ms, rng)
    bad_terminals = draw_compromised_terminals(terminals["terminal_id"], params.n_days, rng)
    bad_customers = draw_compromised_customers(customers["customer_id"], params.n_days, rng)
    transactions = add_frauds(legit, bad_terminals, bad_customers, rng)
    del legit  # free the fraud-free copy before building the labels
    labels = make_labels(transactions, params.label_delay_days)
    return Simulation(
        params=params,
        customers=customers,
        terminals=terminals,
        transactions=transactions,
        labels=labels,
        compromised_terminals=bad_terminals,
        compromised_customers=bad_customers,
    )


def generate_transactions(
    customers: pd.DataFrame,
    nearby: pd.DataFrame,
    n_days: int,
    start_ms: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Legitimate transactions of every customer on every day, in event-time order.

    Per customer and day: the number of transactions is Poisson(mean_nb_tx_per_day);
    each gets a time of day ~ Normal(noon, 20,000 s), dropped unless within the day; an
    amount ~ Normal(mean_amount, std_amount), redrawn as Uniform(0, 2 * mean) when
    negative and rounded to cents; and a terminal drawn uniformly from the customer's
    `nearby` terminals (customers without one make no transactions). Transaction ids
    are 0..N-1 in event-time order; ties within a second keep generation order.
    The fraud columns are all 0 here: `add_frauds` sets them.
    """
    cust_ids = customers["customer_id"].to_numpy(dtype=np.int64)
    mean_amount = customers["mean_amount"].to_numpy(dtype=np.float64)
    std_amount = customers["std_amount"].to_numpy(dtype=np.float64)
    mean_nb = customers["mean_nb_tx_per_day"].to_numpy(dtype=np.float64)

    # Nearby terminals as one flat array, grouped by customer position ("CSR" layout):
    # customer i may use near_terminals[first[i] : first[i] + nb[i]].
    near_pos = pd.Index(cust_ids).get_indexer(nearby["customer_id"].to_numpy())
    near_terms = nearby["terminal_id"].to_numpy(dtype=np.int64)
    by_customer = np.lexsort((near_terms, near_pos))
    near_pos, near_terms = near_pos[by_customer], near_terms[by_customer]
    nb = np.bincount(near_pos, minlength=len(cust_ids))
    first = np.concatenate(([0], np.cumsum(nb)[:-1]))

    days, secs, who, where, amounts = [], [], [], [], []
    all_customers = np.arange(len(cust_ids))
    for day in range(n_days):
        pos = np.repeat(all_customers, rng.poisson(mean_nb))
        tod = rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_STD_S, len(pos))
        keep = (tod >= 0) & (tod < SECONDS_PER_DAY)
        pos, tod = pos[keep], np.floor(tod[keep]).astype(np.int64)
        keep = nb[pos] > 0
        pos, tod = pos[keep], tod[keep]
        amount = rng.normal(mean_amount[pos], std_amount[pos])
        negative = amount < 0
        amount[negative] = rng.uniform(0, 2 * mean_amount[pos[negative]])
        terminal = near_terms[first[pos] + rng.integers(0, nb[pos])]
        order = np.argsort(tod, kind="stable")  # event-time order within the day
        days.append(np.full(len(pos), day, dtype=np.int64))
        secs.append(tod[order])
        who.append(cust_ids[pos[order]])
        where.append(terminal[order])
        amounts.append(np.round(amount[order], 2))

    tx_days = np.concatenate(days)
    tx_seconds = tx_days * SECONDS_PER_DAY + np.concatenate(secs)
    event_ms = np.int64(start_ms) + tx_seconds * 1000
    n = len(tx_days)
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64),
            "tx_datetime": event_ms.astype("datetime64[ms]"),
            "event_time_ms": event_ms,
            "customer_id": np.concatenate(who),
            "terminal_id": np.concatenate(where),
            "tx_amount": np.concatenate(amounts),
            "tx_time_seconds": tx_seconds,
            "tx_time_days": tx_days,
            "tx_fraud": np.zeros(n, dtype=np.int64),
            "tx_fraud_scenario": np.zeros(n, dtype=np.int64),
        }
    )


def _draw_per_day(
    ids: pd.Series | np.ndarray,
    per_day: int,
    duration_days: int,
    n_days: int,
    rng: np.random.Generator,
    id_column: str,
) -> pd.DataFrame:
    """`per_day` distinct ids drawn at random each day, compromised for `duration_days`."""
    ids = np.asarray(ids, dtype=np.int64)
    k = min(per_day, len(ids))
    drawn = [rng.choice(ids, size=k, replace=False) for _ in range(n_days)]
    day = np.repeat(np.arange(n_days, dtype=np.int64), k)
    return pd.DataFrame(
        {
            "day": day,
            id_column: np.concatenate(drawn) if drawn else np.empty(0, np.int64),
            "end_day": day + duration_days,
        }
    )


def draw_compromised_terminals(
    terminal_ids: pd.Series | np.ndarray, n_days: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Scenario 2's schedule: each day, 2 random terminals compromised for 28 days.

    Columns day, terminal_id, end_day: the terminal is compromised on days
    day <= d < end_day (think of a skimmer installed on a payment terminal).
    """
    return _draw_per_day(
        terminal_ids,
        COMPROMISED_TERMINALS_PER_DAY,
        TERMINAL_COMPROMISE_DAYS,
        n_days,
        rng,
        "terminal_id",
    )


def draw_compromised_customers(
    customer_ids: pd.Series | np.ndarray, n_days: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Scenario 3's schedule: each day, 3 random customers compromised for 14 days.

    Columns day, customer_id, end_day: the card's details are in a fraudster's hands on
    days day <= d < end_day (card-not-present fraud after a leak).
    """
    return _draw_per_day(
        customer_ids,
        COMPROMISED_CUSTOMERS_PER_DAY,
        CUSTOMER_COMPROMISE_DAYS,
        n_days,
        rng,
        "customer_id",
    )


def add_frauds(
    transactions: pd.DataFrame,
    compromised_terminals: pd.DataFrame,
    compromised_customers: pd.DataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """A copy of `transactions` with the handbook's three fraud scenarios applied, in order.

    1. Any amount above 220 is fraud (scenario 1; an obvious pattern to validate a model).
    2. Every transaction on a compromised terminal inside its window is fraud
       (scenario 2; overrides scenario 1).
    3. For each day's compromised customers, a third (rounded down) of their transactions
       inside the window, drawn at random, get their amount multiplied by 5 and are fraud
       (scenario 3; overrides 1 and 2). Days are processed in order, so a transaction
       drawn in two overlapping windows is multiplied twice, as in the handbook.
    Sets tx_fraud (0/1) and tx_fraud_scenario (0 = genuine, else 1..3).
    """
    out = transactions.copy()
    amount = out["tx_amount"].to_numpy(dtype=np.float64, copy=True)
    day = out["tx_time_days"].to_numpy(dtype=np.int64)
    terminal = out["terminal_id"].to_numpy(dtype=np.int64)
    customer = out["customer_id"].to_numpy(dtype=np.int64)
    scenario = np.zeros(len(out), dtype=np.int64)

    # Scenario 1: large amounts.
    scenario[amount > FRAUD_AMOUNT_THRESHOLD] = 1

    # Scenario 2: expand each compromise into its (terminal, day) pairs, then look every
    # transaction's own (terminal, day) up in that set, all at once.
    scenario[_in_windows(terminal, day, compromised_terminals, "terminal_id")] = 2

    # Scenario 3: one loop iteration per draw day (a handful of customers each).
    order = np.argsort(customer, kind="stable")  # rows of each customer, in time order
    sorted_customers = customer[order]
    for start_day, drawn in compromised_customers.groupby("day", sort=True):
        rows = []
        for cust, end_day in zip(drawn["customer_id"], drawn["end_day"], strict=True):
            lo, hi = np.searchsorted(sorted_customers, [cust, cust + 1])
            mine = order[lo:hi]
            rows.append(mine[(day[mine] >= start_day) & (day[mine] < end_day)])
        candidates = np.unique(np.concatenate(rows))  # sorted: transaction order
        chosen = rng.choice(candidates, size=len(candidates) // 3, replace=False)
        amount[chosen] = np.round(amount[chosen] * COMPROMISED_AMOUNT_FACTOR, 2)
        scenario[chosen] = 3

    out["tx_amount"] = amount
    out["tx_fraud"] = (scenario > 0).astype(np.int64)
    out["tx_fraud_scenario"] = scenario
    return out


def _in_windows(
    entity: np.ndarray, day: np.ndarray, schedule: pd.DataFrame, id_column: str
) -> np.ndarray:
    """True where (entity, day) falls inside one of the schedule's [day, end_day) windows."""
    lengths = (schedule["end_day"] - schedule["day"]).to_numpy(dtype=np.int64)
    if len(schedule) == 0 or len(entity) == 0:
        return np.zeros(len(entity), dtype=bool)
    bad_entity = np.repeat(schedule[id_column].to_numpy(dtype=np.int64), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    bad_day = np.repeat(schedule["day"].to_numpy(dtype=np.int64), lengths) + offsets
    # One integer key per (entity, day) pair, so np.isin can compare pairs.
    span = int(max(day.max(), bad_day.max())) + 1
    return np.isin(entity * span + day, bad_entity * span + bad_day)


def make_labels(transactions: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
    """The fraud label of every transaction, published `label_delay_days` after it.

    In reality a fraud is confirmed when the card holder disputes the payment
    (a chargeback), days or weeks later; a model in production learns from labels that
    lag behind the transactions it scores. Sorted by label_time_ms, the order in which
    the labels topic receives them.
    """
    labels = transactions.loc[
        :, ["transaction_id", "customer_id", "terminal_id", "tx_fraud", "event_time_ms"]
    ].copy()
    labels["label_time_ms"] = labels["event_time_ms"] + np.int64(label_delay_days) * MS_PER_DAY
    if not labels["label_time_ms"].is_monotonic_increasing:  # already so for a constant delay
        labels = labels.sort_values(["label_time_ms", "transaction_id"], kind="stable")
    return labels.reset_index(drop=True)
