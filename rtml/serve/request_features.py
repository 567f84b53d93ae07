"""The model input of a transaction scored on request, built from the online store.

The streaming path computes each transaction's features from every earlier transaction
in the feature app's state. A request-time path only has the store: the latest features
record of the customer (at its event time t0, windows (t0 - d, t0]) and of the terminal.
What that allows, for a transaction at t with amount a, window d:

- exact: `tx_amount`, `is_weekend`, `is_night` (from t alone); the customer windows when
  the stored record is this very transaction (the stream already computed them), when
  t == t0 (same window, plus this transaction) or when t - t0 >= d (every stored
  transaction has left the window, so it holds this one alone); `terminal_distance` when
  the store has seen this customer at this terminal (it depends on the two profiles only);
- approximate, when 0 < t - t0 < d: count = c + 1 and mean = (c * m + a) / (c + 1). That is
  an upper bound of the count: it assumes none of the stored window's transactions
  expired in (t0 - d, t - d], and the store cannot tell how many did (it keeps the
  aggregate, not the transactions). The error grows with t - t0;
- approximate, when t < t0 (the request is older than the customer's stored state, i.e.
  its features arrived late relative to newer ones): the stored windows include later
  transactions that cannot be taken out;
- approximate: the terminal windows are the terminal's latest (at its event time t1), not
  re-evaluated at t: the window (t - 7d - d, t - 7d] moved by t - t1 and labels known since
  are missing. Exact when t == t1;
- missing in both paths alike: transactions between t0 and t that have not reached the store
  yet. Their count is not knowable here; the feature age says how stale the store was.

An unknown customer gets windows holding this transaction only, and an unknown terminal
(0, 0.0), which is what the definitions give for no history; both are flagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rtml.features.definitions import (
    MS_PER_DAY,
    WINDOW_DAYS,
    calendar_features,
)
from rtml.serve.store import TERMINAL_COLUMNS


@dataclass
class RequestFeatures:
    """The model input of one request, and what is known about its quality."""

    values: dict[str, float | int | bool | None]
    customer_known: bool
    terminal_known: bool
    customer_age_ms: int | None = None
    terminal_age_ms: int | None = None
    approximate: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


def request_features(
    transaction_id: int,
    tx_ms: int,
    amount: float,
    customer: Mapping[str, Any] | None,
    terminal: Mapping[str, Any] | None,
    distance: float | None,
    now_ms: int,
) -> RequestFeatures:
    """The features of transaction `transaction_id` at `tx_ms` with `amount`, from the
    customer's and the terminal's latest stored records (None when unknown) and the
    pair's `distance`."""
    weekend, night = calendar_features(tx_ms)
    values: dict[str, float | int | bool | None] = {
        "tx_amount": amount,
        "is_weekend": weekend,
        "is_night": night,
    }
    out = RequestFeatures(values, customer is not None, terminal is not None)
    for days in WINDOW_DAYS:
        count, mean, exact = _customer_window(transaction_id, tx_ms, amount, customer, days)
        values[f"customer_nb_tx_{days}d"] = count
        values[f"customer_avg_amount_{days}d"] = mean
        if not exact:
            out.approximate += [f"customer_nb_tx_{days}d", f"customer_avg_amount_{days}d"]
    for column in TERMINAL_COLUMNS:
        values[column] = terminal[column] if terminal else (0 if "_nb_tx_" in column else 0.0)
    if terminal is not None and terminal["tx_datetime"] != tx_ms:
        out.approximate += list(TERMINAL_COLUMNS)
    values["terminal_distance"] = distance
    if distance is None:
        out.unavailable.append("terminal_distance")
    if customer is not None:
        out.customer_age_ms = now_ms - customer["feature_time"]
    if terminal is not None:
        out.terminal_age_ms = now_ms - terminal["feature_time"]
    return out


def _customer_window(
    transaction_id: int, tx_ms: int, amount: float, customer: Mapping[str, Any] | None, days: int
) -> tuple[int, float, bool]:
    """(count, mean amount, exact?) of the customer's window of `days` at `tx_ms`."""
    if customer is None:
        return 1, amount, True
    count = customer[f"customer_nb_tx_{days}d"]
    mean = customer[f"customer_avg_amount_{days}d"]
    if customer["transaction_id"] == transaction_id:
        return count, mean, True  # already in the store: its own features, as streamed
    gap = tx_ms - customer["tx_datetime"]
    if gap >= days * MS_PER_DAY:
        return 1, amount, True
    return count + 1, (count * mean + amount) / (count + 1), gap == 0
