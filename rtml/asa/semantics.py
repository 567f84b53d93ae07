"""What Azure Stream Analytics' documented window semantics give on a history: a model, not ASA.

There is no Azure here, so this evaluates each parsed window clause (`rtml.asa.query`) with
pandas by the rules Microsoft documents, and nothing else:

- Tumbling and hopping windows are end-inclusive and start-exclusive: a 12:00-13:00 window
  holds an event at exactly 13:00, not one at 12:00. Windows are aligned to multiples of
  their size (hop), and a result is emitted at the window's end, stamped with that end.
  https://learn.microsoft.com/stream-analytics-query/tumbling-window-azure-stream-analytics
  https://learn.microsoft.com/stream-analytics-query/hopping-window-azure-stream-analytics
- Sliding windows emit only when the content changes: when an event enters (at its time t,
  the window (t - size, t]) and when one leaves (at t + size). Empty windows are not emitted.
  https://learn.microsoft.com/stream-analytics-query/sliding-window-azure-stream-analytics
- Session windows start at an event and grow while the next event comes within the timeout
  of the last; otherwise they end at last + timeout. A maximum duration is checked at
  multiples of itself (t = 0, M, 2M, ...): at the first check where the window is longer
  than M it is closed and a new one opens at that point, so a session can last up to 2M.
  https://learn.microsoft.com/stream-analytics-query/session-window-azure-stream-analytics
  The page does not say whether an event exactly one timeout after the last still joins;
  this model takes it in, as every ASA window includes its end.
- Windows are computed per value of the GROUP BY key; the out-of-order policy
  (JobConfig.json) only matters for records out of event-time order, which a replayed
  history has none of.
  https://learn.microsoft.com/azure/stream-analytics/stream-analytics-window-functions

Each window row has `kind`, `key`, `start` and `end` (ms; the window is (start, end]),
`first` (the first event's time), `trigger` (sliding: enter or exit; session: timeout or
max-duration), and one column per aggregate of the statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pandas as pd

from rtml.asa.query import AsaQueryError, WindowSpec

COLUMNS = ["kind", "key", "start", "end", "first", "trigger"]


def _aggregate(spec: WindowSpec, rows: pd.DataFrame) -> dict[str, object]:
    out: dict[str, object] = {}
    for agg in spec.aggregates:
        values = rows[agg.column] if agg.column else None
        if agg.func == "COUNT":
            out[agg.name] = len(rows) if values is None else int(values.notna().sum())
        elif agg.func == "COUNT_DISTINCT":
            out[agg.name] = int(values.nunique())
        elif agg.func == "SUM":
            out[agg.name] = float(values.sum())
        elif agg.func == "AVG":
            out[agg.name] = float(values.mean())
        elif agg.func == "MIN":
            out[agg.name] = float(values.min())
        elif agg.func == "MAX":
            out[agg.name] = float(values.max())
        elif agg.func == "COLLECT":
            out[agg.name] = [int(v) for v in values]
        else:  # parse_query only makes the ones above
            raise AsaQueryError(f"The aggregate {agg.func} is not modelled.")
    return out


def _ceil(ts: int, step: int) -> int:
    return -(-ts // step) * step


def _tumbling_or_hopping(spec: WindowSpec, events: pd.DataFrame) -> Iterator[dict]:
    hop = spec.hop_ms or spec.size_ms
    ends: dict[int, list[int]] = {}
    for i, ts in enumerate(events["ts"].tolist()):
        # Windows (end - size, end] with end on a multiple of the hop: the first end at or
        # after ts (an event on a boundary ends its window), then every hop while it covers ts.
        end = _ceil(ts, hop)
        while end - spec.size_ms < ts:
            ends.setdefault(end, []).append(i)
            end += hop
    for end in sorted(ends):
        rows = events.iloc[ends[end]]
        yield {
            "start": end - spec.size_ms,
            "end": end,
            "first": int(rows["ts"].min()),
            "trigger": "end",
            **_aggregate(spec, rows),
        }


def _sliding(spec: WindowSpec, events: pd.DataFrame) -> Iterator[dict]:
    ts = events["ts"]
    entering = set(ts.tolist())
    points = sorted(entering | {t + spec.size_ms for t in entering})
    for p in points:
        rows = events[(ts > p - spec.size_ms) & (ts <= p)]
        if rows.empty:
            continue
        yield {
            "start": p - spec.size_ms,
            "end": p,
            "first": int(rows["ts"].min()),
            "trigger": "enter" if p in entering else "exit",
            **_aggregate(spec, rows),
        }


def _sessions(spec: WindowSpec, events: pd.DataFrame) -> Iterator[dict]:
    timeout, longest = spec.size_ms, spec.max_duration_ms
    assert longest is not None
    stamps = events["ts"].tolist()
    members: list[int] = []
    start = last = 0

    def cut_point(start: int) -> int:
        # The first check (a multiple of M) at which the window is longer than M.
        return (start // longest + 2) * longest if start % longest else start + 2 * longest

    def close(end: int, trigger: str) -> dict:
        rows = events.iloc[members]
        return {
            "start": start,
            "end": end,
            "first": int(rows["ts"].min()),
            "trigger": trigger,
            **_aggregate(spec, rows),
        }

    for i, ts in enumerate(stamps):
        if members:
            cut = cut_point(start)
            if ts - last <= timeout and ts <= cut:
                members.append(i)
                last = ts
                continue
            if cut < last + timeout:  # closed by the maximum duration, not the timeout
                yield close(cut, "max-duration")
                carried = ts - last <= timeout  # a new window opened at the check point
                members, start, last = [i], (cut if carried else ts), ts
                continue
            yield close(last + timeout, "timeout")
        members, start, last = [i], ts, ts
    if members:
        cut = cut_point(start)
        yield close(
            min(last + timeout, cut), "timeout" if last + timeout <= cut else "max-duration"
        )


_EVALUATORS = {
    "tumbling": _tumbling_or_hopping,
    "hopping": _tumbling_or_hopping,
    "sliding": _sliding,
    "session": _sessions,
}


def evaluate(
    spec: WindowSpec, transactions: pd.DataFrame, time_column: str = "event_time_ms"
) -> pd.DataFrame:
    """The windows `spec` gives on `transactions` (one row per transaction, event time in
    ms in `time_column`), per key, oldest first."""
    frame = transactions.assign(ts=transactions[time_column].astype("int64"))
    frame = frame.sort_values(["ts"], kind="mergesort")
    names = [a.name for a in spec.aggregates]
    rows = []
    for key, events in frame.groupby(spec.key, sort=True):
        for window in _EVALUATORS[spec.function](spec, events.reset_index(drop=True)):
            rows.append({"kind": spec.kind, "key": int(key), **window})
    return pd.DataFrame(rows, columns=[*COLUMNS, *names])


def evaluate_all(specs: Sequence[WindowSpec], transactions: pd.DataFrame) -> pd.DataFrame:
    """Every statement's windows in one frame."""
    return pd.concat([evaluate(s, transactions) for s in specs], ignore_index=True)
