"""Reset a stopped consumer group's committed offsets: replay from a point, or skip ahead.

A group resumes where it last committed. Moving that offset back makes it read records
again (rebuild a read model, re-score after a fix); moving it forward skips them. The
group must be stopped first: a live member would commit its own position over the reset
at its next commit, so Kafka refuses, and `plan` says so before trying. `plan` computes
the before and after of every partition, `apply` writes the after offsets, `reset` does
both (or only the first, as a dry run).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from rtml.clients import admin
from rtml.config import Settings
from rtml.errors import RtmlError

KINDS = ("earliest", "latest", "offset", "time")
STOPPED = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)
# A partition's leader is moving or not known yet (its topic was just created): worth a retry.
LEADER_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


class ReplayError(RtmlError):
    """A reset target is invalid, or a group cannot be reset (yet)."""


@dataclass(frozen=True)
class Target:
    """Where to move a group: `kind` is earliest, latest, offset (`value` = the offset) or
    time (`value` = epoch ms: the first record at or after it)."""

    kind: str
    value: int | None = None

    def __str__(self) -> str:
        if self.kind == "time" and self.value is not None:
            moment = dt.datetime.fromtimestamp(self.value / 1000, tz=dt.UTC)
            return f"time:{moment.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}"
        return self.kind if self.value is None else f"{self.kind}:{self.value}"

    def resolve(self, start: int, end: int, at_time: int | None = None) -> int:
        """The offset of a partition holding `start` to `end`; `at_time` is what Kafka's time
        index answered for `value` (negative: nothing that late, so the end)."""
        if self.kind == "earliest":
            return start
        if self.kind == "latest":
            return end
        if self.kind == "offset":
            return min(max(self.value or 0, start), end)
        return end if at_time is None or at_time < 0 else min(max(at_time, start), end)


@dataclass(frozen=True)
class Move:
    """One partition of a reset: the committed offset before and after, and the log's range."""

    topic: str
    partition: int
    before: int | None  # None: the group never committed here
    after: int
    start: int
    end: int

    @property
    def lag_before(self) -> int | None:
        """The partition's lag at the committed offset before the reset (None: none committed)."""
        return None if self.before is None else self.end - max(self.before, self.start)

    @property
    def lag_after(self) -> int:
        """The partition's lag at the offset after the reset."""
        return self.end - self.after


@dataclass(frozen=True)
class ResetPlan:
    """A group's reset: every partition's move, and topics it committed to that are gone."""

    group: str
    target: Target
    state: str
    moves: tuple[Move, ...]
    missing: tuple[str, ...] = ()  # deleted topics; their offsets are left as they are
    applied: bool = False


@dataclass(frozen=True)
class Member:
    """A live member of a group and the partitions assigned to it."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Committed:
    """Where a group resumes in one partition, and how far behind the end that is."""

    topic: str
    partition: int
    offset: int
    start: int
    end: int

    @property
    def lag(self) -> int:
        """Records from the committed offset (or the log start) to the log end."""
        return self.end - max(self.offset, self.start)


@dataclass(frozen=True)
class GroupView:
    """A consumer group: its state, its members and its committed offsets."""

    group: str
    state: str
    members: tuple[Member, ...]
    offsets: tuple[Committed, ...]
    missing: tuple[str, ...] = ()


def parse_target(text: str) -> Target:
    """`earliest`, `latest`, `offset:N` or `time:T` (ISO 8601, UTC unless it says otherwise,
    or epoch milliseconds) as a Target."""
    kind, _, rest = text.strip().partition(":")
    if kind in ("earliest", "latest") and not rest:
        return Target(kind)
    if kind == "offset" and rest.isdigit():
        return Target(kind, int(rest))
    if kind == "time" and rest:
        if rest.isdigit():
            return Target(kind, int(rest))
        try:
            moment = dt.datetime.fromisoformat(rest)
        except ValueError:
            raise ReplayError(
                f"{rest!r} is not an ISO 8601 time or epoch milliseconds: use e.g. "
                "time:2018-05-01T12:00 or time:1525176000000."
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return Target(kind, int(moment.timestamp() * 1000))
    raise ReplayError(
        f"{text!r} is not a reset target: use earliest, latest, offset:N or time:T "
        "(ISO 8601 or epoch ms)."
    )


def show(settings: Settings, group: str) -> GroupView:
    """`group`'s state, members and committed offsets with lag; an unknown group is an error."""
    client = admin(settings, timeout=10)  # kept: a collected client cancels its futures
    state, members = _describe(settings, client, group)
    committed = _committed(settings, client, group)
    if state == ConsumerGroupState.DEAD and not committed:
        raise ReplayError(
            f"Consumer group {group!r} does not exist (no members, no committed offsets): "
            "`rtml lag` lists the groups."
        )
    topics = _topic_partitions(settings, client)
    missing = tuple(sorted({t for t, _ in committed} - topics.keys()))
    tps = [TopicPartition(t, p) for t, p in sorted(committed) if t in topics]
    starts = _offsets(settings, client, tps, OffsetSpec.earliest())
    ends = _offsets(settings, client, tps, OffsetSpec.latest())
    offsets = []
    for tp in tps:
        key = (tp.topic, tp.partition)
        offsets.append(Committed(tp.topic, tp.partition, committed[key], starts[key], ends[key]))
    return GroupView(group, _state_name(state), tuple(members), tuple(offsets), missing)


