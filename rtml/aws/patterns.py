"""EventBridge event patterns as a Python predicate: one pattern, two places to apply it.

An EventBridge rule routes an event when its pattern matches the event's JSON. To compare
that push routing with a Kafka consumer that filters a topic, the consumer must filter with
exactly the same predicate, so it evaluates the same pattern here. The subset covered is
what rtml's rules use, with EventBridge's meaning:

- a field's value is a list of alternatives; a plain value matches if equal (for a list
  in the event, if any element is equal);
- `{"prefix": "..."}`, `{"numeric": [">=", 0.5, "<", 1]}`, `{"exists": true|false}` and
  `{"anything-but": [...]}` as filters among the alternatives;
- a nested object matches the nested part of the event; every field named must match.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

_MISSING = object()
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class PatternError(ValueError):
    """A pattern uses something this subset does not evaluate."""


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """True when `event` (an EventBridge event: source, detail-type, detail, ...) matches."""
    for name, wanted in pattern.items():
        value = event.get(name, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(wanted, Mapping):
            if not isinstance(value, Mapping) or not matches(wanted, value):
                return False
        elif isinstance(wanted, list):
            if not any(_alternative(a, value) for a in wanted):
                return False
        else:
            raise PatternError(f"Field {name!r} of a pattern must be a list or an object.")
    return True


def _alternative(wanted: Any, value: Any) -> bool:
    if isinstance(wanted, Mapping):
        if len(wanted) != 1:
            raise PatternError(f"A filter has exactly one operator, not {sorted(wanted)}.")
        ((kind, arg),) = wanted.items()
        if kind == "exists":
            return (value is not _MISSING) == bool(arg)
        if value is _MISSING:
            return False
        values = value if isinstance(value, list) else [value]
        return any(_filter(kind, arg, v) for v in values)
    if value is _MISSING:
        return False
    values = value if isinstance(value, list) else [value]
    return any(_equal(wanted, v) for v in values)


def _filter(kind: str, arg: Any, value: Any) -> bool:
    if kind == "prefix":
        return isinstance(value, str) and value.startswith(arg)
    if kind == "anything-but":
        excluded = arg if isinstance(arg, list) else [arg]
        return not any(_equal(e, value) for e in excluded)
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        pairs = list(zip(arg[::2], arg[1::2], strict=True))
        return all(_COMPARE[op](value, bound) for op, bound in pairs)
    raise PatternError(f"The filter {kind!r} is not evaluated here.")


def _equal(wanted: Any, value: Any) -> bool:
    # JSON has one number type: 1 and 1.0 are equal, but true is not 1.
    if isinstance(wanted, bool) or isinstance(value, bool):
        return wanted is value
    return wanted == value
