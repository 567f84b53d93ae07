"""Avro schemas of every topic, the registry client, and serializers that use it.

The schemas are `.avsc` files beside this module. Each topic's value schema is registered
under the subject `<topic>-value` (Confluent's TopicNameStrategy) with BACKWARD
compatibility, so a new version may add optional fields but consumers on the old version
keep working; the registry refuses anything else.
"""

from rtml.schemas.registry import (
    SCHEMAS,
    SchemaError,
    avro_deserializer,
    avro_serializer,
    load_schema,
    projection,
    register,
    register_all,
    registry_client,
    subject,
)

__all__ = [
    "SCHEMAS",
    "SchemaError",
    "avro_deserializer",
    "avro_serializer",
    "load_schema",
    "projection",
    "register",
    "register_all",
    "registry_client",
    "subject",
]
