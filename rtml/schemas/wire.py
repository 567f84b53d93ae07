"""Avro in Confluent's wire format with the registry asked once per schema, not per record.

The wire format is a magic byte 0, the schema id as 4 big-endian bytes, then the Avro body.
confluent-kafka's AvroSerializer and AvroDeserializer write and read exactly that, but do a
subject lookup, rule hooks and buffer management on every call; on a hot path (replaying
history, the feature app) that is most of the time per record. These classes do the same
work with fastavro directly, and unit tests compare their bytes with confluent-kafka's.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from rtml.config import Settings
from rtml.schemas.registry import (
    SCHEMAS,
    SchemaError,
    load_schema,
    registry_client,
    registry_said,
    subject,
    unreachable,
)


class PreparedSerializer:
    """Avro values in Confluent's wire format, with the registry asked once, not per record.

    The bytes are those of confluent-kafka's `AvroSerializer` (magic byte 0, the schema id
    as 4 big-endian bytes, the Avro body written by fastavro); a unit test compares them
    byte for byte. It skips what AvroSerializer does on every call (subject lookup, rule
    hooks, a context-managed buffer): measured here, 335K vs 239K transactions/s, and a
    replay 1.2x faster end to end (165K vs 136K/s), as serialization is most of the loop.
    """

    def __init__(self, schema_text: str, schema_id: int) -> None:
        self.schema_id = schema_id
        self.schema = parse_schema(json.loads(schema_text))
        self.prefix = b"\x00" + schema_id.to_bytes(4, "big")
        self.booleans = frozenset(
            f["name"] for f in self.schema["fields"] if f["type"] == "boolean"
        )

    @classmethod
    def for_topic(
        cls, settings: Settings, topic: str, client: SchemaRegistryClient | None = None
    ) -> PreparedSerializer:
        """The serializer of `topic`'s values, with the id the registry gave our schema."""
        client = client or registry_client(settings)
        text = load_schema(SCHEMAS[topic])
        try:
            registered = client.lookup_schema(subject(topic), Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SchemaError(
                    f"The schema of topic {topic} is not registered under {subject(topic)} at "
                    f"{settings.registry_url}: register it with `rtml schemas register`."
                ) from exc
            raise registry_said(settings, exc) from exc
        except (OSError, httpx.HTTPError) as exc:
            raise unreachable(settings, exc) from exc
        return cls(text, registered.schema_id)

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self.prefix)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def explain(self, record: Mapping[str, Any], exc: Exception) -> str:
        """Why `record` does not fit the schema, naming the field when fastavro can."""
        try:
            validate(record, self.schema, raise_errors=True)
        except ValidationError as invalid:
            return "; ".join(
                f"field {e.field.rsplit('.', 1)[-1]} is {e.datum!r}, the schema wants {e.schema}"
                for e in invalid.errors
            )
        return str(exc)


class WireDeserializer:
    """Reads Confluent-framed Avro into dicts, resolving each writer schema id once.

    Records written with an older or newer compatible schema are read into `reader` (the
    schema this code was written against), so fields the code does not know are dropped
    and new optional ones get their defaults. Anything that is not framed Avro of a
    known schema raises SchemaError, which a stage sends to its dead-letter queue.
    """

    def __init__(self, client: SchemaRegistryClient, reader_text: str) -> None:
        self.client = client
        self.reader = parse_schema(json.loads(reader_text))
        self._writers: dict[int, Any] = {}

    @classmethod
    def for_topic(cls, settings: Settings, topic: str) -> WireDeserializer:
        """A deserializer that reads `topic`'s records into its current schema."""
        return cls(registry_client(settings), load_schema(SCHEMAS[topic]))

    def __call__(self, data: bytes | None) -> dict[str, Any]:
        if not data or len(data) < 5 or data[0] != 0:
            raise SchemaError("The value is not Avro in the Confluent wire format (magic byte 0).")
        (schema_id,) = struct.unpack_from(">I", data, 1)
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._writer(schema_id)
        try:
            return schemaless_reader(io.BytesIO(data[5:]), writer, self.reader)
        except Exception as exc:  # fastavro raises many types on truncated or foreign bytes
            raise SchemaError(
                f"The value does not decode with schema id {schema_id}: {type(exc).__name__}: {exc}"
            ) from exc

    def _writer(self, schema_id: int) -> Any:
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise SchemaError(f"Schema id {schema_id} is unknown to the registry: {exc}") from exc
        except (OSError, httpx.HTTPError) as exc:
            raise SchemaError(
                f"The registry did not answer for schema id {schema_id}: {exc}"
            ) from exc
        return parse_schema(json.loads(schema.schema_str))
