"""One dead-letter convention for every stage: where a poison record goes and what it says.

A stage that cannot process a record (it does not decode, a field is missing or out of
range) does not stop and does not drop it: it writes the record's original key and value
unchanged to `<stage>.dlq`, with headers that say where it came from and why it failed.
Someone can then read it (`rtml dlq show`), fix the cause, and send it back to its origin.
Late records (too old for their window) go to `<topic>.late` with the same headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PREFIX = "rtml."
ORIGIN_FIELDS = (
    "topic",
    "partition",
    "offset",
    "timestamp",
    "group",
    "stage",
    "error_type",
    "error",
    "attempts",
)

Headers = list[tuple[str, bytes]]


def dlq_topic(stage: str) -> str:
    """The dead-letter topic of `stage` (the catalogue has one per stage)."""
    return f"{stage}.dlq"


def late_topic(topic: str) -> str:
    """Where records of `topic` that arrived after their window closed go."""
    return f"{topic}.late"


def origin_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    group: str,
    stage: str,
    error: BaseException | str,
    attempts: int = 1,
) -> Headers:
    """Headers that name a failed record's origin and the failure, as UTF-8 text."""
    if isinstance(error, BaseException):
        error_type, message = type(error).__name__, str(error)
    else:
        error_type, message = "Rejected", error
    values = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "group": group,
        "stage": stage,
        "error_type": error_type,
        "error": message,
        "attempts": attempts,
    }
    return [(PREFIX + name, str(values[name]).encode()) for name in ORIGIN_FIELDS]


def read_origin(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """The origin fields of a dead-lettered record's headers (others are ignored)."""
    out: dict[str, str] = {}
    for name, value in headers or ():
        if name.startswith(PREFIX) and name[len(PREFIX) :] in ORIGIN_FIELDS:
            out[name[len(PREFIX) :]] = (value or b"").decode(errors="replace")
    return out


def merge_headers(
    existing: Iterable[tuple[str, bytes]] | Mapping | None, extra: Headers
) -> Headers:
    """The record's own headers followed by `extra` (origin headers replace older ones)."""
    names = {name for name, _ in extra}
    items = existing.items() if isinstance(existing, Mapping) else (existing or ())
    return [(k, v) for k, v in items if k not in names] + extra
