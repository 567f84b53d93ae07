"""`rtml chaos list` and `rtml chaos run NAME`: a scenario from the shell, its timeline live."""

from __future__ import annotations

import argparse
import sys

from rtml.chaos.scenarios import SCENARIOS, ChaosResult
from rtml.chaos.timeline import Event
from rtml.config import Settings


def _list(args: argparse.Namespace, settings: Settings) -> int:
    width = max(len(s.name) for s in SCENARIOS)
    for s in SCENARIOS:
        rate = f"{s.rate:,.0f}/s" if s.rate else "flat out"
        print(f"  {s.name:<{width}} {s.summary}")
        print(f"  {'':<{width}} default: {s.records:,} records at {rate}")
    return 0


def _print_event(event: Event) -> None:
    print(event.line(), flush=True)


def render(result: ChaosResult) -> str:
    """The verdict table, the checks and the times to resume, as the terminal shows them."""
    lines = [f"Scenario {result.scenario}: {'PASSED' if result.passed else 'FAILED'}"]
    if result.said:
        lines.append(f"  {result.said}")
    lines += [f"  {what:<28} {n:>10,}" for what, n in result.verdict.rows()]
    if result.verdict.lost_ids:
        lines.append(f"  lost ids (first): {', '.join(map(str, result.verdict.lost_ids))}")
    if result.verdict.duplicated_ids:
        ids = ", ".join(map(str, result.verdict.duplicated_ids))
        lines.append(f"  duplicated ids (first): {ids}")
    for r in result.resumes:
        took = f"{r.seconds:.2f} s" if r.seconds is not None else "never"
        lines.append(f"  time to resume after {r.step}: {took}")
    for c in result.checks:
        lines.append(
            f"  {'PASS' if c.passed else 'FAIL'}  {c.name}" + (f" ({c.detail})" * bool(c.detail))
        )
    rate = f"{result.rate:,.0f}/s" if result.rate else "flat out"
    lines.append(f"  {result.produced:,} records sent at {rate} in {result.seconds:.1f} s")
    return "\n".join(lines)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.chaos.scenarios import run

    result = run(
        args.name,
        settings,
        records=args.records,
        seconds=args.seconds,
        rate=args.rate,
        on_event=_print_event,
    )
    print()
    print(render(result))
    sys.stdout.flush()
    # Anything acknowledged lost or duplicated is the failure this suite exists to catch.
    return 0 if result.passed else 1


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 100:
        raise argparse.ArgumentTypeError(f"{value} is too few: use 100 or more")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is negative")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not a positive number")
    return value


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml chaos list|run`."""
    from rtml.chaos.scenarios import NAMES

    chaos = sub.add_parser(
        "chaos",
        help="break the local cluster under load and prove nothing acknowledged was lost",
        description="Scripted failure scenarios on the local cluster rtml started: each writes "
        "numbered records with acks=all, breaks something (a broker, two, the registry), repairs "
        "it, and counts by id what was acknowledged, read, lost, duplicated and failed.",
    )
    actions = chaos.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the scenarios", description="List the scenarios.")
    run = actions.add_parser(
        "run",
        help="run one scenario, print its timeline live and a verdict",
        description="Run a scenario on the local cluster, print each event of its timeline as "
        "it happens and a verdict table; exit 1 when anything acknowledged was lost or "
        "duplicated (or a check failed). Refuses an external cluster.",
    )
    run.add_argument("name", choices=NAMES, metavar="NAME", help=f"one of {', '.join(NAMES)}")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--records", type=_count, help="records to write (default: the scenario's)")
    size.add_argument("--seconds", type=_positive, help="seconds of load instead of a count")
    run.add_argument(
        "--rate",
        type=_non_negative,
        help="records per second (0: flat out; default: the scenario's)",
    )
    chaos.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    return _list(args, settings) if args.action == "list" else _run(args, settings)
