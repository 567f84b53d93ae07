"""The transaction simulator: card payments with fraud, after the Fraud Detection Handbook.

`simulate(SimulationParams(...))` returns customers, terminals, transactions (with three
fraud scenarios) and delayed fraud labels as pandas DataFrames. It is pure and seeded: no
Kafka, no global random state, the same parameters give the same data.
"""

from rtml.simulate.errors import SimulatorError
from rtml.simulate.generator import (
    LABEL_COLUMNS,
    TRANSACTION_COLUMNS,
    Simulation,
    add_frauds,
    draw_compromised_customers,
    draw_compromised_terminals,
    generate_transactions,
    make_labels,
    simulate,
)
from rtml.simulate.params import SimulationParams
from rtml.simulate.profiles import (
    generate_customer_profiles,
    generate_terminal_profiles,
    terminals_within_radius,
)

__all__ = [
    "LABEL_COLUMNS",
    "TRANSACTION_COLUMNS",
    "Simulation",
    "SimulationParams",
    "SimulatorError",
    "add_frauds",
    "draw_compromised_customers",
    "draw_compromised_terminals",
    "generate_customer_profiles",
    "generate_terminal_profiles",
    "generate_transactions",
    "make_labels",
    "simulate",
    "terminals_within_radius",
]
