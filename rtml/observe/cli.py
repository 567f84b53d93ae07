"""`rtml lag`: total lag per consumer group, or one group's partitions with a verdict each."""

from __future__ import annotations

import argparse
import math

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
