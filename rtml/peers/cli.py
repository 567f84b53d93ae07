"""`rtml peer streams build|run|stop|compare`: the Kafka Streams peer of one feature."""

from __future__ import annotations

import argparse
import contextlib

from rtml.config import Settings


def _build(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.peers.streams import ensure_built

    folder = ensure_built(settings)
    print(f"The Kafka Streams peer is built in {folder}.")
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.peers.streams import StreamsPeer

    peer = StreamsPeer(settings, app_id=args.app_id, output=args.output)
    pid = peer.start(timeout=args.timeout)
    print(
        f"Kafka Streams peer {peer.app_id} is RUNNING (pid {pid}): transactions -> "
        f"{peer.output}; log {peer.log}. Stop it with `rtml peer streams stop`."
    )
    return 0


def _stop(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.peers.streams import StreamsPeer

    peer = StreamsPeer(settings, app_id=args.app_id)
    if not peer.running():
        print(f"Kafka Streams peer {peer.app_id} is not running.")
    else:
        peer.stop()
        print(f"Stopped Kafka Streams peer {peer.app_id}.")
    if args.remove:
        deleted = peer.remove()
        print(f"Removed its group, state and internal topics ({', '.join(deleted) or 'none'}).")
    return 0


def _compare(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.features.outputs import read_features
    from rtml.features.runner import count_records
    from rtml.peers.compare import compare
    from rtml.peers.streams import batch_reference, read_peer
    from rtml.poll import WaitTimeout, until

    if args.against == "batch":
        reference = batch_reference(settings)
    else:
        reference = read_features(settings).drop_duplicates("transaction_id")
    # A peer started a moment ago may still be catching up: give it a while, then compare
    # what is there (the sentence names the first missing transaction).
    with contextlib.suppress(WaitTimeout):
        until(
            lambda: count_records(settings, args.output) >= len(reference),
            args.timeout,
            f"{len(reference):,} records in {args.output}",
        )
    peer = read_peer(settings, args.output)
    result = compare(peer, reference, who="the Kafka Streams peer")
    print(result.line())
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml peer streams ...`."""
    from rtml.peers.streams import APP_ID, OUTPUT

    peer = sub.add_parser(
        "peer",
        help="one feature in another stream processor, compared with rtml's",
        description="Peers of rtml's features written in other stream processors, run beside "
        "the Quix feature app on the same input and compared record for record.",
    )
    kinds = peer.add_subparsers(dest="kind", required=True, metavar="KIND")
    streams = kinds.add_parser(
        "streams",
        help="the 7-day customer count and mean in Kafka Streams (Java)",
        description="The 7-day customer count and mean amount written with Kafka Streams' "
        "Processor API (infra/streams/), built by Maven once and run on rtml's JDK.",
    )
    actions = streams.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "build",
        help="build the jar with Maven (once per change of its sources)",
        description="Build infra/streams/ with Maven into the jar cache; later runs reuse it.",
    ).set_defaults(func=_build)
    run = actions.add_parser(
        "run",
        help="start the app in the background and wait until it is RUNNING",
        description="Start the Kafka Streams app (transactions in, JSON features out) as a "
        "background process rtml owns; it resumes from its committed offsets.",
    )
    run.add_argument("--app-id", default=APP_ID, help=f"application id (default {APP_ID})")
    run.add_argument("--output", default=OUTPUT, help=f"output topic (default {OUTPUT})")
    run.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    run.set_defaults(func=_run)
    stop = actions.add_parser(
        "stop",
        help="stop the app cleanly (SIGTERM)",
        description="Stop the Kafka Streams app: it commits, flushes its state and leaves.",
    )
    stop.add_argument("--app-id", default=APP_ID, help=f"application id (default {APP_ID})")
    stop.add_argument(
        "--remove",
        action="store_true",
        help="also delete its consumer group, changelog topic and state, so a new run "
        "starts from the beginning",
    )
    stop.set_defaults(func=_stop)
    cmp = actions.add_parser(
        "compare",
        help="compare the app's output with the batch reference or the Quix features",
        description="Check every transaction: the peer's 7-day count equals the reference's "
        "and its mean is within 1e-9; print one line, or the first difference.",
    )
    cmp.add_argument(
        "--against",
        choices=("batch", "features"),
        default="batch",
        help="batch: the pandas reference computed on the transactions topic (default); "
        "features: what the Quix feature app wrote to the features topic",
    )
    cmp.add_argument("--output", default=OUTPUT, help=f"the peer's topic (default {OUTPUT})")
    cmp.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the peer to catch up before comparing (default 60)",
    )
    cmp.set_defaults(func=_compare)
