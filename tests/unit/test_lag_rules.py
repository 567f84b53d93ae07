"""The lag rules (Burrow-like) judge crafted windows of samples, with no broker."""

import pytest

from rtml.observe.cli import render_report
from rtml.observe.lag import (
    ADVICE,
    LagReport,
    LagSnapshot,
    PartitionLag,
    PartitionStatus,
    Sample,
    Status,
    evaluate,
    group_status,
)


def window(*points: tuple[int | None, int], start: int = 0, step: float = 2.0) -> list[Sample]:
    """Samples from (committed, end) pairs, `step` seconds apart; lag as partition_lag has it."""
    return [
        Sample(i * step, committed, end, end - (start if committed is None else committed))
        for i, (committed, end) in enumerate(points)
    ]


def test_lag_zero_at_any_point_is_ok_even_if_it_grew_since():
    samples = window((100, 100), (100, 180), (110, 260))
    assert evaluate(samples, owned=True) == Status.OK


def test_advancing_with_shrinking_lag_is_ok():
    samples = window((100, 500), (250, 550), (400, 600))
    assert evaluate(samples, owned=True) == Status.OK


def test_advancing_with_steady_lag_is_ok():
    """Consumers keep pace with producers: the backlog neither grows nor shrinks."""
    samples = window((100, 200), (200, 300), (300, 400))
    assert evaluate(samples, owned=True) == Status.OK


def test_advancing_but_lag_growing_all_window_is_warn():
    samples = window((100, 200), (150, 300), (200, 420))
    assert evaluate(samples, owned=True) == Status.WARN


def test_lag_that_dips_once_is_not_warn():
    samples = window((100, 200), (150, 300), (280, 320), (300, 450))
    assert evaluate(samples, owned=True) == Status.OK


def test_frozen_commit_with_lag_and_an_owner_is_stall():
    samples = window((100, 200), (100, 260), (100, 330))
    assert evaluate(samples, owned=True) == Status.STALL


def test_frozen_commit_with_no_new_records_is_still_stall():
    """A backlog that does not shrink is a problem even when producers are quiet."""
    samples = window((100, 200), (100, 200), (100, 200))
    assert evaluate(samples, owned=True) == Status.STALL


def test_frozen_commit_with_lag_and_no_owner_is_stop():
    samples = window((100, 200), (100, 260), (100, 330))
    assert evaluate(samples, owned=False) == Status.STOP


def test_frozen_commit_with_unknown_ownership_is_stall():
    samples = window((100, 200), (100, 260))
    assert evaluate(samples) == Status.STALL


def test_never_committed_with_lag_and_no_owner_is_stop():
    samples = window((None, 50), (None, 80), start=10)
    assert [s.lag for s in samples] == [40, 70]
    assert evaluate(samples, owned=False) == Status.STOP


def test_first_commit_counts_as_progress():
    samples = window((None, 100), (60, 100))
    assert evaluate(samples, owned=True) == Status.OK


def test_commit_going_backwards_is_rewind():
    samples = window((300, 400), (350, 420), (0, 430))
    assert evaluate(samples, owned=True) == Status.REWIND


def test_no_samples_is_unknown():
    assert evaluate([], owned=True) == Status.UNKNOWN


def test_one_sample_with_lag_is_unknown_but_with_zero_lag_is_ok():
    assert evaluate(window((100, 200)), owned=False) == Status.UNKNOWN
    assert evaluate(window((200, 200)), owned=False) == Status.OK


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([Status.OK, Status.OK], Status.OK),
        ([Status.OK, Status.UNKNOWN], Status.UNKNOWN),
        ([Status.UNKNOWN, Status.WARN, Status.OK], Status.WARN),
        ([Status.WARN, Status.REWIND], Status.REWIND),
        ([Status.OK, Status.STALL, Status.WARN, Status.REWIND], Status.STALL),
        ([Status.STALL, Status.STOP, Status.OK], Status.STOP),
        ([], Status.UNKNOWN),
    ],
)
def test_group_is_its_worst_partition(statuses, expected):
    assert group_status(statuses) == expected


def test_every_status_has_advice():
    assert set(ADVICE) == set(Status)
    assert all(text.endswith(".") for text in ADVICE.values())


def _report(*judged: tuple[int | None, int, Status]) -> LagReport:
    partitions = tuple(
        PartitionStatus(
            PartitionLag("txns", i, committed, 0, end, end - (committed or 0), None), status
        )
        for i, (committed, end, status) in enumerate(judged)
    )
    return LagReport("g1", "stable", 1, 3, 2.0, partitions)


def test_report_shows_each_partition_the_group_status_and_advice_worst_first():
    text = render_report(_report((10, 10, Status.OK), (None, 40, Status.STALL)))
    rows = [line.split() for line in text.splitlines() if line.startswith("txns")]
    assert rows == [
        ["txns", "0", "10", "10", "0", "OK", "-"],
        ["txns", "1", "-", "40", "40", "STALL", "-"],
    ]
    assert "Total lag 40 records. Group status: STALL" in text
    advice = [line.strip() for line in text.splitlines() if line.startswith("  ")]
    assert advice == [f"STALL: {ADVICE[Status.STALL]}", f"OK: {ADVICE[Status.OK]}"]
    assert "never committed" in text
    assert "shorter than the default commit interval" in text  # 2 s window, a STALL in it


def test_reached_means_committed_at_or_past_every_marked_offset():
    def snapshot(committed: dict[int, int | None]) -> LagSnapshot:
        parts = tuple(
            PartitionLag("t", p, c, 0, 100, 100 - (c or 0), None) for p, c in committed.items()
        )
        other = PartitionLag("u", 0, 0, 0, 500, 500, None)  # another topic is not counted
        return LagSnapshot("g", "stable", 1, 0.0, (*parts, other))

    mark = {0: 40, 1: 60, 2: 0}
    assert snapshot({0: 40, 1: 75, 2: None}).reached("t", mark)
    assert not snapshot({0: 39, 1: 75, 2: None}).reached("t", mark)
    assert not snapshot({0: 40, 1: None}).reached("t", mark)  # never committed in partition 1
    assert snapshot({}).reached("t", {0: 0})  # nothing to read yet
