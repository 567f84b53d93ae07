"""Failure injection and the lost/duplicate verifier: scenarios that break the local
cluster under load, a timeline of what the cluster and the producer did, and a count by id
of what was acknowledged, read, lost, duplicated and failed."""

from rtml.chaos.scenarios import (
    NAMES,
    SCENARIOS,
    ChaosError,
    ChaosResult,
    Check,
    Resume,
    Scenario,
    run,
    scenario,
)
from rtml.chaos.timeline import Event, Timeline
from rtml.chaos.verifier import Verdict, verify

__all__ = [
    "NAMES",
    "SCENARIOS",
    "ChaosError",
    "ChaosResult",
    "Check",
    "Event",
    "Resume",
    "Scenario",
    "Timeline",
    "Verdict",
    "run",
    "scenario",
    "verify",
]
