"""Wait for a condition with a deadline, instead of sleeping and hoping.

A distributed system reaches a state some time after it was asked to (a connector loads a
file, a consumer group rebalances); how long depends on the machine. So callers poll a
check often and give up, with a sentence naming what did not happen, after a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rtml.errors import RtmlError

T = TypeVar("T")


class WaitTimeout(RtmlError):
    """A condition did not come true before its deadline."""


def until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call `check` every `interval` s until it returns something truthy; return that.

    Raises WaitTimeout naming `what` when `timeout` seconds pass first. `check` runs at
    least once, and once more at the deadline, so a slow check is never cut short.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"Timed out after {timeout:g} s waiting for {what}.")
        time.sleep(min(interval, left))
