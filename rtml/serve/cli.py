"""`rtml serve run|status`: the online prediction service as a long-running process."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from rtml.config import Settings


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.serve.service import PredictionService, ServeOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry request
    service = PredictionService(
        settings,
        ServeOptions(
            group=args.group,
            instance=args.instance,
            guarantee=args.guarantee,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            topic_prefix=args.topic_prefix,
        ),
    )
    done = threading.Event()

    def report() -> None:
        while not done.wait(args.report_every):
            print(service.status.line(), flush=True)

    threading.Thread(target=report, daemon=True).start()
    # Ctrl-C and SIGTERM (how `rtml services down` asks) both finish the batch and commit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: service.stop())
    try:
        service.run()
    finally:
        done.set()
        print(service.status.line(), flush=True)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.serve.status import read_status, render

    print(render(read_status(settings)))
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml serve run` and `rtml serve status`."""
    serve = sub.add_parser(
        "serve",
        help="the online prediction service (micro-batched, hot-swapped models)",
        description="Score every features record with the latest model from model-updates "
        "and write one prediction per transaction to the predictions topic.",
    )
    actions = serve.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="run one instance until Ctrl-C",
        description="Run one instance of the prediction service in its consumer group; start "
        "more (with other --instance numbers) to share the 6 partitions of features.",
    )
    run.add_argument(
        "--instance", type=int, default=0, help="instance number, unique in the group (default 0)"
    )
    run.add_argument(
        "--max-batch",
        type=int,
        default=500,
        help="most records scored as one batch (default 500)",
    )
    run.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        help="how long to wait for more records once one has arrived (default 0: score "
        "what is there; more waits give bigger batches and longer latency)",
    )
    run.add_argument(
        "--guarantee",
        choices=("at-least-once", "exactly-once"),
        default="at-least-once",
        help="processing guarantee (default at-least-once)",
    )
    run.add_argument("--group", default="rtml-serve", help="consumer group (default rtml-serve)")
    run.add_argument(
        "--topic-prefix",
        default="",
        help="put PREFIX before every topic name (features, predictions, model-updates, "
        "serve.dlq): topics of its own, as a chaos scenario uses (default: none, the lab's)",
    )
    run.add_argument(
        "--report-every", type=float, default=10.0, help="seconds between progress lines"
    )
    run.set_defaults(func=_run)
    status = actions.add_parser(
        "status",
        help="what each instance is doing: model, counts, batches, refusals",
        description="Show each instance's model version, records, predictions, DLQ count, "
        "batch sizes and times, refused models and last error (from its status file).",
    )
    status.set_defaults(func=_status)
