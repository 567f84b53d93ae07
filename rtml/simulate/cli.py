"""`rtml simulate replay|live`: the transaction simulator, producing into the cluster.

Both commands simulate a history (the same parameters always give the same data), publish
the customers and terminals first so joins find them, then produce transactions and labels.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rtml.config import Settings

if TYPE_CHECKING:  # the simulator imports pandas: load it only when a command runs
    from rtml.simulate import Simulation
    from rtml.simulate.producer import ProduceReport


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml simulate` with its `replay` and `live` actions."""
    simulate = sub.add_parser(
        "simulate",
        help="produce simulated card transactions into Kafka",
        description="Simulate card transactions with fraud (after the Fraud Detection "
        "Handbook) and produce them: replay writes the history in event-time order, live "
        "emits at a fixed rate with now-time. Both publish customers and terminals first.",
    )
    actions = simulate.add_subparsers(dest="action", required=True, metavar="ACTION")
    replay = actions.add_parser(
        "replay",
        help="write the simulated history in event-time order, as fast as the cluster takes it",
        description="Write the simulated history to the transactions topic in event-time order "
        "with event times as record timestamps, and each fraud label to the labels topic once "
        "event time has passed its delay.",
    )
    _simulation_args(replay)
    replay.add_argument(
        "--rate", type=_positive, help="records per second at most (default: as fast as possible)"
    )
    replay.add_argument("--no-labels", action="store_true", help="transactions only")
    replay.set_defaults(func=_replay)

    live = actions.add_parser(
        "live",
        help="emit transactions at a fixed rate with now-time, until --duration or Ctrl-C",
        description="Emit transactions at --rate per second, timestamped now, looping over the "
        "simulated history; each label follows --label-delay seconds later. Ctrl-C stops "
        "cleanly: every record sent is flushed and counted.",
    )
    _simulation_args(live)
    live.add_argument("--rate", type=_positive, required=True, help="transactions per second")
    live.add_argument("--duration", type=_positive, help="seconds to run (default: until Ctrl-C)")
    live.add_argument(
        "--label-delay",
        type=_positive,
        default=10.0,
        help="seconds between a transaction and its label (default 10)",
    )
    live.add_argument("--no-labels", action="store_true", help="transactions only")
    live.set_defaults(func=_live)


def _simulation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=5000, help="customers (default 5000)")
    parser.add_argument("--terminals", type=int, default=10000, help="terminals (default 10000)")
    parser.add_argument("--days", type=int, default=183, help="days of history (default 183)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start-date", default="2018-04-01", help="first day, ISO date (default 2018-04-01)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _positive(text: str) -> float:
    """A number > 0, or argparse's usage error naming the option."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def _simulate(args: argparse.Namespace) -> Simulation:
    """The history the arguments describe; bad values stop here with SimulatorError's sentence."""
    from rtml.simulate import SimulationParams, simulate

    params = SimulationParams(
        n_customers=args.customers,
        n_terminals=args.terminals,
        n_days=args.days,
        seed=args.seed,
        start_date=args.start_date,
    )
    sim = simulate(params)
    print(
        f"Simulated {len(sim.transactions):,} transactions of {params.n_customers:,} customers "
        f"at {params.n_terminals:,} terminals over {params.n_days} days "
        f"(fraud rate {sim.fraud_rate:.2%})."
    )
    return sim


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.simulate.producer import publish_reference, replay

    sim = _simulate(args)
    _print_reference(publish_reference(settings, sim))
    report = replay(
        settings, sim, rate=args.rate, progress=not args.no_progress, labels=not args.no_labels
    )
    return _finish(report)


def _live(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.simulate import laps
    from rtml.simulate.producer import live, publish_reference

    sim = _simulate(args)
    _print_reference(publish_reference(settings, sim))
    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
    labels = "" if args.no_labels else f", each label {args.label_delay:g} s later"
    print(f"Emitting {args.rate:g} transactions/s with now-time{labels}, {until}.")
    sys.stdout.flush()
    report = live(
        settings,
        sim,
        rate=args.rate,
        duration=args.duration,
        progress=not args.no_progress,
        label_delay=args.label_delay,
        labels=not args.no_labels,
        # A restarted simulator continues with ids no earlier run on this cluster used.
        first_lap=laps.next_free(settings),
        on_lap=lambda lap: laps.mark_used(settings, lap),
    )
    return _finish(report)


def _print_reference(counts: dict[str, int]) -> None:
    print("Reference data: " + ", ".join(f"{n:,} {topic}" for topic, n in counts.items()) + ".")


def _finish(report: ProduceReport) -> int:
    print(report.summary())
    if report.ok:
        return 0
    print(
        f"rtml: {report.produced - report.acked:,} of {report.produced:,} records were not "
        "acknowledged by the cluster: check it with `rtml cluster status` and run again.",
        file=sys.stderr,
    )
    return 1
