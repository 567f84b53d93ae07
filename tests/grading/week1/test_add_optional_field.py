"""Grading: week 1, add_optional_field (labs/week1/evolution.py)."""

import copy
import io
import json

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from rtml.impl import exercise
from rtml.schemas import load_schema

pytestmark = pytest.mark.grading


def original():
    return json.loads(load_schema("transaction"))


def test_adds_an_optional_field_and_keeps_the_rest():
    """The new field is ["null", "string"] with default None; the old fields are untouched."""
    before = original()
    after = exercise("add_optional_field")(before, "channel")
    assert after["fields"][: len(before["fields"])] == before["fields"]
    assert after["fields"][-1] == {"name": "channel", "type": ["null", "string"], "default": None}


def test_leaves_the_input_alone():
    """The schema passed in is not modified (it may be shared)."""
    before = original()
    snapshot = copy.deepcopy(before)
    exercise("add_optional_field")(before, "channel")
    assert before == snapshot


def test_new_readers_read_old_records():
    """BACKWARD: a consumer on the new schema reads a record written with the old one."""
    old = original()
    new = exercise("add_optional_field")(old, "channel")
    record = {
        "transaction_id": 1,
        "tx_datetime": 0,
        "customer_id": 2,
        "terminal_id": 3,
        "tx_amount": 4.5,
    }
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(old), record)
    buf.seek(0)
    read = schemaless_reader(buf, parse_schema(old), parse_schema(new))
    assert read["channel"] is None and read["transaction_id"] == 1
