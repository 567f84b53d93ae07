"""Schemas in the real registry (Apicurio): round trips, BACKWARD evolution, clear refusals."""

import json

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from rtml.config import Settings
from rtml.schemas import (
    SchemaError,
    avro_deserializer,
    avro_serializer,
    load_schema,
    register,
    register_all,
    registry_client,
)

CTX = SerializationContext("transactions", MessageField.VALUE)
TXN = {
    "transaction_id": 1,
    "tx_datetime": 1522540800000,
    "customer_id": 4,
    "terminal_id": 5,
    "tx_amount": 12.5,
}


def test_register_all_is_idempotent(cluster_settings):
    first = register_all(cluster_settings)
    assert set(first) >= {"transactions-value", "features-value", "card-events-value"}
    assert register_all(cluster_settings) == first
    client = registry_client(cluster_settings)
    assert client.get_compatibility("transactions-value") == "BACKWARD"


def test_avro_round_trip_uses_the_confluent_wire_format(cluster_settings):
    register_all(cluster_settings)
    data = avro_serializer(cluster_settings, "transactions")(TXN, CTX)
    assert data[0] == 0  # magic byte, then a 4-byte schema id
    back = avro_deserializer(cluster_settings, "transactions")(data, CTX)
    assert back["transaction_id"] == 1 and back["tx_amount"] == 12.5


def test_compatible_evolution_keeps_old_consumers_working(cluster_settings):
    topic = "evolve-ok"
    v1 = load_schema("transaction")
    register(cluster_settings, topic, v1)
    v2 = json.loads(v1)
    v2["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
    v2_id = register(cluster_settings, topic, json.dumps(v2))
    # A new producer writes v2 records; a consumer still on v1 reads them as v1.
    client = registry_client(cluster_settings)
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = AvroSerializer(client, json.dumps(v2), conf={"auto.register.schemas": False})(
        {**TXN, "channel": "web"}, ctx
    )
    assert int.from_bytes(data[1:5], "big") == v2_id
    old = AvroDeserializer(client, v1)(data, ctx)
    assert old == {**TXN, "tx_datetime": old["tx_datetime"]} and "channel" not in old


def test_incompatible_evolution_is_refused_naming_the_field(cluster_settings):
    topic = "evolve-bad"
    v1 = load_schema("transaction")
    register(cluster_settings, topic, v1)
    bad = json.loads(v1)
    bad["fields"].append({"name": "merchant", "type": "string"})  # required, no default
    with pytest.raises(SchemaError, match=r"incompatible.*merchant"):
        register(cluster_settings, topic, json.dumps(bad))


def test_a_record_that_breaks_the_schema_is_refused_on_produce(cluster_settings):
    register_all(cluster_settings)
    # fastavro names the offending field; nothing reaches Kafka.
    with pytest.raises((TypeError, ValueError, SerializationError), match="transaction_id"):
        avro_serializer(cluster_settings, "transactions")({**TXN, "transaction_id": "x"}, CTX)


def test_an_unreachable_registry_is_one_sentence(cluster_settings):
    bad = Settings.from_env({"RTML_SCHEMA_REGISTRY_URL": "http://127.0.0.1:1/apis/ccompat/v7"})
    with pytest.raises(SchemaError, match=r"No schema registry answers at http://127\.0\.0\.1:1"):
        register_all(bad)
