"""Register schemas and build Avro (de)serializers against the Confluent-compatible registry."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError

from rtml.config import Settings
from rtml.errors import RtmlError

AVRO_DIR = Path(__file__).parent / "avro"
COMPATIBILITY = "BACKWARD"

# Topic -> schema file. Topics not listed here carry no Avro value (e.g. DLQs keep bytes).
SCHEMAS: dict[str, str] = {
    "transactions": "transaction",
    "customers": "customer",
    "terminals": "terminal",
    "labels": "label",
    "features": "features",
    "predictions": "prediction",
    "model-updates": "model_update",
    "card-commands": "card_command",
    "card-events": "card_event",
}


class SchemaError(RtmlError):
    """A schema is unknown, refused by the registry, or the registry is unreachable."""


def subject(topic: str) -> str:
    """The registry subject of a topic's values (TopicNameStrategy)."""
    return f"{topic}-value"


@cache
def load_schema(name: str) -> str:
    """The Avro schema text of `name` (a file stem such as 'transaction')."""
    path = AVRO_DIR / f"{name}.avsc"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in AVRO_DIR.glob("*.avsc")))
        raise SchemaError(f"There is no schema {name!r}; the schemas are: {known}.")
    return json.dumps(json.loads(path.read_text()))


def projection(name: str, fields: Sequence[str]) -> str:
    """A reader schema holding only `fields` of schema `name`, as the writer defines them.

    fastavro resolves each record written with the full schema into this one, so a reader
    that needs a few fields (latency, the control room) builds only those per record.
    """
    schema = json.loads(load_schema(name))
    by_name = {f["name"]: f for f in schema["fields"]}
    unknown = [f for f in fields if f not in by_name]
    if unknown:
        raise SchemaError(f"Schema {name!r} has no field(s) {', '.join(unknown)}.")
    schema["fields"] = [by_name[f] for f in fields]
    return json.dumps(schema)


def registry_client(settings: Settings) -> SchemaRegistryClient:
    """A client for the configured registry (the local Apicurio unless RTML_SCHEMA_REGISTRY_URL)."""
    return SchemaRegistryClient({"url": settings.registry_url, "timeout": 10})


def register(
    settings: Settings,
    topic: str,
    schema_text: str,
    compatibility: str = COMPATIBILITY,
    client: SchemaRegistryClient | None = None,
) -> int:
    """Register `schema_text` for `topic`'s values under `compatibility`; return its id.

    An incompatible schema is refused by the registry; the error names what broke.
    """
    client = client or registry_client(settings)
    name = subject(topic)
    try:
        if name not in client.get_subjects():
            client.set_compatibility(name, compatibility)
        return client.register_schema(name, Schema(schema_text, "AVRO"))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            raise SchemaError(
                f"The registry refused this schema for {name} as incompatible with the "
                f"registered one ({compatibility}): {exc.error_message}"
            ) from exc
        raise registry_said(settings, exc) from exc
    except (OSError, httpx.HTTPError) as exc:
        raise unreachable(settings, exc) from exc


def registry_said(settings: Settings, exc: SchemaRegistryError) -> SchemaError:
    """The registry answered with an error: its own words."""
    return SchemaError(f"The registry at {settings.registry_url} said: {exc}")


def unreachable(settings: Settings, exc: Exception) -> SchemaError:
    """No registry answers: where rtml looked and what to do."""
    return SchemaError(
        f"No schema registry answers at {settings.registry_url} ({exc}): start it with "
        "`rtml cluster up`, or fix RTML_SCHEMA_REGISTRY_URL."
    )


def register_all(settings: Settings) -> dict[str, int]:
    """Register every topic's schema (idempotent); return subject -> schema id."""
    client = registry_client(settings)
    return {
        subject(topic): register(settings, topic, load_schema(name), client=client)
        for topic, name in SCHEMAS.items()
    }


def avro_serializer(settings: Settings, topic: str, client: SchemaRegistryClient | None = None):
    """An AvroSerializer for `topic`'s values that uses the registered schema (never registers)."""
    client = client or registry_client(settings)
    return AvroSerializer(
        client,
        load_schema(_schema_name(topic)),
        conf={"auto.register.schemas": False, "normalize.schemas": False},
    )


def avro_deserializer(
    settings: Settings, topic: str | None = None, client: SchemaRegistryClient | None = None
):
    """An AvroDeserializer; with `topic`, records are read into that topic's current schema."""
    client = client or registry_client(settings)
    reader = load_schema(_schema_name(topic)) if topic else None
    return AvroDeserializer(client, reader)


def _schema_name(topic: str) -> str:
    base = topic.split(".")[0]
    if base not in SCHEMAS:
        raise SchemaError(
            f"Topic {topic!r} has no Avro schema; topics with one: {', '.join(SCHEMAS)}."
        )
    return SCHEMAS[base]
