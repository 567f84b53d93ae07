"""A chaos scenario run in the background, watched while it happens.

A scenario takes from half a minute to a few minutes; a control room or a notebook must
not freeze meanwhile. `ChaosJob.start` runs `scenarios.run` on a thread of its own and
keeps every timeline event as it arrives, so a page can redraw the timeline every second
and show the verdict when the run ends. One job runs at a time per job object: a second
start while one runs is refused in one sentence (two scenarios killing brokers at once
would blur both verdicts).
"""

from __future__ import annotations

import threading
import time

import pandas as pd

from rtml.chaos.scenarios import ChaosError, ChaosResult, run
from rtml.chaos.timeline import Event
from rtml.config import Settings
from rtml.errors import RtmlError


class ChaosJob:
    """At most one scenario run at a time, its events so far, and how it ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._events: list[Event] = []
        self.scenario: str | None = None
        self.result: ChaosResult | None = None
        self.error: str | None = None
        self.started: float | None = None
        self.finished: float | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def events(self) -> list[Event]:
        """The timeline so far, oldest first."""
        with self._lock:
            return list(self._events)

    def start(
        self,
        name: str,
        settings: Settings,
        records: int | None = None,
        rate: float | None = None,
    ) -> None:
        """Run scenario `name` in the background; refused while another run is going."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise ChaosError(
                    f"Scenario {self.scenario} is still running: wait for its verdict first."
                )
            self._events = []
            self.scenario, self.result, self.error = name, None, None
            self.started, self.finished = time.time(), None
            self._thread = threading.Thread(
                target=self._run, args=(name, settings, records, rate), daemon=True
            )
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True if it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _run(self, name: str, settings: Settings, records: int | None, rate: float | None) -> None:
        try:
            self.result = run(name, settings, records=records, rate=rate, on_event=self._add)
        except RtmlError as exc:
            self.error = str(exc)
        except Exception as exc:  # a page must show why the run ended, whatever it was
            self.error = f"The scenario stopped with {type(exc).__name__}: {exc}"
        finally:
            self.finished = time.time()

    def _add(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)


def timeline_frame(events: list[Event]) -> pd.DataFrame:
    """The events as a table: seconds since the start, kind, what happened."""
    return pd.DataFrame(
        [(e.at, e.kind, e.text) for e in events], columns=["second", "kind", "what happened"]
    )


def verdict_frame(result: ChaosResult) -> pd.DataFrame:
    """The verdict as a table, one count a row (lost and duplicated must be 0)."""
    return pd.DataFrame(result.verdict.rows(), columns=["count", "records"])


def checks_frame(result: ChaosResult) -> pd.DataFrame:
    """The scenario's own checks and times to resume, one a row."""
    rows = [(c.name, "held" if c.passed else "FAILED", c.detail) for c in result.checks]
    rows += [
        (
            f"time to resume after: {r.step}",
            "measured" if r.seconds is not None else "none",
            "-" if r.seconds is None else f"{r.seconds:.2f} s",
        )
        for r in result.resumes
    ]
    return pd.DataFrame(rows, columns=["check", "outcome", "detail"])
