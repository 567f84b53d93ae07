"""Consumer lag on the live cluster: exact counts, and the verdicts a learner will see."""

import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import NewTopic

from rtml.cli import main
from rtml.clients import create_missing_topics, durable_producer
from rtml.observe.lag import ADVICE, LagError, LagMonitor, LagReport, Status, sample_lag
from rtml.patterns.consumer import end_offsets

N = 600
CONSUMED = 250
MORE = 60


def _produce(settings, topic: str, n: int) -> None:
    producer = durable_producer(settings)
    for i in range(n):
        producer.produce(topic, key=str(i).encode(), value=b"x" * 50)
    assert producer.flush(60) == 0


def _consumer(settings, group: str, topic: str) -> Consumer:
    consumer = Consumer(
        settings.client_config(
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
        )
    )
    consumer.subscribe([topic])
    return consumer


def _consume(consumer: Consumer, n: int, timeout: float = 60) -> None:
    """Read exactly `n` records, then commit what was read."""
    got = 0
    deadline = time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None:
            assert msg.error() is None, msg.error()
            got += 1
    assert got == n, f"read {got} of {n} records in {timeout} s"
    consumer.commit(asynchronous=False)


def _until(condition, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _verdicts(report: LagReport) -> dict[int, tuple[int, Status]]:
    return {p.lag.partition: (p.lag.lag, p.status) for p in report.partitions}


def test_lag_counts_exactly_and_the_verdicts_follow_the_consumer(cluster_settings, capsys):
    settings = cluster_settings
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    group = f"lag-group-{uuid.uuid4().hex[:6]}"
    create_missing_topics(settings, [NewTopic(topic, 6, 3)])
    _produce(settings, topic, N)

    first = _consumer(settings, group, topic)
    _consume(first, CONSUMED)
    snap = _until(
        lambda: (s := sample_lag(settings, group)).state == "stable" and s,
        what="the group to be stable",
    )
    assert [p.partition for p in snap.partitions] == list(range(6))
    assert sum(p.end for p in snap.partitions) == N
    assert snap.total_lag == N - CONSUMED
    for p in snap.partitions:
        assert p.lag == p.end - (p.start if p.committed is None else p.committed)
        assert p.owner is not None  # the one member holds every partition

    # Alive, assigned, not committing, while records keep arriving: STALL where there is lag.
    _produce(settings, topic, MORE)
    report = LagMonitor(settings, group, samples=3, interval=0.5).run()
    assert report.samples == 3 and report.window == pytest.approx(1.0, abs=0.5)
    assert report.total_lag == N + MORE - CONSUMED
    verdicts = _verdicts(report)
    assert all(status == (Status.STALL if lag else Status.OK) for lag, status in verdicts.values())
    assert report.status == Status.STALL

    cli = subprocess.run(
        [sys.executable, "-m", "rtml", "lag", group, "--samples", "2", "--interval", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1, cli.stderr  # STALL is an error status
    rows = [line.split() for line in cli.stdout.splitlines() if line.startswith(topic)]
    assert [int(r[1]) for r in rows] == list(range(6))
    assert all(r[5] in ("STALL", "OK") for r in rows)
    assert "Group status: STALL" in cli.stdout
    assert f"STALL: {ADVICE[Status.STALL]}" in cli.stdout

    # The only member leaves without committing: nobody owns the partitions, STOP.
    first.close()
    _until(lambda: sample_lag(settings, group).state == "empty", what="the group to be empty")
    report = LagMonitor(settings, group, samples=3, interval=0.5).run()
    assert report.members == 0
    assert all(
        status == (Status.STOP if lag else Status.OK) for lag, status in _verdicts(report).values()
    )
    assert report.status == Status.STOP

    # A new member reads the rest and commits: lag zero everywhere, OK.
    second = _consumer(settings, group, topic)
    try:
        _consume(second, N + MORE - CONSUMED)
        _until(lambda: sample_lag(settings, group).total_lag == 0, what="lag to reach zero")
        report = LagMonitor(settings, group, samples=2, interval=0.5).run()
        assert report.status == Status.OK and report.total_lag == 0
        assert {status for _, status in _verdicts(report).values()} == {Status.OK}
    finally:
        second.close()

    assert main(["lag"]) == 0
    listing = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [group, "empty", "0", "6", "0"] in listing


def test_unknown_group_is_a_sentence_with_exit_status_2(cluster_settings, capsys):
    assert main(["lag", "no-such-group", "--samples", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtml: Consumer group 'no-such-group' does not exist: groups are ")
    assert err.endswith(".") and "Traceback" not in err


def test_follow_samples_until_the_group_reaches_the_mark(cluster_settings):
    settings = cluster_settings
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    group = f"lag-group-{uuid.uuid4().hex[:6]}"
    create_missing_topics(settings, [NewTopic(topic, 3, 3)])
    _produce(settings, topic, 90)
    consumer = _consumer(settings, group, topic)
    try:
        _consume(consumer, 30)
        mark = end_offsets(settings, topic)

        def done(snapshot) -> bool:
            if snapshot.reached(topic, mark):
                return True
            _consume(consumer, 20)  # the group moves on between two samples
            return False

        monitor = LagMonitor(settings, group, samples=2, interval=0.1)
        taken = monitor.follow(done, timeout=120)
        assert [s.total_lag for s in taken] == [60, 40, 20, 0]
        assert monitor.report().samples == 2 and monitor.report().status == Status.OK
        with pytest.raises(LagError, match=r"within 0.5 s \(total lag 0 at the last of"):
            monitor.follow(lambda _snapshot: False, timeout=0.5)
    finally:
        consumer.close()
