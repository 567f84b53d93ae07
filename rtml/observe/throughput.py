"""Messages per second per topic, from how far the end offsets moved between two samples.

A partition's end offset is the offset its next record will get, so it only grows: the sum
over a topic's partitions counts every record ever appended to the topic (retention deletes
records but never lowers it). Two samples of that sum, divided by the time between them,
give the topic's write rate. One ListOffsets request covers every partition of every topic,
so a sample costs two round trips (metadata, then offsets) however many topics there are.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

import pandas as pd
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from rtml.clients import admin
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.observe import no_broker
from rtml.topics import CATALOGUE


class ThroughputError(RtmlError):
    """The cluster did not answer, so no end offsets could be read."""


@dataclass(frozen=True)
class OffsetSample:
    """The total end offset of each topic at one moment (wall-clock seconds)."""

    timestamp: float
    totals: Mapping[str, int]


def end_offsets(
    settings: Settings,
    topics: Iterable[str] | None = None,
    client: AdminClient | None = None,
    timeout: float = 3.0,
) -> dict[str, int]:
    """The sum of the end offsets of each topic's partitions (default: the catalogue's topics).

    Topics that do not exist are left out, and so is a topic whose partition could not be
    read (its leader just died, say): a partial sum would show as a false drop in its rate.
    """
    client = client or admin(settings, timeout)
    names = [t.name for t in CATALOGUE] if topics is None else list(topics)
    try:
        metadata = client.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise ThroughputError(no_broker(settings)) from exc
    tps = [
        TopicPartition(name, p)
        for name in names
        if name in metadata
        for p in sorted(metadata[name].partitions)
    ]
    if not tps:
        return {}
    futures = client.list_offsets({tp: OffsetSpec.latest() for tp in tps}, request_timeout=timeout)
    totals: dict[str, int] = {}
    failed: set[str] = set()
    for tp, future in futures.items():
        try:
            totals[tp.topic] = totals.get(tp.topic, 0) + future.result(timeout=timeout).offset
        except KafkaException:
            failed.add(tp.topic)
    return {name: total for name, total in totals.items() if name not in failed}


def take_sample(
    settings: Settings,
    topics: Iterable[str] | None = None,
    client: AdminClient | None = None,
    timeout: float = 3.0,
) -> OffsetSample:
    """End offsets of `topics` now, stamped with the time they were read."""
    totals = end_offsets(settings, topics, client, timeout)
    return OffsetSample(time.time(), totals)


def rates(earlier: OffsetSample, later: OffsetSample) -> dict[str, float]:
    """Records per second written to each topic between two samples.

    Only topics present in both samples get a rate. A total that went down means the topic
    was deleted and created again in between: its rate is unknown, so it is left out.
    """
    elapsed = later.timestamp - earlier.timestamp
    if elapsed <= 0:
        return {}
    return {
        name: (total - earlier.totals[name]) / elapsed
        for name, total in later.totals.items()
        if name in earlier.totals and total >= earlier.totals[name]
    }


class ThroughputTracker:
    """The last `maxlen` samples, and from them each topic's rate over time.

    Bounded, so a control room page can keep one per session and sample it on every refresh
    for as long as it stays open: with a 2 s refresh, 150 samples hold the last 5 minutes.
    """

    def __init__(self, maxlen: int = 150) -> None:
        if maxlen < 2:
            raise ThroughputError(
                f"A rate needs two samples, so maxlen must be 2 or more, not {maxlen}."
            )
        self._samples: deque[OffsetSample] = deque(maxlen=maxlen)

    def add(self, sample: OffsetSample) -> None:
        """Append a sample (the oldest drops out when full); out-of-order ones are ignored."""
        if self._samples and sample.timestamp <= self._samples[-1].timestamp:
            return
        self._samples.append(sample)

    def sample(
        self,
        settings: Settings,
        topics: Iterable[str] | None = None,
        client: AdminClient | None = None,
        timeout: float = 3.0,
    ) -> OffsetSample:
        """Read the end offsets now and add them."""
        sample = take_sample(settings, topics, client, timeout)
        self.add(sample)
        return sample

    @property
    def samples(self) -> list[OffsetSample]:
        """The samples kept, oldest first."""
        return list(self._samples)

    def latest(self) -> dict[str, float]:
        """Each topic's rate between the last two samples (empty before the second one)."""
        if len(self._samples) < 2:
            return {}
        return rates(self._samples[-2], self._samples[-1])

    def totals(self) -> dict[str, int]:
        """Each topic's record count (total end offset) at the last sample."""
        return dict(self._samples[-1].totals) if self._samples else {}

    def history(self, active_only: bool = True) -> pd.DataFrame:
        """One row per topic and interval: `time` (its end, UTC), `topic`, `rate` (records/s).

        With `active_only`, topics that received nothing in the whole window are left out, so
        a chart shows the topics that move rather than a dozen lines at zero.
        """
        rows = [
            (pd.Timestamp(later.timestamp, unit="s", tz="UTC"), name, rate)
            for earlier, later in pairwise(self._samples)
            for name, rate in rates(earlier, later).items()
        ]
        frame = pd.DataFrame(rows, columns=["time", "topic", "rate"])
        if active_only and not frame.empty:
            moving = frame.groupby("topic")["rate"].max()
            frame = frame[frame["topic"].isin(moving[moving > 0].index)]
        return frame.reset_index(drop=True)
