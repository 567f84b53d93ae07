"""The DLQ tools' pure parts: redrive progress, --offsets, origin headers, value previews."""

import pytest

from rtml.dlq import origin_headers
from rtml.ops.dlq import (
    DlqError,
    Redriven,
    is_origin_header,
    origin_of,
    parse_offsets,
    preview,
)


def test_nothing_committed_means_nothing_redriven():
    state = Redriven.parse(-1001, None)  # OFFSET_INVALID: the group never committed
    assert state == Redriven(0, ())
    assert 0 not in state


def test_redriving_in_order_moves_the_committed_offset_and_needs_no_ranges():
    after = Redriven(3).add({3, 4, 5}, [3, 4, 5])
    assert after == Redriven(6, ())
    assert after.metadata == ""


def test_a_record_that_could_not_be_sent_stops_the_offset_and_later_ones_become_ranges():
    # 4 has no origin: it stays pending, so the offset stops there; 5 and 6 were sent.
    after = Redriven(3).add({3, 5, 6}, [3, 4, 5, 6])
    assert (after.below, after.ranges) == (4, ((5, 6),))
    assert 4 not in after and {3, 5, 6} <= {o for o in range(10) if o in after}
    assert Redriven.parse(after.below, after.metadata) == after


def test_offsets_without_records_do_not_split_a_range():
    # 11 is a transaction's commit marker: no record there, so 10 and 12 form one range.
    after = Redriven(8).add({10, 12, 14}, [8, 10, 12, 13, 14])
    assert after.ranges == ((10, 12), (14, 14))
    assert after.metadata == "10-12,14"
    assert Redriven.parse(8, "10-12,14") == after


def test_filling_the_gap_later_folds_the_ranges_into_the_offset():
    before = Redriven.parse(4, "5-6")
    after = before.add({4}, [4, 5, 6])
    assert after == Redriven(7, ())


def test_selected_records_are_added_to_what_was_redriven_before():
    after = Redriven.parse(0, "2").add({4}, [0, 1, 2, 3, 4, 5])
    assert after == Redriven(0, ((2, 2), (4, 4)))


def test_metadata_someone_else_committed_is_one_sentence():
    with pytest.raises(DlqError, match="is not a redrive's progress"):
        Redriven.parse(3, "checkpoint=5")


def test_no_records_read_leaves_the_state_as_it_was():
    state = Redriven.parse(7, "9")
    assert state.add(set(), []) is state


def test_offsets_are_parsed_from_commas_and_separate_arguments():
    assert parse_offsets(["0:12,3:40", "1:0"]) == [(0, 12), (3, 40), (1, 0)]


@pytest.mark.parametrize("bad", ["12", "a:1", "0:", "0:-3", "1:2:3"])
def test_a_bad_offset_is_one_sentence(bad):
    with pytest.raises(DlqError, match="is not PARTITION:OFFSET"):
        parse_offsets([bad])


def test_origin_comes_from_rtml_headers():
    headers = origin_headers(
        topic="transactions",
        partition=2,
        offset=41,
        timestamp=1000,
        group="g",
        stage="features",
        error=ValueError("bad amount"),
    )
    origin = origin_of([*headers, ("rtml.produced", b"5")])
    assert origin["topic"] == "transactions" and origin["offset"] == "41"
    assert (origin["error_type"], origin["error"]) == ("ValueError", "bad amount")
    assert "produced" not in origin


def test_connect_headers_fill_in_when_rtml_ones_are_missing():
    headers = [
        ("__connect.errors.topic", b"customers"),
        ("__connect.errors.partition", b"1"),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
        ("__connect.errors.exception.message", b"bad field"),
    ]
    origin = origin_of(headers)
    assert origin == {
        "topic": "customers",
        "partition": "1",
        "error_type": "DataException",
        "error": "bad field",
    }
    assert origin_of([*headers, ("rtml.topic", b"terminals")])["topic"] == "terminals"


def test_origin_headers_are_told_apart_from_a_records_own():
    assert is_origin_header("rtml.error_type") and is_origin_header("__connect.errors.topic")
    assert not is_origin_header("rtml.produced") and not is_origin_header("traceparent")


def test_previews_show_text_as_text_and_binary_as_hex_truncated():
    assert preview(None) == ("empty", None)
    assert preview(b"not avro") == ("text", "not avro")
    assert preview(b"\x00\x00\x00\x00\x01\x02") == ("hex", "000000000102")
    kind, text = preview(b"x" * 500, limit=10)
    assert (kind, text) == ("text", "x" * 10 + "… (500 bytes)")
    kind, text = preview(bytes(range(256)), limit=8)
    assert (kind, text) == ("hex", "00010203… (256 bytes)")
