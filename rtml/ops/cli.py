"""`rtml dlq list|show|redrive` and `rtml replay reset|show|sandbox|compare`: operator tools,
printed."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.topics import DLQ_STAGES

if TYPE_CHECKING:
    from rtml.ops.dlq import DlqRecord
    from rtml.ops.replay import GroupView, ResetPlan, Target


def _dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.ops.dlq import summaries

    for s in summaries(settings):
        if not s.exists:
            print(f"  {s.topic:<18} does not exist (create it with `rtml topics apply`)")
            continue
        errors = ", ".join(f"{name} {n:,}" for name, n in s.error_types.items()) or "-"
        print(f"  {s.topic:<18} {s.records:>8,} records   {errors}")
    return 0


def _dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.ops.dlq import records

    found = records(settings, args.stage, args.limit, args.partition, args.offset)
    for record in found:
        print(_render_record(record))
    print(f"{len(found)} record(s) shown.")
    return 0


def _render_record(r: DlqRecord) -> str:
    """A DLQ record as a few indented lines: where, why, origin, key, value, own headers."""
    from rtml.ops.dlq import format_time

    o = r.origin
    lines = [
        f"{r.topic} {r.partition}:{r.offset}  {format_time(r.timestamp_ms)}",
        f"  error    {o.get('error_type', '?')}: {o.get('error', '')} "
        f"(stage {o.get('stage', '?')}, group {o.get('group', '?')}, "
        f"attempts {o.get('attempts', '?')})",
        f"  origin   {o.get('topic', '?')} {o.get('partition', '?')}:{o.get('offset', '?')}"
        + (f" at {format_time(o['timestamp'])}" if "timestamp" in o else ""),
        f"  key      {r.key!r}",
        f"  value    ({r.value_format}) "
        + (json.dumps(r.value, default=str) if isinstance(r.value, dict) else repr(r.value)),
    ]
    lines += [f"  header   {k}={v.decode(errors='replace')}" for k, v in r.headers]
    return "\n".join(lines)


def _dlq_redrive(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.ops.dlq import parse_offsets, redrive

    offsets = parse_offsets(args.offsets) if args.offsets else None
    report = redrive(settings, args.stage, offsets, dry_run=args.dry_run)
    for item in report.items:
        where = f"{report.topic} {item.partition}:{item.offset}"
        to = f" -> {item.origin_topic}" if item.origin_topic else ""
        why = f": {item.reason}" if item.reason else ""
        print(f"  {item.action:<17} {where}{to}{why}")
    sent = report.count("would send" if report.dry_run else "sent")
    print(
        f"{'Dry run: would send' if report.dry_run else 'Sent'} {sent} record(s); "
        f"skipped {report.count('skipped')}, already redriven {report.count('already redriven')}."
    )
    return 0


def _target(text: str) -> Target:
    """An argparse type for --to: a Target, or a usage error with the sentence."""
    from rtml.ops.replay import parse_target

    try:
        return parse_target(text)
    except RtmlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _replay_reset(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.ops.replay import reset

    result = reset(settings, args.group, args.to, args.topic, dry_run=args.dry_run)
    print(_render_plan(result))
    return 0


def _render_plan(p: ResetPlan) -> str:
    """The before/after table of a reset, and what happened."""
    lines = [
        f"Group {p.group!r} ({p.state}) to {p.target}:",
        f"  {'topic':<24} {'part':>4} {'before':>10} {'after':>10} {'lag before':>11} "
        f"{'lag after':>10}",
    ]
    for m in p.moves:
        before = "-" if m.before is None else f"{m.before:,}"
        lag = "-" if m.lag_before is None else f"{m.lag_before:,}"
        lines.append(
            f"  {m.topic:<24} {m.partition:>4} {before:>10} {m.after:>10,} {lag:>11} "
            f"{m.lag_after:>10,}"
        )
    lines += [f"  {t}: deleted topic, its offsets are left as they are" for t in p.missing]
    lag_after = sum(m.lag_after for m in p.moves)
    if p.applied:
        lines.append(f"Reset {len(p.moves)} partition(s); the group resumes {lag_after:,} behind.")
    else:
        lines.append("Dry run: nothing changed; run it without --dry-run to apply.")
    return "\n".join(lines)


def _replay_show(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.ops.replay import show

    print(_render_group(show(settings, args.group)))
    return 0


def _render_group(g: GroupView) -> str:
    lines = [f"Group {g.group!r}: {g.state}, {len(g.members)} member(s)"]
    for m in g.members:
        parts = ", ".join(f"{t}:{p}" for t, p in m.partitions) or "none"
        lines.append(f"  member {m.member_id} ({m.client_id} on {m.host}): {parts}")
    lines.append(f"  {'topic':<24} {'part':>4} {'committed':>10} {'end':>10} {'lag':>10}")
    for c in g.offsets:
        lines.append(f"  {c.topic:<24} {c.partition:>4} {c.offset:>10,} {c.end:>10,} {c.lag:>10,}")
    lines += [f"  {t}: deleted topic (offsets still committed)" for t in g.missing]
    lines.append(f"Total lag {sum(c.lag for c in g.offsets):,}.")
    return "\n".join(lines)


def _replay_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm.auto import tqdm

    from rtml.ops.sandbox import run

    with tqdm(unit=" records", desc=f"sandbox {args.name}", disable=args.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = run(settings, args.version, args.name, args.replace, progress)
    print(result.sentence())
    return 0


def _replay_compare(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.ops.sandbox import compare

    result = compare(settings, args.first, args.second)
    print(result.table.to_string())
    print()
    print("Decisions, first run (rows) against second (columns):")
    print(result.moves.to_string())
    if result.identical:
        print("Identical: every transaction got the same score, decision and model version.")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml dlq list|show|redrive` and `rtml replay reset|show|sandbox|compare`."""
    dlq = sub.add_parser(
        "dlq",
        help="dead-letter queues: what they hold, each record, redrive",
        description="Inspect the dead-letter queue of each stage (<stage>.dlq) and send "
        "records back to their origin topic once the cause is fixed.",
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "list",
        help="records held by each DLQ, counted by error type",
        description="One line per DLQ of the catalogue: records held and the count of each "
        "error type (from the rtml.error_type header).",
    ).set_defaults(func=_dlq_list)
    show = actions.add_parser(
        "show",
        help="records of one DLQ with origin, key and decoded value",
        description="Print records of STAGE's DLQ: partition and offset, origin (topic, "
        "partition, offset, time, group, stage, error), key and value, decoded as Avro of "
        "the origin topic's schema when it is, else a text or hex preview.",
    )
    show.add_argument("stage", help=f"the stage whose DLQ to read ({', '.join(DLQ_STAGES)})")
    show.add_argument("--limit", type=int, default=20, help="most records shown (default 20)")
    show.add_argument("--partition", type=int, metavar="P", help="only this partition")
    show.add_argument(
        "--offset",
        type=int,
        metavar="O",
        help="start at this offset of --partition (with --limit 1: only that record)",
    )
    show.set_defaults(func=_dlq_show)
    redrive = actions.add_parser(
        "redrive",
        help="send DLQ records back to their origin topic, once",
        description="Send the records of STAGE's DLQ back to the topic in their rtml.topic "
        "header, with their key, value and own headers plus rtml.redriven_from. Each record "
        "is sent once: the records and the consumer group rtml-dlq-redrive-STAGE's progress "
        "are one Kafka transaction, so a second run sends nothing again.",
    )
    redrive.add_argument("stage", help="the stage whose DLQ to redrive")
    redrive.add_argument(
        "--offsets",
        nargs="+",
        metavar="P:O",
        help="only these records (partition:offset, comma or space separated)",
    )
    redrive.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send nothing"
    )
    redrive.set_defaults(func=_dlq_redrive)

    replay = sub.add_parser(
        "replay",
        help="reset a stopped consumer group's offsets (replay or skip)",
        description="Move a consumer group's committed offsets so it reads again from a point "
        "(or skips ahead) when it next starts. The group must be stopped.",
    )
    replay_actions = replay.add_subparsers(dest="action", required=True, metavar="ACTION")
    reset = replay_actions.add_parser(
        "reset",
        help="move a stopped group's committed offsets",
        description="Move GROUP's committed offsets on every topic it has committed offsets "
        "for (or only --topic ones) to earliest, latest, offset:N (clamped to each "
        "partition's range) or time:T (the first record at or after T; the end if none). "
        "Refused while the group has active members. Prints before, after and lag.",
    )
    reset.add_argument("group", help="the consumer group")
    reset.add_argument(
        "--to",
        type=_target,
        required=True,
        metavar="TARGET",
        help="earliest, latest, offset:N or time:<ISO 8601 or epoch ms>",
    )
    reset.add_argument(
        "--topic", action="append", metavar="T", help="only this topic (repeat for more)"
    )
    reset.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    reset.set_defaults(func=_replay_reset)
    group = replay_actions.add_parser(
        "show",
        help="a group's state, members and committed offsets with lag",
        description="Show GROUP's state, its members with their partitions, and its "
        "committed offsets with the end offset and lag of each partition.",
    )
    group.add_argument("group", help="the consumer group")
    group.set_defaults(func=_replay_show)
    sandbox = replay_actions.add_parser(
        "sandbox",
        help="score all features so far with one saved model into a sandbox topic",
        description="Replay the features topic from offset 0 (no consumer group: the lab is "
        "not touched) through saved model VERSION (`rtml model list`) with the prediction "
        "service's own scoring code, into predictions.sandbox-NAME. Compare two sandboxes, "
        "or a sandbox and the live predictions, with `rtml replay compare`.",
    )
    sandbox.add_argument("version", help="a saved model version, e.g. v0002")
    sandbox.add_argument("name", help="the sandbox's name (lower-case letters, digits, - and _)")
    sandbox.add_argument(
        "--replace", action="store_true", help="delete the sandbox's topic first if it exists"
    )
    sandbox.add_argument("--quiet", action="store_true", help="no progress bar")
    sandbox.set_defaults(func=_replay_sandbox)
    compare = replay_actions.add_parser(
        "compare",
        help="two prediction runs side by side, with the labels so far",
        description="Compare two sandboxes (or a sandbox and `predictions`) transaction by "
        "transaction: decisions, agreement, score differences, and precision, recall and "
        "average precision on the transactions labelled so far.",
    )
    compare.add_argument("first", help="a sandbox name, or predictions")
    compare.add_argument("second", help="a sandbox name, or predictions")
    compare.set_defaults(func=_replay_compare)
