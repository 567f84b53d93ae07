"""The timeline's diff of two cluster snapshots, and its events, without a broker."""

from rtml.chaos.timeline import BROKER, CONTROLLER, ISR, LEADER, REJOINED, Timeline, diff
from rtml.cluster.status import BrokerState, ClusterStatus, PartitionState

T = "chaos-t"


def _status(up=(1, 2, 3), controller=1, parts=(), reachable=True) -> ClusterStatus:
    brokers = tuple(BrokerState(n, f"127.0.0.1:{9091 + n}", n in up) for n in (1, 2, 3))
    return ClusterStatus(
        reachable, "x", brokers, controller, tuple(parts), "" if reachable else "gone"
    )


def _p(partition, leader, isr, topic=T) -> PartitionState:
    return PartitionState(topic, partition, leader, (1, 2, 3), tuple(isr))


def test_a_killed_leader_shows_as_broker_down_leader_moved_and_isr_shrank():
    before = _status(parts=[_p(0, 2, (1, 2, 3)), _p(1, 1, (1, 2, 3))])
    after = _status(up=(1, 3), parts=[_p(0, 1, (1, 3)), _p(1, 1, (1, 3))])
    assert diff(before, after, [T]) == [
        (BROKER, "broker 2 down"),
        (LEADER, "leader of p0 moved 2 -> 1"),
        (ISR, "ISR of p0 shrank to [1,3]"),
        (ISR, "ISR of p1 shrank to [1,3]"),
    ]


def test_a_broker_back_in_every_isr_and_the_controller_moving():
    before = _status(up=(1, 3), parts=[_p(0, 1, (1, 3)), _p(0, 1, (1, 3), topic="other")])
    half = _status(controller=3, parts=[_p(0, 1, (1, 2, 3)), _p(0, 1, (1, 3), topic="other")])
    assert diff(before, half, [T]) == [
        (BROKER, "broker 2 up"),
        (CONTROLLER, "controller 1 -> 3"),
        (ISR, "ISR of p0 grew to [1,2,3]"),
    ]  # not yet back in *every* ISR: the other topic's partition still lacks it
    whole = _status(controller=3, parts=[_p(0, 1, (1, 2, 3)), _p(0, 1, (1, 2, 3), topic="other")])
    assert diff(half, whole, [T]) == [(REJOINED, "broker 2 back in every ISR")]


def test_partitions_of_unwatched_topics_and_unchanged_snapshots_say_nothing():
    before = _status(parts=[_p(0, 1, (1, 2, 3), topic="other")])
    after = _status(parts=[_p(0, 2, (2, 3), topic="other")])
    assert diff(before, after, [T]) == []
    assert diff(after, after, [T]) == []


def test_offline_partition_and_unreachable_cluster():
    before = _status(parts=[_p(0, 2, (2,))])
    after = _status(up=(1,), parts=[_p(0, -1, (2,))])
    assert (LEADER, "p0 offline: no leader (was 2)") in diff(before, after, [T])
    assert (LEADER, "p0 back online, leader 2") in diff(after, before, [T])
    gone = _status(reachable=False)
    assert diff(before, gone, [T]) == [(BROKER, "gone")]
    assert diff(gone, before, [T]) == [(BROKER, "cluster reachable again")]


def test_timeline_reports_each_event_and_keeps_them_in_time_order():
    seen = []
    timeline = Timeline(seen.append)
    late = timeline.add("step", "second", when=timeline.started + 2.0)
    early = timeline.add("step", "first", when=timeline.started + 1.0)
    assert seen == [late, early]  # reported as added ...
    assert [e.text for e in timeline.events] == ["first", "second"]  # ... kept in time order
    assert early.at == 1.0 and timeline.kinds() == {"step"}
    assert early.line().split() == ["1.00", "s", "step", "first"]
