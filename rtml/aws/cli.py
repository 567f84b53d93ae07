"""`rtml aws`: the local AWS emulator, the pipeline on Kinesis, card events on EventBridge."""

from __future__ import annotations

import argparse

from rtml.aws.errors import AwsError
from rtml.config import Settings


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.aws.server import MotoServer

    endpoint = MotoServer(settings).up(timeout=args.timeout)
    print(f"moto (local AWS emulator) up at {endpoint}; stop it with `rtml aws down`.")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.aws.server import MotoServer

    was = MotoServer(settings).down()
    print(
        "moto stopped; its streams, buses and queues are gone." if was else "moto was not running."
    )
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.aws.server import MotoServer

    status = MotoServer(settings).status()
    print(status.sentence())
    return 0 if status.running else 1


def _kinesis(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm.auto import tqdm

    from rtml.aws.pipeline import ROLES, Pipeline, stream_names
    from rtml.aws.server import MotoServer, client
    from rtml.aws.streams import KinesisStream
    from rtml.model import registry
    from rtml.model.update import ModelError, Scorer
    from rtml.simulate import SimulationParams, simulate

    if not 1 <= args.shards <= 16:
        raise AwsError(f"{args.shards} shards is not possible here: use 1 to 16.")
    endpoint = MotoServer(settings).require()
    saved = registry.versions(settings)
    version = args.version or (saved[-1] if saved else None)
    if version is None:
        raise AwsError("No saved model version to score with: train one with `rtml model train`.")
    try:
        scorer = Scorer.load(registry.load(settings, version))
    except ModelError as exc:
        raise AwsError(f"Model version {version} cannot score: {exc}") from exc
    sim = simulate(SimulationParams(args.customers, args.terminals, args.days, seed=args.seed))
    kinesis = client(endpoint, "kinesis")
    streams = {r: KinesisStream(kinesis, n) for r, n in stream_names(args.prefix).items()}
    with tqdm(total=4, desc="kinesis pipeline", unit="stage") as bar:

        def progress(stage: str, n: int) -> None:
            bar.set_postfix_str(f"{stage}: {n:,}")
            bar.update(1)

        report = Pipeline(settings, streams, progress).run(sim, scorer, units=args.shards)
    print(report.sentence())
    print(
        f"Model {version} scored {len(sim.transactions):,} transactions on Kinesis; streams "
        + ", ".join(streams[r].name for r in ROLES)
        + f" ({args.shards} shards each)."
    )
    return 0


def _eventbridge(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.aws.eventbridge import Router, card_events
    from rtml.aws.server import MotoServer

    endpoint = MotoServer(settings).require()
    events = card_events(settings)
    if not events:
        raise AwsError("card-events is empty: run the week 4 services (`rtml services up`) first.")
    results = Router(endpoint, args.bus).route(events)
    print(f"{len(events):,} card events from card-events put on bus {args.bus}.")
    print(f"  {'rule':<14} {'EventBridge':>12} {'Kafka filter':>13}  same ids")
    for r in results:
        print(
            f"  {r.rule:<14} {len(r.routed):>12,} {len(r.filtered):>13,}  "
            + ("yes" if r.same else "NO")
        )
    return 0 if all(r.same for r in results) else 1


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml aws`."""
    aws = sub.add_parser(
        "aws",
        help="the system on AWS streaming services, locally against moto",
        description="Run a local AWS emulator (moto) on 127.0.0.1, run the pipeline on Kinesis, "
        "and route card events with EventBridge rules (docs/beyond/kinesis.md, eventbridge.md).",
    )
    actions = aws.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up", help="start the emulator", description="Start moto on a free 127.0.0.1 port."
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    up.set_defaults(func=_up)
    actions.add_parser(
        "down", help="stop the emulator", description="Stop moto (it keeps nothing)."
    ).set_defaults(func=_down)
    actions.add_parser(
        "status", help="is the emulator up", description="Say whether moto runs, and where."
    ).set_defaults(func=_status)

    kinesis = actions.add_parser(
        "kinesis",
        help="simulator, features and scoring on Kinesis streams",
        description="Put a simulated history into Kinesis (key: customer id), compute its "
        "features with rtml's feature code through a stream re-keyed by terminal, score them "
        "with a saved model and put the predictions into a Kinesis stream.",
    )
    kinesis.add_argument("--customers", type=int, default=20, help="simulated customers (20)")
    kinesis.add_argument("--terminals", type=int, default=40, help="simulated terminals (40)")
    kinesis.add_argument("--days", type=int, default=14, help="simulated days (14)")
    kinesis.add_argument("--seed", type=int, default=0, help="simulation seed (0)")
    kinesis.add_argument("--shards", type=int, default=2, help="shards per stream (2)")
    kinesis.add_argument("--prefix", default="rtml", help="stream names: <prefix>.<role> (rtml)")
    kinesis.add_argument("--version", help="saved model version (default: the newest)")
    kinesis.set_defaults(func=_kinesis)

    eventbridge = actions.add_parser(
        "eventbridge",
        help="route card-events with EventBridge rules, beside a Kafka filter",
        description="Put every event of card-events on an EventBridge bus whose rules route "
        "blocks and high-risk alerts to SQS queues; compare with a Kafka consumer filtering "
        "the topic with the same patterns. Exit 1 if they differ.",
    )
    eventbridge.add_argument("--bus", default="rtml-cards", help="event bus name (rtml-cards)")
    eventbridge.set_defaults(func=_eventbridge)
