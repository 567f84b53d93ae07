"""Lag of every consumer group at once, judged over a sliding window: the Flow page's table.

A `LagBoard` keeps one `LagMonitor` per group the cluster knows. Each `refresh()` adds a
snapshot to every monitor and returns their reports, so after a few refreshes each
partition carries a verdict (OK, WARN, STALL, STOP, REWIND) on how its lag moved, not just
a number. Groups that appear get a monitor; groups that vanish lose theirs.
"""

from __future__ import annotations

import pandas as pd
from confluent_kafka import KafkaException

from rtml.clients import admin
from rtml.config import Settings
from rtml.observe import no_broker
from rtml.observe.lag import ADVICE, LagError, LagMonitor, LagReport, list_groups

PARTITION_COLUMNS = [
    "group",
    "topic",
    "partition",
    "committed",
    "end",
    "lag",
    "status",
    "group status",
]


class LagBoard:
    """A sliding lag window per consumer group; `refresh()` samples them all."""

    def __init__(self, settings: Settings, samples: int = 5, interval: float = 5.0) -> None:
        self.settings = settings
        self.samples = samples
        self.interval = interval  # the caller's refresh period; only labels the window
        self._client = admin(settings, timeout=3)  # kept: a collected client cancels futures
        self._monitors: dict[str, LagMonitor] = {}

    def refresh(self, timeout: float = 3.0) -> list[LagReport]:
        """Sample every group once and return each group's report, sorted by group id.

        Asks for metadata first with a short timeout, so a stopped cluster is one quick
        error rather than a wait as long as the group listing's own timeouts.
        """
        try:
            self._client.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise LagError(no_broker(self.settings)) from exc
        groups = list_groups(self.settings, self._client)
        for gone in set(self._monitors) - set(groups):
            del self._monitors[gone]
        reports = []
        for group in groups:
            monitor = self._monitors.get(group)
            if monitor is None:
                monitor = LagMonitor(self.settings, group, self.samples, self.interval)
                self._monitors[group] = monitor
            try:
                monitor.sample()
            except LagError:
                # Deleted between the listing and the sample: it is gone, not an error.
                del self._monitors[group]
                continue
            reports.append(monitor.report())
        return reports


def lag_table(reports: list[LagReport]) -> pd.DataFrame:
    """One row per group and partition: offsets, lag, the partition's and the group's verdict."""
    rows = [
        (
            report.group,
            p.lag.topic,
            p.lag.partition,
            p.lag.committed,
            p.lag.end,
            p.lag.lag,
            p.status.value,
            report.status.value,
        )
        for report in reports
        for p in report.partitions
    ]
    frame = pd.DataFrame(rows, columns=PARTITION_COLUMNS)
    # Committed is None where the group never committed: keep the column integer, not float.
    frame["committed"] = frame["committed"].astype("Int64")
    return frame


def group_table(reports: list[LagReport]) -> pd.DataFrame:
    """One row per group: state, members, partitions, total lag and the group's verdict."""
    return pd.DataFrame(
        [
            (
                r.group,
                r.state,
                r.members,
                len(r.partitions),
                r.total_lag,
                r.status.value,
                ADVICE[r.status],
            )
            for r in reports
        ],
        columns=["group", "state", "members", "partitions", "lag", "status", "advice"],
    )
