"""Consumer lag: how far a consumer group is behind, and whether that is a problem.

Lag is counted per partition, in records: from the offset the group resumes at (its
committed offset) to the log end offset (the offset the next record will get). A number
alone says little: 10,000 records behind is fine for a consumer that is catching up and
alarming for one that stopped an hour ago. So, like LinkedIn's Burrow, rtml samples the
offsets several times over a window and judges how they move, with no lag threshold to
tune; `evaluate` states the rules.

`sample_lag` takes one snapshot of a group from Kafka; `LagMonitor` takes several and
evaluates them. The lag of each partition comes from the week 1 exercise `partition_lag`,
through the exercise seam, so a learner's own function is what the system reports.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from rtml.clients import admin
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.impl import exercise


class LagError(RtmlError):
    """A consumer group is unknown, or its offsets cannot be read."""


class Status(StrEnum):
    """The verdict on a partition (or a group), from least to most severe."""

    OK = "OK"
    UNKNOWN = "UNKNOWN"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"


SEVERITY = {status: rank for rank, status in enumerate(Status)}
# Statuses that need a person now; `rtml lag` exits 1 on them (Burrow calls them ERR).
ERRORS = frozenset({Status.REWIND, Status.STALL, Status.STOP})

ADVICE = {
    Status.OK: "consumers keep up: lag reached zero or is shrinking; nothing to do.",
    Status.UNKNOWN: "not enough samples to see a trend: sample more (--samples 5 or more).",
    Status.WARN: "consumers are slower than producers: add consumers up to the partition "
    "count, batch more, or speed up processing.",
    Status.REWIND: "the committed offset went backwards: someone reset the group's offsets, "
    "so records are being processed again.",
    Status.STALL: "the consumer is alive but not committing: look for a stuck poll loop or "
    "a poison record.",
    Status.STOP: "no consumer owns these partitions: start the group's consumers (or see why "
    "they crashed or left the group).",
}


@dataclass(frozen=True)
class Sample:
    """One look at a partition: when, where the group resumes, where the log ends, the lag."""

    timestamp: float
    committed: int | None
    end: int
    lag: int


def evaluate(samples: Sequence[Sample], owned: bool | None = None) -> Status:
    """Judge one partition from its samples, oldest first, like Burrow's lag rules.

    `owned` says whether a live member of the group is assigned the partition now (None:
    not known). The rules, checked in this order:

    1. UNKNOWN: there are no samples.
    2. OK: the lag was zero in at least one sample. A consumer that reaches the end of the
       log, even once in the window, is keeping up, however large the lag is in between.
    3. UNKNOWN: one sample with lag. A trend needs at least two looks.
    4. REWIND: the committed offset went down between two samples: the group's offsets
       were reset and it is reading records again.
    5. STOP: the committed offset did not move in the whole window, there is lag, and no
       live member owns the partition. Nobody is reading it; the lag only grows until a
       consumer joins. (Burrow spots this as "no commit for longer than the window".
       Kafka does not tell clients when an offset was committed, so rtml asks the group
       who owns the partition instead.)
    6. STALL: the committed offset did not move in the whole window, there is lag, and a
       member owns the partition (or ownership is not known). The consumer is alive but
       makes no progress: a stuck poll loop, a record it fails on again and again, or a
       call that never returns. If it never polls again, Kafka evicts it after
       max.poll.interval.ms and the partition turns STOP.
    7. WARN: the committed offset moved forward, yet the lag never shrank from one sample
       to the next and ended higher than it started. The consumer works but is slower
       than the producers, so it falls further behind.
    8. OK: otherwise. The consumer moves forward and the lag shrinks or holds steady.

    The window must be longer than the consumers' commit interval (auto-commit: 5 s by
    default), or a healthy consumer that has not committed yet looks frozen.
    """
    if not samples:
        return Status.UNKNOWN
    if any(s.lag == 0 for s in samples):
        return Status.OK
    if len(samples) < 2:
        return Status.UNKNOWN
    pairs = list(pairwise(samples))
    if any(
        a.committed is not None and b.committed is not None and b.committed < a.committed
        for a, b in pairs
    ):
        return Status.REWIND
    if all(a.committed == b.committed for a, b in pairs):
        return Status.STOP if owned is False else Status.STALL
    first, last = samples[0], samples[-1]
    if all(b.lag >= a.lag for a, b in pairs) and last.lag > first.lag:
        return Status.WARN
    return Status.OK


def group_status(statuses: Iterable[Status]) -> Status:
    """A group is as healthy as its worst partition; with no partitions it is UNKNOWN."""
    return max(statuses, key=SEVERITY.__getitem__, default=Status.UNKNOWN)


@dataclass(frozen=True)
class PartitionLag:
    """Where a group stands in one partition at one moment."""

    topic: str
    partition: int
    committed: int | None  # None: the group never committed here; it starts at the log start
    start: int
    end: int
    lag: int
    owner: str | None  # member id of the live member assigned this partition, if any


@dataclass(frozen=True)
class LagSnapshot:
    """One look at a consumer group: its state, its members and every partition it reads."""

    group: str
    state: str
    members: int
    timestamp: float
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        """The group's lag summed over its partitions."""
        return sum(p.lag for p in self.partitions)

    def reached(self, topic: str, offsets: Mapping[int, int]) -> bool:
        """True when the group has committed at least `offsets` (partition -> offset) of `topic`.

        Everything before those offsets is processed, whatever arrived since: "caught up
        with what was there at that moment" holds even while producers keep writing.
        """
        committed = {p.partition: p.committed for p in self.partitions if p.topic == topic}
        return all(end == 0 or (committed.get(p) or 0) >= end for p, end in offsets.items())


