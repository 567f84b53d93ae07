"""Who pays where: customer profiles, terminal profiles, and the terminals near each customer.

Follows the Fraud Detection Handbook's generator (Le Borgne et al.). Customers and
terminals live on a 100 x 100 grid; a customer only pays at terminals within a radius of
home. Each customer also has a spending habit (mean and spread of amounts) and a
frequency (mean transactions per day); the transaction generator draws from these.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID_SIZE = 100.0
# About this many float64 distances (8 MB) are computed at once: bounded memory.
_PAIRS_PER_CHUNK = 1_000_000


def generate_customer_profiles(n_customers: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per customer: home location and spending habits.

    Columns: customer_id (0..n-1), x and y (uniform on the 100 x 100 grid), mean_amount
    (uniform 5..100), std_amount (half the mean) and mean_nb_tx_per_day (uniform 0..4).
    """
    x = rng.uniform(0, GRID_SIZE, n_customers)
    y = rng.uniform(0, GRID_SIZE, n_customers)
    mean_amount = rng.uniform(5, 100, n_customers)
    mean_nb_tx_per_day = rng.uniform(0, 4, n_customers)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n_customers, dtype=np.int64),
            "x": x,
            "y": y,
            "mean_amount": mean_amount,
            "std_amount": mean_amount / 2,
            "mean_nb_tx_per_day": mean_nb_tx_per_day,
        }
    )


def generate_terminal_profiles(n_terminals: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per terminal: terminal_id (0..n-1) and its location x, y on the grid."""
    return pd.DataFrame(
        {
            "terminal_id": np.arange(n_terminals, dtype=np.int64),
            "x": rng.uniform(0, GRID_SIZE, n_terminals),
            "y": rng.uniform(0, GRID_SIZE, n_terminals),
        }
    )


def terminals_within_radius(
    customers: pd.DataFrame, terminals: pd.DataFrame, radius: float
) -> pd.DataFrame:
    """Every (customer, terminal) pair closer than `radius`: the terminals a customer uses.

    Returns columns customer_id, terminal_id and distance, sorted by customer then
    terminal. Distances are computed for a block of customers against all terminals at
    once (numpy broadcasting), so memory stays bounded whatever the sizes. A customer
    with no terminal nearby has no row (and will make no transactions).
    """
    cust_xy = customers[["x", "y"]].to_numpy(dtype=np.float64)
    term_xy = terminals[["x", "y"]].to_numpy(dtype=np.float64)
    cust_ids = customers["customer_id"].to_numpy(dtype=np.int64)
    term_ids = terminals["terminal_id"].to_numpy(dtype=np.int64)
    chunk = max(1, _PAIRS_PER_CHUNK // max(1, len(term_xy)))
    parts_c, parts_t, parts_d = [], [], []
    for start in range(0, len(cust_xy), chunk):
        block = cust_xy[start : start + chunk]
        # Shape (customers in block, terminals): distance of every pair.
        dist = np.hypot(block[:, :1] - term_xy[:, 0], block[:, 1:] - term_xy[:, 1])
        rows, cols = np.nonzero(dist < radius)  # row-major: sorted by customer, terminal
        parts_c.append(cust_ids[start + rows])
        parts_t.append(term_ids[cols])
        parts_d.append(dist[rows, cols])
    if not parts_c:
        parts_c, parts_t, parts_d = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [[]]
    return pd.DataFrame(
        {
            "customer_id": np.concatenate(parts_c),
            "terminal_id": np.concatenate(parts_t),
            "distance": np.concatenate(parts_d).astype(np.float64),
        }
    )
