"""The lab's background services as a table: the only commands rtml runs in the background.

Each entry names a long-running `rtml` subcommand and builds its argument vector from
`Settings`: always `python -m rtml ...` as a list, never a shell string, so nothing a user
types is ever executed. Adding a service (the prediction service, ...) is one more entry
here; `rtml services`, `rtml down` and the control room pick it up.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rtml.cluster.process import OwnedProcess
from rtml.config import Settings
from rtml.errors import RtmlError

# The live simulator loops over a simulated history. 30 days of the default 5,000
# customers hold 293,865 transactions (about 4 hours at 20/s before a lap) and start in
# 1.7 s at 215 MB resident, against 3.0 s and 640 MB for the full 183 days (measured here).
LIVE_DAYS = 30


class ServiceError(RtmlError):
    """A service is unknown, failed to start, or is not running when it must be."""


@dataclass(frozen=True)
class Service:
    """One background service: what it is, how it starts, how to tell it works."""

    name: str
    description: str
    args: Callable[[Settings], list[str]]  # the `rtml` arguments, built from settings
    ready_log: str | None = None  # its log prints this once it does its work ...
    output_topic: str | None = None  # ... or this topic's end offsets start to grow

    def argv(self, settings: Settings) -> list[str]:
        """The full command line: this Python, `-m rtml`, then the service's arguments."""
        return [sys.executable, "-m", "rtml", *self.args(settings)]

    def marker(self, settings: Settings) -> str:
        """Text that must appear in the command line of the process its pid file names."""
        return "rtml " + " ".join(self.args(settings)[:2])

    def dir(self, settings: Settings) -> Path:
        """The service's folder: its pid file and log."""
        return settings.cluster_dir / "services" / self.name

    def log_file(self, settings: Settings) -> Path:
        """The service's log."""
        return self.dir(settings) / f"{self.name}.log"

    def process(self, settings: Settings) -> OwnedProcess:
        """The service's process, tracked by its pid file and a marker on its command line."""
        return OwnedProcess(self.dir(settings) / f"{self.name}.pid", self.marker(settings))


def _simulator(settings: Settings) -> list[str]:
    return [
        "simulate",
        "live",
        "--rate",
        f"{settings.live_rate:.10g}",
        "--days",
        str(LIVE_DAYS),
        "--no-progress",
    ]


# In start order; they stop in the reverse order. The consumers start first (the feature app,
# the prediction service, then the week-4 services from the card service, which reads
# commands, to the decision service, which writes them), so each is reading when the first
# live transaction's records reach it.
SERVICES: tuple[Service, ...] = (
    Service(
        "features",
        "the feature app (Quix Streams): each transaction with its features",
        lambda settings: ["features", "run"],
        ready_log="Feature app instance",
    ),
    Service(
        "serve",
        "the prediction service: each transaction scored by the latest model",
        lambda settings: ["serve", "run"],
        ready_log="Prediction service instance",
    ),
    Service(
        "cards",
        "the card service: commands checked against each card's events, new events appended",
        lambda settings: ["cards", "service"],
        ready_log="cards instance",
    ),
    Service(
        "projections",
        "the projection: card events folded into the read model the Events page queries",
        lambda settings: ["cards", "projections"],
        ready_log="projections instance",
    ),
    Service(
        "notifications",
        "the notification service: card holders told of blocks and alerts",
        lambda settings: ["cards", "notifications"],
        ready_log="notifications instance",
    ),
    Service(
        "decisions",
        "the decision service: DECLINE blocks the card, REVIEW raises an alert",
        lambda settings: ["cards", "decisions"],
        ready_log="decisions instance",
    ),
    Service(
        "simulator",
        "live card transactions at RTML_LIVE_RATE per second, with their labels",
        _simulator,
        ready_log="Emitting ",
        output_topic="transactions",
    ),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)


def service(name: str) -> Service:
    """The service called `name`, or a sentence listing the services there are."""
    for s in SERVICES:
        if s.name == name:
            return s
    raise ServiceError(f"There is no service {name!r}: the services are {', '.join(NAMES)}.")


def selected(names: list[str] | None) -> list[Service]:
    """The services named (all when None or empty), in table order, each checked."""
    if not names:
        return list(SERVICES)
    wanted = {service(n).name for n in names}
    return [s for s in SERVICES if s.name in wanted]