@dataclass(frozen=True)
class PartitionStatus:
    """A partition's latest lag and the verdict on its window."""

    lag: PartitionLag
    status: Status


@dataclass(frozen=True)
class LagReport:
    """The verdict on a group over a window of snapshots."""

    group: str
    state: str
    members: int
    samples: int
    window: float  # seconds from the first snapshot to the last
    partitions: tuple[PartitionStatus, ...]

    @property
    def status(self) -> Status:
        """The group's verdict: its worst partition's."""
        return group_status(p.status for p in self.partitions)

    @property
    def total_lag(self) -> int:
        """The group's lag at the last sample, summed over its partitions."""
        return sum(p.lag.lag for p in self.partitions)


def list_groups(settings: Settings, client: AdminClient | None = None) -> list[str]:
    """The ids of every consumer group the cluster knows, sorted.

    A broker that does not answer leaves out the groups it coordinates; only when no broker
    answers is it an error.
    """
    client = client or admin(settings, timeout=10)
    try:
        listed = client.list_consumer_groups(request_timeout=10).result(timeout=30)
    except KafkaException as exc:
        raise _unreachable(settings, exc.args[0]) from exc
    if listed.errors and not listed.valid:
        raise _unreachable(settings, listed.errors[0])
    return sorted(g.group_id for g in listed.valid)


def sample_lag(settings: Settings, group: str, client: AdminClient | None = None) -> LagSnapshot:
    """One snapshot of `group`: committed, start and end offset and lag of each partition.

    The partitions are those the group has committed offsets for or is assigned now. An
    unknown group is an error that names the groups there are.
    """
    client = client or admin(settings, timeout=10)
    require_group(settings, group, client)
    return _snapshot(settings, client, group)


def require_group(settings: Settings, group: str, client: AdminClient | None = None) -> None:
    """Fail with a sentence naming the groups there are when `group` is not one of them."""
    groups = list_groups(settings, client)
    if group not in groups:
        known = ", ".join(groups) if groups else "none yet"
        raise LagError(f"Consumer group {group!r} does not exist: groups are {known}.")


def snapshot_all(settings: Settings) -> list[LagSnapshot]:
    """One snapshot of every consumer group, for an overview of total lag per group."""
    # One client for all groups, referenced until the end: a collected client cancels futures.
    client = admin(settings, timeout=10)
    return [_snapshot(settings, client, g) for g in list_groups(settings, client)]


def _snapshot(settings: Settings, client: AdminClient, group: str) -> LagSnapshot:
    try:
        described = client.describe_consumer_groups([group], request_timeout=10)[group]
        description = described.result(timeout=30)
        request = [ConsumerGroupTopicPartitions(group)]
        fetched = client.list_consumer_group_offsets(request, request_timeout=10)[group]
        offsets = fetched.result(timeout=30).topic_partitions
        committed = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        owners = {
            (tp.topic, tp.partition): member.member_id
            for member in description.members
            if member.assignment
            for tp in member.assignment.topic_partitions
        }
        topics = {topic for topic, _ in committed.keys() | owners.keys()}
        metadata = client.list_topics(timeout=10).topics
        # A deleted topic keeps its committed offsets until the group expires; skip it.
        tps = [
            TopicPartition(topic, p)
            for topic in sorted(topics & metadata.keys())
            for p in sorted(metadata[topic].partitions)
        ]
        starts = _offsets(client, tps, OffsetSpec.earliest())
        ends = _offsets(client, tps, OffsetSpec.latest())
    except KafkaException as exc:
        raise _unreachable(settings, exc.args[0]) from exc
    lag_of = exercise("partition_lag", settings.impl)
    partitions = []
    for tp in tps:
        key = (tp.topic, tp.partition)
        offset = committed.get(key, -1)
        mine = offset if offset >= 0 else None  # negative: OFFSET_INVALID, never committed
        try:
            lag = lag_of(mine, starts[key], ends[key])
        except NotImplementedError as exc:
            raise LagError(
                "partition_lag in labs/week1/lag.py is not written yet: finish it "
                "(rtml grade week1) or run with RTML_IMPL=solutions."
            ) from exc
        partitions.append(
            PartitionLag(tp.topic, tp.partition, mine, starts[key], ends[key], lag, owners.get(key))
        )
    return LagSnapshot(
        group=group,
        state=description.state.name.replace("_", " ").lower(),
        members=len(description.members),
        timestamp=time.time(),
        partitions=tuple(partitions),
    )


