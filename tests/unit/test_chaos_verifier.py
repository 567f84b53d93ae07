"""The verifier's counting, without a broker: lost, duplicated, failed, order per key."""

from rtml.chaos.verifier import Ledger, Read, verify

A, B = b"a", b"b"


def _reads(*pairs: tuple[bytes, int]) -> list[Read]:
    """Reads of (key, id) pairs, each stored at a log position of its own."""
    return [Read(key, i, 0, offset) for offset, (key, i) in enumerate(pairs)]


def test_everything_read_once_in_order_is_ok():
    acked = [(A, 1), (B, 2), (A, 3), (B, 4)]
    # Keys interleave differently from the acks: only the order within a key counts.
    v = verify(acked, [], _reads((B, 2), (A, 1), (B, 4), (A, 3)))
    assert (v.acknowledged, v.read, v.lost, v.duplicated, v.failed, v.out_of_order) == (
        4,
        4,
        0,
        0,
        0,
        0,
    )
    assert v.ok


def test_acknowledged_but_never_read_is_lost():
    v = verify([(A, 1), (A, 2), (B, 3)], [], _reads((A, 1), (B, 3)))
    assert v.lost == 1 and v.lost_ids == (2,) and not v.ok
    # The missing id does not also count as out of order: what was read is in order.
    assert v.out_of_order == 0


def test_stored_twice_is_duplicated_and_a_failed_one_is_counted_apart():
    v = verify([(A, 1)], [2], _reads((A, 1), (A, 1), (B, 2), (B, 2)))
    assert v.duplicated == 1 and v.duplicated_ids == (1,) and not v.ok
    assert v.duplicated_failed == 1 and v.reread == 0


def test_a_failed_record_stored_twice_does_not_fail_the_verdict():
    # The producer was never told it was written, so nothing acknowledged repeats.
    v = verify([(A, 1)], [2], _reads((A, 1), (B, 2), (B, 2)))
    assert v.ok and v.duplicated_failed == 1


def test_one_log_position_handed_to_the_reader_twice_is_a_reread_not_a_duplicate():
    reads = [Read(A, 1, 3, 10), Read(A, 1, 3, 10), Read(A, 2, 3, 11)]
    v = verify([(A, 1), (A, 2)], [], reads)
    assert (v.duplicated, v.reread, v.read) == (0, 1, 2) and v.ok


def test_failed_is_not_lost_and_may_be_read_once():
    # Record 2 failed (the producer got an error) but was in fact written: read once, fine.
    v = verify([(A, 1)], [2, 3], _reads((A, 1), (B, 2)))
    assert (v.lost, v.duplicated, v.failed, v.read) == (0, 0, 2, 2) and v.ok


def test_a_failed_id_that_was_also_acknowledged_counts_once_as_acknowledged():
    v = verify([(A, 1)], [1], _reads((A, 1)))
    assert v.failed == 0 and v.acknowledged == 1


def test_ids_of_one_key_read_in_another_order_than_acknowledged():
    acked = [(A, 1), (A, 2), (A, 3), (B, 4), (B, 5)]
    v = verify(acked, [], _reads((A, 2), (A, 1), (A, 3), (B, 4), (B, 5)))
    assert v.out_of_order == 1 and v.lost == 0 and not v.ok


def test_a_duplicate_read_later_does_not_make_the_order_wrong():
    # The first read of each id decides the order; the repeat is counted as a duplicate.
    v = verify([(A, 1), (A, 2)], [], _reads((A, 1), (A, 2), (A, 1)))
    assert v.out_of_order == 0 and v.duplicated == 1


def test_ledger_keeps_ack_order_and_times():
    ledger = Ledger()
    ledger.ack(A, 5, when=10.0)
    ledger.ack(B, 3, when=11.0)
    ledger.fail(7, "_MSG_TIMED_OUT")
    assert ledger.counts == (2, 1)
    assert ledger.ack_times_by_id() == [(5, 10.0), (3, 11.0)]
    assert ledger.snapshot() == ([(A, 5), (B, 3)], [7])
    assert ledger.acked_ids() == {3, 5}


def test_a_pipeline_verdict_allows_counted_duplicates_but_not_differing_ones():
    # Input keyed by customer (A, B), output by transaction: order per key is not compared.
    acked = [(A, 1), (B, 2), (A, 3)]
    same = [Read(b"3", 3, 0, 0, 10, "0.1"), Read(b"1", 1, 1, 0, 11, "0.2")]
    same += [Read(b"2", 2, 2, 0, 12, "0.3"), Read(b"1", 1, 1, 1, 13, "0.2")]
    v = verify(acked, [], same, ordered=False, duplicates_allowed=True)
    assert (v.lost, v.duplicated, v.differing, v.out_of_order) == (0, 1, 0, 0) and v.ok
    assert ("duplicated (allowed, counted)", 1) in v.rows()
    differ = [*same[:3], Read(b"1", 1, 1, 1, 13, "0.9")]
    v = verify(acked, [], differ, ordered=False, duplicates_allowed=True)
    assert v.differing == 1 and not v.ok
    # Without the allowance a duplicate fails the verdict, as for the broker scenarios.
    assert not verify(acked, [], same, ordered=False).ok
    assert verify(acked, [], same[:2], ordered=False).lost_ids == (2,)
