"""The batch reference: every feature of `rtml.features.definitions`, computed with pandas.

Training reads history in bulk; serving computes features one event at a time. If the two
disagree, a model is trained on numbers it never sees in production (training/serving
skew). This module is the bulk path, vectorised, and a test asserts it equals what the
streaming app wrote to the `features` topic for every transaction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rtml.features.definitions import (
    FEATURE_COLUMNS,
    LABEL_DELAY_DAYS,
    MS_PER_DAY,
    NIGHT_LAST_HOUR,
    WINDOW_DAYS,
)
from rtml.features.errors import FeatureError

_TX_COLUMNS = ("transaction_id", "event_time_ms", "customer_id", "terminal_id", "tx_amount")
_LABEL_COLUMNS = ("terminal_id", "event_time_ms", "label_time_ms", "tx_fraud")


def batch_features(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Features of every transaction, indexed by transaction_id, columns FEATURE_COLUMNS.

    With the `customers` and `terminals` profiles (id, x, y) it adds `terminal_distance`,
    the enrichment the stream gets from its stream-table joins (NaN where one is unknown).

    `transactions` needs transaction_id, event_time_ms, customer_id, terminal_id and
    tx_amount; `labels` needs terminal_id, event_time_ms (of the labelled transaction),
    label_time_ms and tx_fraud. A customer's transactions are taken in (event time,
    transaction id) order, the order in which they sit in their partition.
    """
    _require(transactions, _TX_COLUMNS, "transactions")
    _require(labels, _LABEL_COLUMNS, "labels")
    late = (labels["label_time_ms"] - labels["event_time_ms"]) > LABEL_DELAY_DAYS * MS_PER_DAY
    if late.any():
        raise FeatureError(
            f"{int(late.sum())} label(s) arrive more than {LABEL_DELAY_DAYS} days after their "
            "transaction, so the terminal windows (which end that long before each "
            "transaction) would depend on when labels are read: use a longer delay."
        )
    txs = transactions.sort_values(["customer_id", "event_time_ms", "transaction_id"])
    times = txs["event_time_ms"].to_numpy(np.int64)
    out = pd.DataFrame(index=pd.Index(txs["transaction_id"].to_numpy(), name="transaction_id"))
    day, ms_of_day = np.divmod(times, MS_PER_DAY)
    out["is_weekend"] = (day + 3) % 7 >= 5
    out["is_night"] = ms_of_day // 3_600_000 <= NIGHT_LAST_HOUR
    for d, (count, mean) in _customer_windows(txs, times).items():
        out[f"customer_nb_tx_{d}d"] = count
        out[f"customer_avg_amount_{d}d"] = mean
    for d, (count, risk) in _terminal_windows(txs, times, labels).items():
        out[f"terminal_nb_tx_{d}d"] = count
        out[f"terminal_risk_{d}d"] = risk
    columns = list(FEATURE_COLUMNS)
    if customers is not None and terminals is not None:
        home = customers.set_index("customer_id")[["x", "y"]]
        place = terminals.set_index("terminal_id")[["x", "y"]]
        cx = home["x"].reindex(txs["customer_id"]).to_numpy()
        cy = home["y"].reindex(txs["customer_id"]).to_numpy()
        tx_ = place["x"].reindex(txs["terminal_id"]).to_numpy()
        ty = place["y"].reindex(txs["terminal_id"]).to_numpy()
        out["terminal_distance"] = np.hypot(cx - tx_, cy - ty)
        columns.append("terminal_distance")
    return out[columns].sort_index()


def _customer_windows(
    txs: pd.DataFrame, times: np.ndarray
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per window: count and mean amount over (t - d, t], the row itself included."""
    customers = txs["customer_id"].to_numpy(np.int64)
    # One sortable number per (customer, time): rows are sorted by it already.
    span = int(times.max()) + 1 if len(times) else 1
    keys = customers * span + times
    # Per-customer running sums keep magnitudes small, so differences stay exact enough.
    running = txs.groupby("customer_id", sort=False)["tx_amount"].cumsum().to_numpy()
    position = np.arange(len(txs))
    result = {}
    for d in WINDOW_DAYS:
        first = np.searchsorted(keys, customers * span + _clamp(times - d * MS_PER_DAY), "right")
        count = position - first + 1
        # Subtract the customer's running sum just before the window, if it has one there.
        prev = np.maximum(first - 1, 0)
        inside = (first > 0) & (customers[prev] == customers)
        total = running - np.where(inside, running[prev], 0.0)
        result[d] = (count.astype(np.int64), total / count)
    return result


def _terminal_windows(
    txs: pd.DataFrame, times: np.ndarray, labels: pd.DataFrame
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per window: labelled transactions and fraud share in (t-delay-d, t-delay]."""
    lbs = labels.sort_values(["terminal_id", "event_time_ms"])
    lb_terminal = lbs["terminal_id"].to_numpy(np.int64)
    lb_time = lbs["event_time_ms"].to_numpy(np.int64)
    span = int(max(lb_time.max() if len(lb_time) else 0, times.max() if len(times) else 0)) + 1
    lb_keys = lb_terminal * span + lb_time
    frauds = np.concatenate([[0], np.cumsum(lbs["tx_fraud"].to_numpy(np.int64))])
    terminal = txs["terminal_id"].to_numpy(np.int64)
    end = times - LABEL_DELAY_DAYS * MS_PER_DAY
    hi = np.searchsorted(lb_keys, terminal * span + _clamp(end), side="right")
    result = {}
    for d in WINDOW_DAYS:
        lo = np.searchsorted(lb_keys, terminal * span + _clamp(end - d * MS_PER_DAY), "right")
        count = hi - lo
        fraud = frauds[hi] - frauds[lo]
        risk = np.divide(fraud, count, out=np.zeros(len(count)), where=count > 0)
        result[d] = (count.astype(np.int64), risk)
    return result


def _clamp(ms: np.ndarray) -> np.ndarray:
    """Window bounds before 1970 become -1: below every event time, yet inside the key's
    own block of the (id * span + time) numbering."""
    return np.maximum(ms, -1)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureError(f"The {what} table lacks the column(s) {', '.join(missing)}.")