def plan(
    settings: Settings,
    group: str,
    target: Target,
    topics: Sequence[str] | None = None,
    view: GroupView | None = None,
) -> ResetPlan:
    """What resetting the stopped `group` to `target` would do, on every topic it has
    committed offsets for (or only `topics`); refuses while the group has live members.

    With `view` (from `show`), the plan judges the group by that description instead of
    asking again, so a page that shows both never shows a group stopped and refused at once.
    """
    client = admin(settings, timeout=10)
    if view is None:
        state, members = _describe(settings, client, group)
        view = GroupView(group, _state_name(state), tuple(members), ())
    if view.members or view.state not in {_state_name(s) for s in STOPPED}:
        raise ReplayError(
            f"Consumer group {group!r} has {len(view.members)} active member(s) (state "
            f"{view.state}): stop its consumers first (`rtml services down` stops the "
            "lab services), then reset."
        )
    committed = _committed(settings, client, group)
    partitions = _topic_partitions(settings, client)
    if topics:
        unknown = [t for t in topics if t not in partitions]
        if unknown:
            raise ReplayError(f"Topic {unknown[0]} does not exist: check the name (--topic).")
        wanted = set(topics)
        missing: set[str] = set()
    else:
        wanted = {t for t, _ in committed}
        if not wanted:
            raise ReplayError(
                f"Consumer group {group!r} has no committed offsets to reset: name the topics "
                "to set its offsets on with --topic."
            )
        missing = wanted - partitions.keys()
        wanted -= missing
    tps = [TopicPartition(t, p) for t in sorted(wanted) for p in partitions[t]]
    starts = _offsets(settings, client, tps, OffsetSpec.earliest())
    ends = _offsets(settings, client, tps, OffsetSpec.latest())
    at_time: dict[tuple[str, int], int] = {}
    if target.kind == "time" and target.value is not None:
        at_time = _offsets(settings, client, tps, OffsetSpec.for_timestamp(target.value))
    moves = []
    for tp in tps:
        key = (tp.topic, tp.partition)
        after = target.resolve(starts[key], ends[key], at_time.get(key))
        moves.append(
            Move(tp.topic, tp.partition, committed.get(key), after, starts[key], ends[key])
        )
    return ResetPlan(group, target, view.state, tuple(moves), tuple(sorted(missing)))


