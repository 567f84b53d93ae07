"""Reader schemas that keep a few fields of a topic's schema (`rtml.schemas.projection`)."""

import io
import json

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from rtml.schemas import SchemaError, load_schema, projection


def test_a_projection_reads_only_its_fields_of_a_full_record():
    writer = parse_schema(json.loads(load_schema("prediction")))
    record = {
        "transaction_id": 7,
        "customer_id": 1,
        "terminal_id": 2,
        "score": 0.25,
        "decision": "REVIEW",
        "model_version": "v0003",
        "tx_datetime": 1_000,
        "appended_time": 1_010,
        "feature_time": 1_040,
        "predicted_time": 1_050,
    }
    body = io.BytesIO()
    schemaless_writer(body, writer, record)
    reader = parse_schema(json.loads(projection("prediction", ("decision", "feature_time"))))
    body.seek(0)
    got = schemaless_reader(body, writer, reader)
    assert set(got) == {"decision", "feature_time"}
    assert got["decision"] == "REVIEW"
    # The writer's logical type holds: timestamps come back as datetimes.
    assert int(got["feature_time"].timestamp() * 1000) == 1_040


def test_an_unknown_field_is_one_clear_error():
    with pytest.raises(SchemaError, match=r"no field\(s\) nope"):
        projection("prediction", ("score", "nope"))
