"""`rtml features run`: the feature application as a long-running process."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from rtml.config import Settings


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.features.app import FeatureApp, FeatureOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = FeatureOptions(
        group=args.group,
        guarantee=args.guarantee,
        commit_interval=args.commit_interval,
        grace_ms=round(args.grace * 1000),
        instance=args.instance,
        start=args.start,
        windows=not args.no_windows,
    )
    feature_app = FeatureApp(settings, options)
    print(
        f"Feature app instance {options.instance} in group {options.group} "
        f"({options.guarantee}, commit every {feature_app.commit_interval:g} s); Ctrl-C stops it.",
        flush=True,
    )
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(args.report_every):
            print(feature_app.stats.line(), flush=True)

    threading.Thread(target=report, daemon=True).start()
    # Quix stops on SIGINT and SIGTERM itself; SIGTERM is how `rtml services down` asks.
    signal.signal(signal.SIGTERM, lambda *_: feature_app.stop())
    try:
        feature_app.run()
    finally:
        stop.set()
        print(feature_app.stats.line(), flush=True)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml features run`."""
    features = sub.add_parser(
        "features",
        help="the real-time feature application (Quix Streams)",
        description="Compute every transaction's features from the transactions, customers, "
        "terminals and labels topics, and write them to the features topic.",
    )
    actions = features.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="run one instance of the feature app until Ctrl-C",
        description="Run one instance of the feature app in the consumer group rtml-features; "
        "start more to share the 6 partitions.",
    )
    run.add_argument(
        "--guarantee",
        choices=("at-least-once", "exactly-once"),
        default="at-least-once",
        help="processing guarantee (default at-least-once)",
    )
    run.add_argument(
        "--commit-interval",
        type=float,
        help="seconds between commits; under exactly-once output is visible only after one "
        "(default 1 for at-least-once, 0.1 for exactly-once)",
    )
    run.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds a customer's transaction may arrive out of order before it counts as "
        "late (default 60)",
    )
    run.add_argument(
        "--group", default="rtml-features", help="consumer group (default rtml-features)"
    )
    run.add_argument("--instance", default="0", help="instance name: its own state folder")
    run.add_argument(
        "--start",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a new group starts reading transactions (default earliest); the "
        "customer and terminal tables are always read whole",
    )
    run.add_argument("--no-windows", action="store_true", help="skip the live demo windows")
    run.add_argument(
        "--report-every", type=float, default=10.0, help="seconds between progress lines"
    )
    run.set_defaults(func=_run)
