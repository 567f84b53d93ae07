"""Week 4 reference: retry what may pass next time, dead-letter what never will."""

from __future__ import annotations

from rtml.stage import Transient

TRANSIENT = (Transient, TimeoutError, ConnectionError)


def route_failure(error: BaseException, attempts: int, retries: int) -> str:
    """ "retry" for a transient failure with retries left, else "dead-letter"."""
    if isinstance(error, TRANSIENT) and attempts <= retries:
        return "retry"
    return "dead-letter"
