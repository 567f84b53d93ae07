"""Read the Azure Stream Analytics job in `infra/asa/`: its window clauses and its policies.

The query (`features.asaql`) is the artefact one would deploy; this module parses what the
reference evaluator needs out of it (each statement's kind, grouping key, window function
with its sizes, and aggregates), and the job's event-ordering policy out of `JobConfig.json`.
It parses only the shapes the query uses and refuses anything else with one sentence, so a
changed query changes what the tests expect, or fails them, but is never half-understood.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from rtml.config import project_root
from rtml.errors import RtmlError

JOB_DIR = project_root() / "infra" / "asa"
QUERY_FILE = "features.asaql"
# ASA's time units and their abbreviations (the windowing functions' `timeunit`).
UNIT_MS = {
    **dict.fromkeys(("day", "dd", "d"), 86_400_000),
    **dict.fromkeys(("hour", "hh"), 3_600_000),
    **dict.fromkeys(("minute", "mi", "n"), 60_000),
    **dict.fromkeys(("second", "ss", "s"), 1_000),
    **dict.fromkeys(("millisecond", "ms"), 1),
}
FUNCTIONS = {
    "tumblingwindow": "tumbling",
    "hoppingwindow": "hopping",
    "slidingwindow": "sliding",
    "sessionwindow": "session",
}
_STATEMENT = re.compile(r"SELECT\s+'(?P<kind>\w+)'\s+AS\s+kind\s*,\s*(?P<key>\w+)\s*,", re.I)
_AGG = re.compile(
    r"(?P<func>COUNT|SUM|AVG|MIN|MAX|COLLECT)\s*\(\s*(?P<distinct>DISTINCT\s+)?"
    r"(?P<column>\*|\w+)\s*\)\s+AS\s+(?P<name>\w+)",
    re.I,
)
_WINDOW = re.compile(r"(?P<func>\w+Window)\s*\((?P<args>[^()]*)\)", re.I)
_GROUP = re.compile(r"GROUP\s+BY\s+(?P<key>\w+)\s*,", re.I)


class AsaQueryError(RtmlError):
    """The ASA job files are missing, or the query has a shape rtml's evaluator does not know."""


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of a statement: `SUM(tx_amount) AS sum` is ("SUM", "tx_amount", "sum")."""

    func: str  # COUNT, COUNT_DISTINCT, SUM, AVG, MIN, MAX, COLLECT
    column: str | None  # None for COUNT(*)
    name: str


@dataclass(frozen=True)
class WindowSpec:
    """One SELECT of the query: which window over which key, computing what."""

    kind: str  # the literal the statement tags its rows with, as the Quix app does
    key: str  # the GROUP BY column besides the window
    function: str  # tumbling, hopping, sliding or session
    size_ms: int  # window size; the timeout for a session window
    hop_ms: int | None = None  # hopping windows only
    max_duration_ms: int | None = None  # session windows only
    aggregates: tuple[Aggregate, ...] = ()


@dataclass(frozen=True)
class AsaJob:
    """The query's windows and the job's event-ordering policy."""

    windows: tuple[WindowSpec, ...]
    out_of_order_ms: int  # EventsOutOfOrderMaxDelayInSeconds: ASA's counterpart of grace
    out_of_order_policy: str  # Drop (as Quix skips a late record) or Adjust
    late_arrival_s: int  # EventsLateArrivalMaxDelayInSeconds; -1 waits indefinitely

    def window(self, kind: str) -> WindowSpec:
        """The statement tagged `kind`."""
        for spec in self.windows:
            if spec.kind == kind:
                return spec
        raise AsaQueryError(f"The ASA query has no statement for the {kind} window.")


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def _window(statement: str, kind: str) -> tuple[str, int, int | None, int | None]:
    found = [m for m in _WINDOW.finditer(statement) if m["func"].lower() in FUNCTIONS]
    if len(found) != 1:
        raise AsaQueryError(f"The {kind} statement of the ASA query needs exactly one window.")
    function = FUNCTIONS[found[0]["func"].lower()]
    args = [a.strip() for a in found[0]["args"].split(",")]
    unit = UNIT_MS.get(args[0].lower())
    if unit is None or not all(a.isdigit() for a in args[1:]):
        raise AsaQueryError(
            f"The {kind} window's arguments {', '.join(args)} are not `unit, size[, size]`."
        )
    sizes = [int(a) * unit for a in args[1:]]
    expected = {"tumbling": 1, "hopping": 2, "sliding": 1, "session": 2}[function]
    if len(sizes) != expected:
        raise AsaQueryError(f"The {kind} {function} window takes {expected} sizes here.")
    if function == "hopping":
        return function, sizes[0], sizes[1], None
    if function == "session":
        return function, sizes[0], None, sizes[1]
    return function, sizes[0], None, None


def parse_query(text: str) -> tuple[WindowSpec, ...]:
    """Every windowed statement of an ASA query, in order."""
    body = _strip_comments(text)
    if not re.search(r"TIMESTAMP\s+BY", body, re.I):
        raise AsaQueryError(
            "The ASA query has no TIMESTAMP BY: its windows would use arrival time."
        )
    starts = list(_STATEMENT.finditer(body))
    if not starts:
        raise AsaQueryError("The ASA query has no `SELECT '<kind>' AS kind, <key>, ...` statement.")
    specs = []
    for i, match in enumerate(starts):
        statement = body[match.start() : starts[i + 1].start() if i + 1 < len(starts) else None]
        kind, key = match["kind"], match["key"]
        group = _GROUP.search(statement)
        if group is None or group["key"] != key:
            raise AsaQueryError(f"The {kind} statement must GROUP BY {key} and a window.")
        function, size, hop, max_duration = _window(statement, kind)
        aggregates = tuple(
            Aggregate(
                "COUNT_DISTINCT" if m["distinct"] else m["func"].upper(),
                None if m["column"] == "*" else m["column"],
                m["name"],
            )
            for m in _AGG.finditer(statement)
        )
        specs.append(WindowSpec(kind, key, function, size, hop, max_duration, aggregates))
    return tuple(specs)


def load_job(folder: Path = JOB_DIR) -> AsaJob:
    """The job in `folder`: the query its asaproj.json names, and its JobConfig.json."""
    try:
        project = json.loads((folder / "asaproj.json").read_text())
        config = json.loads((folder / "JobConfig.json").read_text())
        query = (folder / project["startFile"]).read_text()
    except (OSError, ValueError, KeyError) as exc:
        raise AsaQueryError(f"The ASA job in {folder.name}/ cannot be read: {exc}.") from None
    return AsaJob(
        windows=parse_query(query),
        out_of_order_ms=int(config["EventsOutOfOrderMaxDelayInSeconds"]) * 1000,
        out_of_order_policy=str(config["EventsOutOfOrderPolicy"]),
        late_arrival_s=int(config["EventsLateArrivalMaxDelayInSeconds"]),
    )
