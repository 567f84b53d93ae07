"""`rtml replay`: a stopped group's offsets reset to earliest, an offset or a time, and the
same records read again in the same order; refused while a member is alive."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import NewTopic

from rtml.cli import main
from rtml.clients import admin, create_missing_topics, durable_producer
from rtml.ops import replay
from rtml.ops.replay import ReplayError, parse_target
from rtml.patterns.consumer import group_consumer
from rtml.poll import until

N = 12
PARTITIONS = 3


@pytest.fixture()
def history(cluster_settings) -> Iterator[tuple[str, int]]:
    """A fresh topic holding N records, record i in partition i % 3 at base + i s; yields
    (topic, base) and deletes the topic afterwards."""
    settings = cluster_settings
    topic = f"replay-test-{uuid.uuid4().hex[:8]}"
    assert create_missing_topics(settings, [NewTopic(topic, PARTITIONS, 1)]) == [topic]
    base = int(time.time() * 1000) - 3_600_000
    producer = durable_producer(settings)
    for i in range(N):
        producer.produce(topic, f"v{i}".encode(), b"k", partition=i % 3, timestamp=base + i * 1000)
    assert producer.flush(30) == 0
    yield topic, base
    client = admin(settings, timeout=10)
    client.delete_topics([topic], operation_timeout=30)[topic].result(timeout=60)


@pytest.fixture()
def new_group(cluster_settings) -> Iterator[Callable[[], str]]:
    """Makes unique consumer group names; deletes those groups afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"replay-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make
    client = admin(cluster_settings, timeout=10)
    for fut in client.delete_consumer_groups(made, request_timeout=30).values():
        with contextlib.suppress(KafkaException):  # a failed test may leave none, or a member
            fut.result(timeout=60)


def _consume(settings, topic: str, group: str, n: int) -> dict[int, list[bytes]]:
    """Read `n` records of `topic` in `group`, commit, leave; partition -> values in order."""
    consumer = group_consumer(settings, group)
    consumer.subscribe([topic])
    got: list[Message] = []

    def enough() -> bool:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg)
        return len(got) >= n

    try:
        until(enough, 60, f"{n} records of {topic} in {group}", interval=0)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    out: dict[int, list[bytes]] = {}
    for msg in got:
        out.setdefault(msg.partition(), []).append(msg.value())
    return out


def _expected(first: int = 0, after_ms: int | None = None, base: int = 0) -> dict[int, list[bytes]]:
    """What each partition holds from offset `first` on (or from time `after_ms` on)."""
    out: dict[int, list[bytes]] = {}
    for i in range(N):
        late_enough = after_ms is None or base + i * 1000 >= after_ms
        if i // PARTITIONS >= first and late_enough:
            out.setdefault(i % PARTITIONS, []).append(f"v{i}".encode())
    return out


def _caught_up(settings, group: str) -> bool:
    return all(c.lag == 0 for c in replay.show(settings, group).offsets)


def test_reset_to_earliest_replays_the_same_records_in_the_same_order(
    cluster_settings, history, new_group
) -> None:
    settings = cluster_settings
    topic, _ = history
    group = new_group()
    first = _consume(settings, topic, group, N)
    assert first == _expected()
    view = replay.show(settings, group)
    assert view.state == "empty" and view.members == ()
    assert [(c.partition, c.offset, c.lag) for c in view.offsets] == [(p, 4, 0) for p in range(3)]

    dry = replay.reset(settings, group, parse_target("earliest"), dry_run=True)
    assert not dry.applied
    assert [(m.before, m.after, m.lag_before, m.lag_after) for m in dry.moves] == [(4, 0, 0, 4)] * 3
    assert _caught_up(settings, group)  # a dry run changes nothing

    done = replay.reset(settings, group, parse_target("earliest"))
    assert done.applied and done.moves == dry.moves
    assert [c.lag for c in replay.show(settings, group).offsets] == [4, 4, 4]
    assert _consume(settings, topic, group, N) == first
    assert _caught_up(settings, group)


def test_reset_to_an_offset_and_to_a_time(cluster_settings, history, new_group, capsys) -> None:
    settings = cluster_settings
    topic, base = history
    group = new_group()
    _consume(settings, topic, group, N)

    assert main(["replay", "reset", group, "--to", "offset:1"]) == 0
    out = capsys.readouterr().out
    assert "Reset 3 partition(s); the group resumes 9 behind." in out
    assert _consume(settings, topic, group, 9) == _expected(first=1)

    cutoff = base + 7000  # records 7 and later: offset 3 in partition 0, 2 in 1 and 2
    moved = replay.reset(settings, group, parse_target(f"time:{cutoff}"), topics=[topic])
    assert [m.after for m in moved.moves] == [3, 2, 2]
    assert _consume(settings, topic, group, 5) == _expected(after_ms=cutoff, base=base)

    beyond = replay.reset(settings, group, parse_target(f"time:{base + 3_600_000 * 2}"))
    assert [(m.after, m.lag_after) for m in beyond.moves] == [(4, 0)] * 3

    fresh = new_group()
    with pytest.raises(ReplayError, match="has no committed offsets to reset"):
        replay.reset(settings, fresh, parse_target("earliest"))
    named = replay.reset(settings, fresh, parse_target("offset:99"), topics=[topic])
    assert [(m.before, m.after) for m in named.moves] == [(None, 4)] * 3


def test_reset_is_refused_while_a_member_is_active(
    cluster_settings, history, new_group, capsys
) -> None:
    settings = cluster_settings
    topic, _ = history
    group = new_group()
    _consume(settings, topic, group, N)
    member = group_consumer(settings, group)
    member.subscribe([topic])
    try:
        until(lambda: member.poll(0.2) is None and member.assignment(), 60, "an assignment")
        with pytest.raises(ReplayError) as refused:
            replay.reset(settings, group, parse_target("earliest"))
        message = str(refused.value)
        assert "has 1 active member(s) (state stable)" in message
        assert "`rtml services down`" in message
        assert main(["replay", "reset", group, "--to", "earliest", "--dry-run"]) == 2
        assert "has 1 active member(s)" in capsys.readouterr().err
        assert len(replay.show(settings, group).members) == 1
        assert _caught_up(settings, group)
    finally:
        member.close()
    until(lambda: replay.show(settings, group).state == "empty", 60, "the group to be empty")
    assert replay.reset(settings, group, parse_target("earliest")).applied
