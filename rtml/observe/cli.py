"""`rtml lag`: total lag per consumer group, or one group's partitions with a verdict each.

`rtml observe latency` and `rtml observe evaluate`: latency histograms and online evaluation.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from typing import TYPE_CHECKING

from rtml.config import Settings
from rtml.observe.lag import (
    ADVICE,
    ERRORS,
    SEVERITY,
    LagMonitor,
    LagReport,
    LagSnapshot,
    Status,
    require_group,
    snapshot_all,
)

if TYPE_CHECKING:
    from rtml.model.online import OnlineEvaluator

# librdkafka's and the Java client's default auto.commit.interval.ms, in seconds.
_COMMIT_INTERVAL = 5.0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml lag [GROUP] [--samples N] [--interval S]`."""
    lag = sub.add_parser(
        "lag",
        help="consumer lag: per group, or per partition with a verdict and advice",
        description="Without GROUP, list every consumer group with its total lag. With GROUP, "
        "sample its offsets N times, S seconds apart, and show each partition's committed "
        "offset, end offset, lag and status (OK, WARN, STALL, STOP, REWIND, UNKNOWN; rules "
        "like Burrow's), the group's status and what to do about it. Exits 1 when the group "
        "is STALL, STOP or REWIND.",
    )
    lag.add_argument("group", nargs="?", help="the consumer group (omit to list every group)")
    lag.add_argument(
        "--samples",
        type=_at_least_one,
        default=5,
        metavar="N",
        help="snapshots to take (default 5)",
    )
    lag.add_argument(
        "--interval",
        type=_not_negative,
        default=2.0,
        metavar="S",
        help="seconds between snapshots (default 2); make the window longer than the "
        "consumers' commit interval",
    )
    lag.set_defaults(func=_lag)
    _add_observe(sub)


def _add_observe(sub: argparse._SubParsersAction) -> None:
    """Add `rtml observe latency` and `rtml observe evaluate`."""
    observe = sub.add_parser(
        "observe",
        help="latency histograms and online evaluation of the predictions",
        description="Watch the predictions: how fast (latency) and how good (evaluate).",
    )
    actions = observe.add_subparsers(dest="action", required=True, metavar="ACTION")
    metrics = actions.add_parser(
        "metrics",
        help="serve Prometheus metrics on 127.0.0.1: throughput, lag, DLQs, stage counters",
        description="Serve /metrics in the Prometheus text format on 127.0.0.1 until Ctrl-C.",
    )
    metrics.add_argument("--port", type=int, default=9464, help="port (default 9464)")
    metrics.set_defaults(func=_metrics)
    latency = actions.add_parser(
        "latency",
        help="freshness and event-to-prediction latency, p50/p95/p99/max, live",
        description="Follow the predictions topic and print, every --interval seconds, the "
        "p50/p95/p99/max of feature freshness (feature_time - appended_time), "
        "event-to-prediction latency (prediction timestamp - appended_time) and scoring "
        "time (prediction timestamp - feature_time), in ms, over the last --seconds and "
        "since the start. Ctrl-C stops.",
    )
    latency.add_argument(
        "--seconds", type=_window_seconds, default=10, metavar="N", help="window (default 10)"
    )
    latency.add_argument(
        "--from-start",
        action="store_true",
        help="read the topic from its beginning (default: only new predictions)",
    )
    latency.add_argument(
        "--interval", type=_not_negative, default=2.0, metavar="S", help="seconds between tables"
    )
    latency.add_argument(
        "--once",
        action="store_true",
        help="read what is in the topic now (from the beginning) and print one table",
    )
    latency.add_argument(
        "--topic", default="predictions", help="the predictions topic (default predictions)"
    )
    latency.add_argument(
        "--write",
        action="store_true",
        help="also write the window's histograms (JSON) where the control room reads them",
    )
    latency.set_defaults(func=_latency)

    evaluate = actions.add_parser(
        "evaluate",
        help="precision, recall and average precision from the delayed labels, and drift",
        description="Join predictions with their labels by transaction id and print the "
        "metrics of the last --window of event time: precision and recall of the decisions "
        "(flagged = REVIEW or DECLINE), average precision of the scores, PSI of the scores "
        "against the first window, and what the join could not match. Durations take a "
        "unit: 30s, 10m, 6h, 1d.",
    )
    evaluate.add_argument(
        "--window", type=_duration_ms, default="1d", metavar="D", help="default 1d"
    )
    evaluate.add_argument(
        "--horizon",
        type=_duration_ms,
        default="8d",
        metavar="D",
        help="how long after its transaction a label may come (default 8d)",
    )
    evaluate.add_argument("--predictions", default="predictions", help="its topic")
    evaluate.add_argument("--labels", default="labels", help="its topic")
    evaluate.add_argument(
        "--drift",
        action="store_true",
        help="also read the features of the first and the last window and print their PSI",
    )
    evaluate.add_argument(
        "--follow",
        action="store_true",
        help="keep following and print again every --interval seconds",
    )
    evaluate.add_argument(
        "--interval", type=_not_negative, default=5.0, metavar="S", help="with --follow"
    )
    evaluate.set_defaults(func=_evaluate)


