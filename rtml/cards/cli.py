"""`rtml cards ...`: the week-4 services (decisions, card service, notifications,
projections) as long-running processes, their status, and the read model's queries."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from rtml.config import Settings
from rtml.stage import Stage, StageOptions

# action -> (module, factory, default group, what it does)
STAGES: dict[str, tuple[str, str, str, str]] = {
    "decisions": (
        "rtml.cards.decisions",
        "decision_service",
        "rtml-decisions",
        "turn predictions into commands (DECLINE -> BlockCard, REVIEW -> RaiseAlert)",
    ),
    "service": (
        "rtml.cards.service",
        "card_service",
        "rtml-cards",
        "decide commands against the event-sourced card aggregate and append events",
    ),
    "notifications": (
        "rtml.cards.notifications",
        "notification_service",
        "rtml-notifications",
        "tell card holders about blocks and alerts (an idempotent consumer of card-events)",
    ),
}


def _stage(action: str, args: argparse.Namespace, settings: Settings) -> Stage:
    import importlib

    module, factory, _, _ = STAGES[action]
    build: Callable[[Settings, StageOptions], Stage] = getattr(
        importlib.import_module(module), factory
    )
    return build(
        settings,
        StageOptions(
            group=args.group,
            instance=args.instance,
            guarantee=args.guarantee,
            max_batch=args.max_batch,
            retries=args.retries,
            backoff_ms=args.backoff_ms,
            commit_every_s=args.commit_every,
        ),
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Ctrl-C and SIGTERM (how `rtml services down` asks) both finish the batch and commit;
    # the handlers come first, so a signal during start-up stops the stage cleanly too.
    asked = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: asked.set())
    stage = _stage(args.action, args, settings)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(args.report_every):
            print(stage.status.line(), flush=True)

    def relay() -> None:
        asked.wait()
        stage.stop()

    threading.Thread(target=watch, daemon=True).start()
    threading.Thread(target=relay, daemon=True).start()
    if asked.is_set():
        return 0
    try:
        stage.run()
    finally:
        done.set()
    return 0


def _project(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.cards.projection import Projection, ProjectionOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    projection = Projection(settings, ProjectionOptions(batch_size=args.max_batch))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: projection.stop())
    projection.run(
        ready=lambda: print(
            f"projections instance 0 writes {projection.path}; Ctrl-C stops it.", flush=True
        )
    )
    print(projection.status.line(), flush=True)
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.cards.projection import default_db_path, rebuild
    from rtml.cards.readmodel import ReadModel

    built = rebuild(settings, args.path)
    print(f"Rebuilt {args.path} from card-events offset 0: {built.counts()}")
    print(f"content hash {built.content_hash()}")
    live = default_db_path(settings)
    if live.exists():
        same = ReadModel(live).content_hash() == built.content_hash()
        print(
            "The live read model has the same content."
            if same
            else "The live read model differs: it has not read the same events yet, or it "
            "drifted (compare `rtml cards show` on both)."
        )
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.cards.projection import default_db_path
    from rtml.cards.readmodel import ReadModel

    model = ReadModel(args.db or default_db_path(settings))
    if args.card is not None:
        frame = model.card_history(args.card)
    elif args.trace:
        frame = model.trace(args.trace)
    elif args.what == "alerts":
        frame = model.alerts(args.limit)
    else:
        frame = model.blocked_cards()
    print(model.counts())
    print(frame.to_string(index=False) if len(frame) else "(nothing)")
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.cards.requests import CardQueries

    queries = CardQueries(settings)
    try:
        print(queries.ask(args.card, timeout=args.timeout))
    finally:
        queries.close()
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.stage import read_statuses

    rows = read_statuses(settings)
    if not rows:
        print("No week-4 service has run yet: start them with `rtml services up`.")
        return 0
    for s in rows:
        state = "stale" if s.stale and s.state != "stopped" else s.state
        print(f"{s.stage:<14} #{s.instance} {state:<8} {s.guarantee:<14} {s.line()}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml cards decisions|service|notifications|status`."""
    cards = sub.add_parser(
        "cards",
        help="the week-4 services: decisions, the card service, notifications",
        description="Event-driven services around the card aggregate: predictions become "
        "commands, commands become events, events become notifications and read models.",
    )
    actions = cards.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, (_, _, group, text) in STAGES.items():
        run = actions.add_parser(
            action, help=f"run one instance: {text}", description=text[0].upper() + text[1:] + "."
        )
        run.add_argument(
            "--instance", type=int, default=0, help="instance number, unique in the group"
        )
        run.add_argument("--group", default=group, help=f"consumer group (default {group})")
        run.add_argument(
            "--guarantee",
            choices=("at-least-once", "exactly-once"),
            default="exactly-once",
            help="processing guarantee (default exactly-once: one Kafka transaction per batch)",
        )
        run.add_argument("--max-batch", type=int, default=500, help="most records per batch")
        run.add_argument(
            "--retries", type=int, default=3, help="retries of a transient failure (default 3)"
        )
        run.add_argument(
            "--backoff-ms",
            type=float,
            default=50.0,
            help="wait before the first retry, doubled for each next one (default 50)",
        )
        run.add_argument(
            "--commit-every",
            type=float,
            default=1.0,
            metavar="SECONDS",
            help="at-least-once only: seconds between offset commits (default 1); what was "
            "handled since the last commit is handled again after a crash",
        )
        run.add_argument(
            "--report-every", type=float, default=10.0, help="seconds between progress lines"
        )
        run.set_defaults(func=_run)
    project = actions.add_parser(
        "projections",
        help="run the projection: card-events into the SQLite read model (CQRS)",
        description="Fold card-events into the read model the control room queries; its "
        "offsets live in the read model, so it is exactly-once without Kafka commits.",
    )
    project.add_argument("--max-batch", type=int, default=500, help="most events per batch")
    project.set_defaults(func=_project)
    rebuild = actions.add_parser(
        "rebuild",
        help="replay card-events from offset 0 into a new read model and compare",
        description="Build a new read model file from offset 0 (the live one is untouched) "
        "and compare its content hash with the live read model's.",
    )
    rebuild.add_argument("path", type=Path, help="the new file (must not exist)")
    rebuild.set_defaults(func=_rebuild)
    show = actions.add_parser(
        "show",
        help="query the read model: blocked cards, alerts, a card's history, a trace",
        description="Query the read model (the projection's SQLite file).",
    )
    show.add_argument("what", nargs="?", choices=("blocked", "alerts"), default="blocked")
    show.add_argument("--card", type=int, help="one card's events, in version order")
    show.add_argument("--trace", help="every event of one correlation id (tx-<transaction id>)")
    show.add_argument("--limit", type=int, default=20, help="most alerts shown")
    show.add_argument("--db", type=Path, help="another read model file (e.g. a rebuild)")
    show.set_defaults(func=_show)
    ask = actions.add_parser(
        "ask",
        help="request-reply: ask the card service for a card's state",
        description="Send a query on card-queries and wait for the card service's reply.",
    )
    ask.add_argument("card", type=int)
    ask.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    ask.set_defaults(func=_ask)
    status = actions.add_parser(
        "status",
        help="each instance's counters: in, handled, out, dlq, retries",
        description="Show each week-4 service instance's counters from its status file.",
    )
    status.set_defaults(func=_status)
