"""ASA's windows (as `rtml.asa.semantics` models them) beside the windows rtml's Quix app
wrote to the `windows` topic, on the same history; every difference named, none hidden.

The two engines differ on purpose in three places, and the comparison labels each:

- boundaries: Quix's time windows are [start, end), ASA's (start, end]. An event exactly
  on an hour boundary lands in different tumbling and hopping windows; Quix's sliding
  window [t - size, t] also holds an event exactly one size back, which ASA's (t - size, t]
  does not. Such a pair of windows is `differs: boundary` (an event sits on the edge).
- emission: ASA's sliding window also emits when an event leaves the window (`ASA only:
  exit`); Quix's `final()` emits windows that end at an event only.
- sessions: ASA requires a maximum duration and cuts a longer session at its check points
  (`differs: max duration`); Quix has none. ASA stamps a session with its end, last event
  + timeout; Quix's ends at last event + 1 ms. Matched by their first event, the ends are
  shown side by side, not counted as a difference.

A fourth difference is not about semantics but about input order: the `terminals` windows
run on a repartition topic, which interleaves the 6 source partitions, so a terminal's
records reach Quix slightly out of event-time order and a few come after their window closed
(+ grace) and are skipped. ASA reads the input in event-time order across its partitions.
Given the records Quix skipped (`late_in_repartition`), such windows are `differs: late in
Quix`.

Anything else that differs is `differs` (unexplained), which the tests require never to
happen. Windows still open when the data ended (Quix emits a window only once stream time
has passed its end and the grace period) are `open at end`, left out of the comparison.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence

import pandas as pd
from confluent_kafka import Message

from rtml.asa.query import AsaJob, WindowSpec
from rtml.asa.semantics import evaluate

STATUSES = (
    "same",
    "differs: boundary",
    "differs: max duration",
    "differs: late in Quix",
    "ASA only: exit",
    "ASA only: boundary",
    "Quix only: boundary",
    "differs",
    "ASA only",
    "Quix only",
)
EXPLAINED = {s for s in STATUSES if s not in ("differs", "ASA only", "Quix only")}


def quix_windows(records: Iterable[Message]) -> pd.DataFrame:
    """The `windows` topic's records as a frame: kind, key (the record key), start, end and
    the aggregates."""
    rows = []
    for msg in records:
        if msg.error() is not None or not msg.key():
            continue
        record = json.loads(msg.value())
        rows.append({**record, "key": int(msg.key())})
    return pd.DataFrame(rows)


def _same(a: object, b: object) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return list(a) == list(b)  # type: ignore[arg-type]
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)  # type: ignore[arg-type]
    return a == b


def late_in_repartition(
    records: Iterable[Message], key_field: str, size_ms: int, grace_ms: int
) -> set[tuple[int, int]]:
    """(key, event time) of each record a Quix tumbling window of `size_ms` skipped as late,
    from the topic it read, in the order each partition delivered it: a record is late when
    its window [s, s + size) ended at or before the key's latest event time minus grace."""
    latest: dict[int, int] = {}
    late = set()
    for msg in records:
        if msg.error() is not None:
            continue
        record = json.loads(msg.value())
        key, ts = int(record[key_field]), int(record["tx_datetime"])
        end = (ts // size_ms + 1) * size_ms
        if key in latest and end <= latest[key] - grace_ms:
            late.add((key, ts))
        latest[key] = max(latest.get(key, ts), ts)
    return late


def _inside_quix_session(q: pd.DataFrame, key: int, ts: int) -> bool:
    if not len(q):
        return False
    mine = q[q["key"] == key]
    return bool(((mine["start"] <= ts) & (ts < mine["end"])).any())


def _closing_span(spec: WindowSpec, grace_ms: int) -> int:
    """How far stream time must pass a window's end before Quix has surely emitted it."""
    if spec.function == "session":
        return 2 * spec.size_ms + grace_ms
    return spec.size_ms + grace_ms + 1


def compare_kind(
    spec: WindowSpec,
    transactions: pd.DataFrame,
    quix: pd.DataFrame,
    grace_ms: int,
    late: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
) -> pd.DataFrame:
    """One row per window of either engine for the statement `spec`: key, start/end of
    each side, both counts, status and what differs."""
    asa = evaluate(spec, transactions)
    q = quix[quix["kind"] == spec.kind] if len(quix) else quix
    names = [a.name for a in spec.aggregates]
    stamps = {k: set(g.tolist()) for k, g in transactions.groupby(spec.key)["event_time_ms"]}
    last = {k: max(v) for k, v in stamps.items()}
    span = _closing_span(spec, grace_ms)

    def is_open(key: int, end: int) -> bool:
        return end + span > last.get(key, 0)

    def on_edge(key: int, start: int, end: int) -> bool:
        return bool({start, end} & stamps.get(key, set()))

    def skipped(key: int, start: int, end: int) -> bool:
        # A record Quix skipped as late, inside this window (either convention).
        return any(k == key and start <= ts <= end for k, ts in late)

    # How windows pair up: Quix [s, e) with ASA (s, e]; a Quix sliding window [t - size, t]
    # with ASA's output on entry at t; sessions by their first event.
    if spec.function == "session":
        asa_ids = list(zip(asa["key"], asa["first"], strict=True))
        q_ids = list(zip(q["key"], q["start"], strict=True)) if len(q) else []
    elif spec.function == "sliding":
        asa_ids = list(zip(asa["key"], asa["end"], strict=True))
        q_ids = list(zip(q["key"], q["end"], strict=True)) if len(q) else []
    else:
        asa_ids = list(zip(asa["key"], asa["start"], asa["end"], strict=True))
        q_ids = list(zip(q["key"], q["start"], q["end"], strict=True)) if len(q) else []
    q_rows = {i: r for i, r in zip(q_ids, q.to_dict("records") if len(q) else [], strict=True)}
    rows = []
    matched = set()
    for ident, a in zip(asa_ids, asa.to_dict("records"), strict=True):
        key = int(a["key"])
        qr = q_rows.get(ident)
        row = {
            "kind": spec.kind,
            "key": key,
            "asa_start": a["start"],
            "asa_end": a["end"],
            "quix_start": None,
            "quix_end": None,
            "asa_count": a.get("count"),
            "quix_count": None,
            "detail": "",
        }
        if qr is None:
            if spec.function == "sliding" and a["trigger"] == "exit":
                row["status"] = "ASA only: exit"
            elif spec.function == "session" and _inside_quix_session(q, key, int(a["first"])):
                # The continuation of a session ASA cut at its maximum duration.
                row["status"] = "differs: max duration"
            elif is_open(key, int(a["end"])):
                row["status"] = "open at end"
            elif on_edge(key, int(a["start"]), int(a["end"])):
                row["status"] = "ASA only: boundary"
            elif skipped(key, int(a["start"]), int(a["end"])):
                row["status"] = "differs: late in Quix"
            else:
                row["status"] = "ASA only"
            rows.append(row)
            continue
        matched.add(ident)
        row.update(quix_start=qr["start"], quix_end=qr["end"], quix_count=qr.get("count"))
        differing = [n for n in names if n in qr and not _same(a[n], qr[n])]
        if not differing:
            row["status"] = "same"
        elif spec.function == "session" and a["trigger"] == "max-duration":
            row["status"] = "differs: max duration"
        elif spec.function != "session" and on_edge(key, int(a["start"]), int(a["end"])):
            row["status"] = "differs: boundary"
        elif skipped(key, int(a["start"]), int(a["end"])):
            row["status"] = "differs: late in Quix"
        elif spec.function == "session" and is_open(key, int(a["end"])):
            row["status"] = "open at end"
        else:
            row["status"] = "differs"
        row["detail"] = ", ".join(f"{n}: ASA {a[n]} / Quix {qr[n]}" for n in differing)
        rows.append(row)
    for ident, qr in q_rows.items():
        if ident in matched:
            continue
        key = int(qr["key"])
        row = {
            "kind": spec.kind,
            "key": key,
            "asa_start": None,
            "asa_end": None,
            "quix_start": qr["start"],
            "quix_end": qr["end"],
            "asa_count": None,
            "quix_count": qr.get("count"),
            "detail": "",
        }
        if is_open(key, int(qr["end"])):
            row["status"] = "open at end"
        elif spec.function == "session":
            # A session ASA cut at its maximum duration continues under another first event.
            row["status"] = "differs: max duration"
        elif on_edge(key, int(qr["start"]), int(qr["end"])):
            row["status"] = "Quix only: boundary"
        else:
            row["status"] = "Quix only"
        rows.append(row)
    return pd.DataFrame(rows)


def compare(
    job: AsaJob,
    transactions: pd.DataFrame,
    quix: pd.DataFrame,
    grace_ms: int,
    late: dict[str, set[tuple[int, int]]] | None = None,
) -> pd.DataFrame:
    """`compare_kind` for every statement of the job (`late`: per kind, what Quix skipped)."""
    late = late or {}
    return pd.concat(
        [
            compare_kind(spec, transactions, quix, grace_ms, late.get(spec.kind, set()))
            for spec in job.windows
        ],
        ignore_index=True,
    )


def summary(result: pd.DataFrame, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """Windows per kind (rows) and status (columns)."""
    table = pd.crosstab(result["kind"], result["status"])
    order = [s for s in (*STATUSES, "open at end") if s in table.columns]
    table = table[order]
    if kinds is not None:
        table = table.reindex([k for k in kinds if k in table.index])
    return table