def _latency(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.observe.latency import (
        LatencyHistograms,
        follow_predictions,
        read_latency,
        render,
        snapshot_path,
    )

    if args.once:
        histograms = read_latency(settings, topic=args.topic)
        print(render(histograms.snapshot(), f"{histograms.records:,} predictions, in ms"))
        return 0
    since = 0 if args.from_start else None
    where = "from the beginning" if args.from_start else "new predictions only"
    print(f"Following predictions ({where}); Ctrl-C stops.", flush=True)
    histograms = LatencyHistograms(keep_s=args.seconds)
    shown = time.monotonic()
    for _ in follow_predictions(settings, since, histograms, topic=args.topic):
        if time.monotonic() - shown < args.interval:
            continue
        shown = time.monotonic()
        window = histograms.window(args.seconds, now_ms=time.time_ns() // 1_000_000)
        if args.write:
            window.write(snapshot_path(settings))
        print(render(window, f"\nLast {args.seconds} s (ms):"))
        print(render(histograms.snapshot(), "Since start (ms):"), flush=True)
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.model.online import OnlineEvaluator, evaluate, follow_evaluation

    evaluator = OnlineEvaluator(window_ms=args.window, horizon_ms=args.horizon)
    if not args.follow:
        evaluate(settings, evaluator, predictions=args.predictions, labels=args.labels)
        print(render_evaluation(evaluator))
        if args.drift:
            print(render_drift(settings, evaluator))
        return 0
    shown = time.monotonic()
    for _caught_up in follow_evaluation(
        settings, evaluator, predictions=args.predictions, labels=args.labels
    ):
        if time.monotonic() - shown >= args.interval:
            shown = time.monotonic()
            print(render_evaluation(evaluator), flush=True)
    return 0


def render_evaluation(evaluator: OnlineEvaluator) -> str:
    """The current window's metrics and score drift, and the join's counts, as text."""
    result = evaluator.current()
    c = result.counts
    lines = []
    if result.window_start is None:
        lines.append("No prediction has its label yet.")
    else:
        m = result.metrics
        lines += [
            f"Window {_when(result.window_start)} to {_when(result.window_end)} (event time): "
            f"{m.n:,} labelled predictions, {m.frauds:,} frauds, {m.flagged:,} flagged",
            f"  precision {m.precision:.3f}  recall {m.recall:.3f}  "
            f"average precision {m.average_precision:.3f}",
            f"  score PSI vs the first window {result.score_psi:.3f} ({result.score_drift}; "
            "stable < 0.1 <= moderate < 0.25 <= major)",
        ]
    lines.append(
        f"Join: {c.predictions:,} predictions, {c.labels:,} labels, {c.joined:,} joined; "
        f"waiting {c.pending_predictions:,} predictions, {c.pending_labels:,} labels; "
        f"{c.expired_predictions:,} predictions got no label within the horizon, "
        f"{c.orphan_labels:,} labels no prediction; {c.evicted:,} evicted; duplicates "
        f"{c.duplicate_predictions:,} predictions, {c.duplicate_labels:,} labels; "
        f"{evaluator.undecodable:,} records did not decode."
    )
    if evaluator.dropped_rows:
        lines.append(
            f"{evaluator.dropped_rows:,} joined rows were dropped to bound memory: the window "
            "covers fewer transactions than it had."
        )
    return "\n".join(lines)


def render_drift(settings: Settings, evaluator: OnlineEvaluator) -> str:
    """PSI of each feature, first window against the current one, read from `features`."""
    from rtml.model.online import drift_table, read_features_between

    result = evaluator.current()
    first = evaluator.first_time
    if result.window_start is None or first is None:
        return "No window to compare yet."
    reference = read_features_between(settings, first, first + evaluator.window_ms)
    current = read_features_between(settings, result.window_start, result.window_end)
    table = drift_table(reference, current)
    return (
        f"Feature drift, first window ({len(reference):,} rows) vs the last "
        f"({len(current):,} rows):\n" + table.to_string(float_format=lambda v: f"{v:.3f}")
    )


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _metrics(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.observe.metrics import serve

    server, thread = serve(settings, args.port)
    print(f"Prometheus metrics at http://127.0.0.1:{args.port}/metrics; Ctrl-C stops them.")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def _lag(args: argparse.Namespace, settings: Settings) -> int:
    if args.group is None:
        print(render_groups(snapshot_all(settings)))
        return 0
    require_group(settings, args.group)
    window = (args.samples - 1) * args.interval
    if window > 0:
        print(f"Sampling {args.group!r} {args.samples} times over {window:g} s ...", flush=True)
    report = LagMonitor(settings, args.group, args.samples, args.interval).run()
    print(render_report(report))
    return 1 if report.status in ERRORS else 0


def render_groups(snapshots: list[LagSnapshot]) -> str:
    """One line per group: state, members, partitions and total lag."""
    if not snapshots:
        return "No consumer groups yet: a group appears when a consumer joins it or commits."
    width = max(len("GROUP"), *(len(s.group) for s in snapshots))
    lines = [f"{'GROUP':<{width}}  {'STATE':<22} {'MEMBERS':>7} {'PARTITIONS':>10} {'LAG':>12}"]
    lines += [
        f"{s.group:<{width}}  {s.state:<22} {s.members:>7} {len(s.partitions):>10} "
        f"{s.total_lag:>12,}"
        for s in snapshots
    ]
    lines.append("Run `rtml lag GROUP` for each partition's status.")
    return "\n".join(lines)


def render_report(report: LagReport) -> str:
    """A table of partitions with their status, the group's status, and advice per status."""
    member_word = "member" if report.members == 1 else "members"
    lines = [
        f"Group {report.group!r}: {report.state}, {report.members} {member_word}; "
        f"{report.samples} sample(s) over {report.window:.1f} s"
    ]
    if not report.partitions:
        lines.append("It has no committed offsets and no assigned partitions yet.")
    else:
        rows = [
            (
                p.lag.topic,
                str(p.lag.partition),
                "-" if p.lag.committed is None else str(p.lag.committed),
                str(p.lag.end),
                str(p.lag.lag),
                p.status.value,
                p.lag.owner or "-",
            )
            for p in report.partitions
        ]
        header = ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "STATUS", "OWNER")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [
                cell.ljust(w) if i in (0, 5, 6) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        if any(p.lag.committed is None for p in report.partitions):
            lines.append(
                "COMMITTED '-': never committed; lag counts from the log start "
                "(auto.offset.reset=earliest)."
            )
    lines.append(f"Total lag {report.total_lag:,} records. Group status: {report.status}")
    present = sorted({p.status for p in report.partitions}, key=SEVERITY.__getitem__)
    for status in reversed(present or [report.status]):
        lines.append(f"  {status}: {ADVICE[status]}")
    if Status.STALL in present and report.window < _COMMIT_INTERVAL:
        lines.append(
            f"Note: a {report.window:.1f} s window is shorter than the default commit "
            f"interval ({_COMMIT_INTERVAL:g} s): a healthy consumer may look STALL."
        )
    return "\n".join(lines)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return value


def _window_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    # One histogram per second and measure (about 70 KB each) is kept for the window.
    if not 1 <= value <= 300:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds, 1 to 300")
    return value


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _duration_ms(text: str) -> int:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)", text.strip())
    value = round(float(match.group(1)) * _UNITS_MS[match.group(2)]) if match else 0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use a number and a unit, like 30s, 10m, 6h or 1d"
        )
    return value
