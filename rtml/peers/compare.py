"""Compare a peer's 7-day customer features with a reference, transaction by transaction.

Pure (frames in, a result or one sentence out), so the rule is unit-tested without a broker:
every transaction of the reference must have a peer record, every peer record (a replay after
a restart may repeat one) must equal the reference: the same count, the mean within 1e-9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rtml.errors import RtmlError

COUNT = "customer_nb_tx_7d"
MEAN = "customer_avg_amount_7d"
TOLERANCE = 1e-9


class PeerError(RtmlError):
    """A peer could not be built or run, or its output differs from the reference."""


@dataclass(frozen=True)
class Comparison:
    """What a comparison that found no difference checked."""

    transactions: int  # reference transactions, each with a peer record
    records: int  # peer records compared (more than transactions if some were replayed)
    max_mean_gap: float  # the largest |peer mean - reference mean|

    def line(self) -> str:
        """One sentence for the terminal or a notebook."""
        return (
            f"All {self.transactions:,} transactions agree ({self.records:,} peer records): "
            f"equal 7-day counts, means within {self.max_mean_gap:.1e} (tolerance {TOLERANCE:g})."
        )


def compare(peer: pd.DataFrame, reference: pd.DataFrame, who: str = "the peer") -> Comparison:
    """Check `peer` (columns transaction_id, COUNT, MEAN) against `reference` (the same
    columns, or indexed by transaction_id); raise PeerError naming the first difference."""
    ref = _indexed(reference, "the reference")
    got = _indexed(peer, who)
    missing = ref.index.difference(got.index)
    if len(missing):
        raise PeerError(
            f"Transaction {missing[0]} has no record from {who} ({len(missing):,} of "
            f"{len(ref):,} are missing): is it still running, or did it reject them?"
        )
    extra = got.index.difference(ref.index)
    if len(extra):
        raise PeerError(
            f"{who.capitalize()} wrote transaction {extra[0]}, which the reference lacks "
            f"({len(extra):,} such): compare both on the same history."
        )
    want = ref.loc[got.index]
    counts_differ = got[COUNT].to_numpy(np.int64) != want[COUNT].to_numpy(np.int64)
    a, b = got[MEAN].to_numpy(float), want[MEAN].to_numpy(float)
    # As numpy's allclose: |a - b| <= atol + rtol * |b|, both 1e-9.
    means_differ = ~(np.abs(a - b) <= TOLERANCE + TOLERANCE * np.abs(b))
    wrong = counts_differ | means_differ
    if wrong.any():
        order = np.argsort(got.index.to_numpy(), kind="stable")
        first = order[wrong[order]][0]
        raise PeerError(
            f"Transaction {got.index[first]} differs: {who} says 7-day count "
            f"{int(got[COUNT].iloc[first])} and mean {float(a[first])!r}, the reference "
            f"{int(want[COUNT].iloc[first])} and {float(b[first])!r} ({int(wrong.sum()):,} of "
            f"{len(got):,} records differ)."
        )
    return Comparison(len(ref), len(got), float(np.abs(a - b).max()) if len(a) else 0.0)


def _indexed(frame: pd.DataFrame, who: str) -> pd.DataFrame:
    """`frame` indexed by transaction id, with the two feature columns."""
    if "transaction_id" in frame.columns:
        frame = frame.set_index("transaction_id")
    missing = [c for c in (COUNT, MEAN) if c not in frame.columns]
    if missing:
        raise PeerError(f"The frame of {who} lacks the column(s) {', '.join(missing)}.")
    return frame[[COUNT, MEAN]]