def _offsets(
    client: AdminClient, tps: list[TopicPartition], spec: OffsetSpec
) -> dict[tuple[str, int], int]:
    if not tps:
        return {}
    futures = client.list_offsets({tp: spec for tp in tps}, request_timeout=10)
    return {(tp.topic, tp.partition): f.result(timeout=30).offset for tp, f in futures.items()}


def _unreachable(settings: Settings, error: KafkaError) -> LagError:
    hint = (
        "start it with `rtml cluster up` (or `make lab`)."
        if settings.local
        else "check RTML_BOOTSTRAP_SERVERS and the security settings."
    )
    return LagError(
        f"Could not read consumer groups from {settings.bootstrap} ({error.str()}): {hint}"
    )


class LagMonitor:
    """Samples one group every `interval` seconds, keeps the last `samples`, and judges them.

    `run()` takes a fresh window and returns the report (what `rtml lag GROUP` does). A
    long-lived caller, such as the control room, calls `sample()` on each refresh and
    `report()` whenever it draws: the window then slides forward with every sample.
    """

    def __init__(
        self, settings: Settings, group: str, samples: int = 5, interval: float = 2.0
    ) -> None:
        if samples < 1 or interval < 0:
            raise LagError(
                f"A lag window needs at least 1 sample and an interval of 0 s or more, "
                f"not {samples} samples every {interval} s."
            )
        self.settings = settings
        self.group = group
        self.samples = samples
        self.interval = interval
        self._client = admin(settings, timeout=10)  # kept: a collected client cancels futures
        self._history: deque[LagSnapshot] = deque(maxlen=samples)

    def sample(self) -> LagSnapshot:
        """Take one snapshot and add it to the window (the oldest drops out when full)."""
        snapshot = sample_lag(self.settings, self.group, self._client)
        self._history.append(snapshot)
        return snapshot

    def run(self) -> LagReport:
        """Fill a fresh window, one snapshot every `interval` seconds, and judge it."""
        self._history.clear()
        started = time.monotonic()
        for i in range(self.samples):
            # Sleeping is the measurement here: samples are spread over the window on purpose.
            time.sleep(max(0.0, started + i * self.interval - time.monotonic()))
            self.sample()
        return self.report()

    def follow(
        self, done: Callable[[LagSnapshot], bool], timeout: float = 120.0
    ) -> list[LagSnapshot]:
        """Sample every `interval` s until `done(snapshot)` is true; return every snapshot.

        For watching a group change, such as lag draining while consumers catch up. The
        window slides on as usual, so `report()` afterwards judges the last `samples`.
        Raises LagError if `done` is still false after `timeout` s.
        """
        taken: list[LagSnapshot] = []
        started = time.monotonic()
        while True:
            taken.append(self.sample())
            if done(taken[-1]):
                return taken
            elapsed = time.monotonic() - started
            if elapsed >= timeout:
                raise LagError(
                    f"Group {self.group!r} did not reach the awaited state within {timeout:g} s "
                    f"(total lag {taken[-1].total_lag:,} at the last of {len(taken)} samples)."
                )
            # Sleeping is the measurement here, as in run(): one snapshot per interval.
            time.sleep(min(self.interval, timeout - elapsed))

    def report(self) -> LagReport:
        """Judge every partition of the latest snapshot over the snapshots in the window."""
        if not self._history:
            raise LagError("No samples yet: call sample() or run() before report().")
        history = list(self._history)
        latest = history[-1]
        judged = []
        for now in latest.partitions:
            key = (now.topic, now.partition)
            samples = [
                Sample(snap.timestamp, p.committed, p.end, p.lag)
                for snap in history
                for p in snap.partitions
                if (p.topic, p.partition) == key
            ]
            judged.append(PartitionStatus(now, evaluate(samples, owned=now.owner is not None)))
        return LagReport(
            group=latest.group,
            state=latest.state,
            members=latest.members,
            samples=len(history),
            window=latest.timestamp - history[0].timestamp,
            partitions=tuple(judged),
        )
