"""Reset targets: parsing --to, resolving it within a partition's range, reading offsets."""

from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from rtml.cli import main
from rtml.ops.replay import Move, ReplayError, Target, list_offsets, parse_target


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("earliest", Target("earliest")),
        ("latest", Target("latest")),
        ("offset:42", Target("offset", 42)),
        ("time:1525176000000", Target("time", 1525176000000)),
        ("time:2018-05-01T12:00", Target("time", 1525176000000)),
        ("time:2018-05-01T14:00+02:00", Target("time", 1525176000000)),
        ("time:2018-05-01T12:00:00Z", Target("time", 1525176000000)),
    ],
)
def test_targets_parse(text, target):
    assert parse_target(text) == target


@pytest.mark.parametrize("bad", ["", "start", "earliest:3", "offset:", "offset:-1", "time:"])
def test_a_bad_target_is_one_sentence(bad):
    with pytest.raises(ReplayError, match="is not a reset target"):
        parse_target(bad)


def test_a_bad_time_says_which_forms_work():
    with pytest.raises(ReplayError, match="not an ISO 8601 time or epoch milliseconds"):
        parse_target("time:yesterday")


def test_a_bad_target_on_the_command_line_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["replay", "reset", "g", "--to", "offset:x"])
    assert info.value.code == 2
    assert "'offset:x' is not a reset target" in capsys.readouterr().err


def test_targets_print_as_they_are_written():
    assert str(Target("offset", 3)) == "offset:3"
    assert str(parse_target("time:2018-05-01T12:00")) == "time:2018-05-01T12:00:00.000Z"


def test_offsets_are_clamped_to_the_partition_and_late_times_go_to_the_end():
    assert Target("earliest").resolve(5, 20) == 5
    assert Target("latest").resolve(5, 20) == 20
    assert [Target("offset", n).resolve(5, 20) for n in (0, 7, 99)] == [5, 7, 20]
    assert Target("time", 0).resolve(5, 20, at_time=9) == 9
    assert Target("time", 0).resolve(5, 20, at_time=-1) == 20  # nothing that late


def test_lag_before_and_after_a_move():
    move = Move("t", 0, before=18, after=5, start=5, end=20)
    assert (move.lag_before, move.lag_after) == (2, 15)
    assert Move("t", 0, None, 5, 5, 20).lag_before is None
    assert Move("t", 0, 1, 5, 5, 20).lag_before == 15  # records below the start are gone


class _Answer:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _FlakyAdmin:
    """An admin client whose first `failures` list_offsets calls fail with `code`."""

    def __init__(self, failures: int, code: int) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def list_offsets(self, request, request_timeout):
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(self.code))
        done = []
        for tp in request:
            future: Future = Future()
            future.set_result(_Answer(7))
            done.append((tp, future))
        return dict(done)


def test_offsets_are_retried_while_a_new_topics_leader_is_not_known():
    client = _FlakyAdmin(failures=1, code=KafkaError.NOT_LEADER_FOR_PARTITION)
    tps = [TopicPartition("t", 0), TopicPartition("t", 1)]
    assert list_offsets(client, tps, OffsetSpec.latest()) == {("t", 0): 7, ("t", 1): 7}
    assert client.calls == 2


def test_other_offset_errors_are_not_retried():
    client = _FlakyAdmin(failures=1, code=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        list_offsets(client, [TopicPartition("t", 0)], OffsetSpec.latest())
    assert client.calls == 1
