"""Week 1 reference: add an optional field (null-first union, default null), a BACKWARD change."""

from __future__ import annotations

import copy
from typing import Any


def add_optional_field(schema: dict[str, Any], field: str) -> dict[str, Any]:
    """A copy of `schema` with `field` appended as ["null", "string"], default None."""
    evolved = copy.deepcopy(schema)
    evolved["fields"].append({"name": field, "type": ["null", "string"], "default": None})
    return evolved
