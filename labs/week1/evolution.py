"""Week 1 exercise: evolve a schema so that consumers on the old version keep working.

The registry checks every new version of a subject against the old one. Under BACKWARD
compatibility (rtml's default), a consumer using the NEW schema must be able to read
records written with the OLD one. A field the old records do not have can only be read
if the new schema says what to use instead: a default. The usual way to add a field is
an optional one: a union of null and the type, with null first and default null.
"""

from __future__ import annotations

from typing import Any


def add_optional_field(schema: dict[str, Any], field: str) -> dict[str, Any]:
    """Return a copy of Avro record `schema` with an optional string field `field` added.

    Leave `schema` itself unchanged and keep every existing field as it is. The new field's
    type is a union of "null" and "string" (in that order) with default None (JSON null).
    `copy.deepcopy` makes a copy that shares nothing with the original.
    """
    raise NotImplementedError(
        "TODO week 1: deep-copy the schema and append {'name': field, 'type': [...], "
        "'default': ...} to its 'fields'"
    )
