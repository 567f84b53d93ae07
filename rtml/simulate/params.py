"""The knobs of the transaction simulator, checked once when they are created.

The defaults reproduce the Fraud Detection Handbook's dataset (Le Borgne et al.,
chapter "Simulated transaction data"): 5,000 customers, 10,000 terminals, 183 days
from 2018-04-01, terminals within radius 5, which gives about 1.75 million transactions.
Tests shrink the counts; benchmarks grow them. The same parameters always give the same
data, so a result can be checked by anyone who runs it again.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from dataclasses import dataclass

import pandas as pd

from rtml.simulate.errors import SimulatorError

MS_PER_DAY = 86_400_000


def _integer(name: str, value: object, minimum: int) -> int:
    """`value` as an int no smaller than `minimum`, or a SimulatorError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SimulatorError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class SimulationParams:
    """Sizes, start date, terminal radius, seed and label delay of one simulated history.

    - `n_customers`, `n_terminals`: how many card holders and payment terminals (>= 1).
    - `n_days`: how many days of history to generate (>= 1).
    - `start_date`: the first day, an ISO date such as "2018-04-01" (midnight, UTC).
    - `radius`: a customer only pays at terminals closer than this to home (> 0; the
      grid is 100 x 100).
    - `seed`: the only source of randomness (>= 0); same seed, same data.
    - `label_delay_days`: how many days after a transaction its fraud label is
      published (>= 0), as chargebacks arrive long after the payment.
    """

    n_customers: int = 5000
    n_terminals: int = 10000
    n_days: int = 183
    start_date: str = "2018-04-01"
    radius: float = 5.0
    seed: int = 0
    label_delay_days: int = 7

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise the fields in place with object.__setattr__.
        set_ = object.__setattr__
        set_(self, "n_customers", _integer("n_customers", self.n_customers, 1))
        set_(self, "n_terminals", _integer("n_terminals", self.n_terminals, 1))
        set_(self, "n_days", _integer("n_days", self.n_days, 1))
        set_(self, "seed", _integer("seed", self.seed, 0))
        set_(self, "label_delay_days", _integer("label_delay_days", self.label_delay_days, 0))
        radius = self.radius
        if (
            isinstance(radius, bool)
            or not isinstance(radius, numbers.Real)
            or not math.isfinite(radius)
            or radius <= 0
        ):
            raise SimulatorError(f"radius must be a finite number > 0, got {radius!r}.")
        set_(self, "radius", float(radius))
        set_(self, "start_date", _iso_date(self.start_date).isoformat())

    @property
    def start(self) -> pd.Timestamp:
        """Midnight of the first simulated day (timezone-naive, read as UTC)."""
        return pd.Timestamp(self.start_date)

    @property
    def start_ms(self) -> int:
        """The first simulated day as epoch milliseconds, the unit of Kafka timestamps."""
        day = _iso_date(self.start_date)
        return (day - dt.date(1970, 1, 1)).days * MS_PER_DAY


def _iso_date(value: object) -> dt.date:
    """`value` as a calendar date, or a SimulatorError saying what is accepted."""
    if isinstance(value, dt.datetime):
        value = value.date() if value.time() == dt.time(0) and value.tzinfo is None else value
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise SimulatorError(f"start_date must be an ISO date such as '2018-04-01', got {value!r}.")