def apply(settings: Settings, reset_plan: ResetPlan) -> ResetPlan:
    """Commit the plan's after offsets for its group; Kafka refuses if a member joined since."""
    client = admin(settings, timeout=10)
    offsets = [TopicPartition(m.topic, m.partition, m.after) for m in reset_plan.moves]
    request = [ConsumerGroupTopicPartitions(reset_plan.group, offsets)]
    try:
        future = client.alter_consumer_group_offsets(request, request_timeout=30)
        result = future[reset_plan.group].result(timeout=60)
    except KafkaException as exc:
        raise ReplayError(
            f"Kafka refused to reset group {reset_plan.group!r} ({exc.args[0].str()}): has a "
            "consumer of the group started meanwhile? Stop it and run the reset again."
        ) from exc
    failed = [tp for tp in result.topic_partitions if tp.error is not None]
    if failed:
        raise ReplayError(
            f"Kafka refused the offset of {failed[0].topic} partition {failed[0].partition} "
            f"({failed[0].error.str()}); the reset may be partial: run it again."
        )
    return replace(reset_plan, applied=True)


def reset(
    settings: Settings,
    group: str,
    target: Target,
    topics: Sequence[str] | None = None,
    dry_run: bool = False,
) -> ResetPlan:
    """Plan the reset of `group` to `target` and, unless `dry_run`, apply it."""
    reset_plan = plan(settings, group, target, topics)
    return reset_plan if dry_run else apply(settings, reset_plan)


def _state_name(state: ConsumerGroupState) -> str:
    return state.name.replace("_", " ").lower()


def _describe(
    settings: Settings, client: AdminClient, group: str
) -> tuple[ConsumerGroupState, list[Member]]:
    """The group's state and its live members."""
    try:
        found = client.describe_consumer_groups([group], request_timeout=10)[group]
        description = found.result(timeout=30)
    except KafkaException as exc:
        raise _unreachable(settings, exc) from exc
    members = [
        Member(
            m.member_id,
            m.client_id,
            m.host,
            tuple(
                (tp.topic, tp.partition)
                for tp in (m.assignment.topic_partitions if m.assignment else [])
            ),
        )
        for m in description.members
    ]
    return description.state, members


def _committed(settings: Settings, client: AdminClient, group: str) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the group's committed offset, for every partition it committed."""
    try:
        request = [ConsumerGroupTopicPartitions(group)]
        found = client.list_consumer_group_offsets(request, request_timeout=10)[group]
        offsets = found.result(timeout=30).topic_partitions
    except KafkaException as exc:
        raise _unreachable(settings, exc) from exc
    return {(tp.topic, tp.partition): tp.offset for tp in offsets if tp.offset >= 0}


def _topic_partitions(settings: Settings, client: AdminClient) -> dict[str, list[int]]:
    """Topic -> its partition numbers, sorted."""
    try:
        topics = client.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise _unreachable(settings, exc) from exc
    return {name: sorted(meta.partitions) for name, meta in topics.items()}


def _offsets(
    settings: Settings, client: AdminClient, tps: list[TopicPartition], spec: OffsetSpec
) -> dict[tuple[str, int], int]:
    try:
        return list_offsets(client, tps, spec)
    except KafkaException as exc:
        raise _unreachable(settings, exc) from exc


def list_offsets(
    client: AdminClient, tps: Sequence[TopicPartition], spec: OffsetSpec, attempts: int = 6
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the offset Kafka gives for `spec` (-1: none, see Target.resolve).

    Retried with backoff while a partition's leader is moving or not known yet (a topic
    created a moment ago); any other error, or the last attempt's, raises KafkaException.
    """
    if not tps:
        return {}
    attempt = 0
    while True:
        try:
            futures = client.list_offsets({tp: spec for tp in tps}, request_timeout=10)
            return {(t.topic, t.partition): f.result(timeout=30).offset for t, f in futures.items()}
        except KafkaException as exc:
            attempt += 1
            if exc.args[0].code() not in LEADER_MOVING or attempt >= attempts:
                raise
            time.sleep(0.25 * 2**attempt)  # backoff: new metadata reaches brokers in ~1 s


def _unreachable(settings: Settings, exc: KafkaException) -> ReplayError:
    return ReplayError(
        f"Could not read consumer groups or offsets at {settings.bootstrap} "
        f"({exc.args[0].str()}): is the cluster up (`rtml cluster status`)?"
    )
