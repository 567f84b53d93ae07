"""`rtml rabbit up|down|status|compare`: the local RabbitMQ broker and the comparison."""

from __future__ import annotations

import argparse

from rtml.config import Settings


def _rabbit(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.rabbit.server import RabbitServer

    server = RabbitServer(settings)
    if args.action == "up":
        port = server.up()
        print(f"RabbitMQ {server.node} listens on amqp://127.0.0.1:{port} (data in {server.dir})")
    elif args.action == "down":
        server.down(wipe=args.wipe)
        print("RabbitMQ stopped" + (" and its data deleted" if args.wipe else ""))
    elif args.action == "status":
        if not server.alive():
            print("RabbitMQ: DOWN")
            return 1
        print(f"RabbitMQ: UP on amqp://127.0.0.1:{server.port}")
    else:
        from rtml.compare.rabbit import compare, table

        kill_after = args.kill_after if args.kill_after else None
        rabbit, kafka = compare(
            settings, server.port, args.messages, kill_after=kill_after, work_ms=args.work_ms
        )
        print(table(rabbit, kafka))
        for note in rabbit.notes + kafka.notes:
            print(f"note: {note}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register `rtml rabbit ...`."""
    p = sub.add_parser(
        "rabbit", help="a local RabbitMQ broker, and the same events through it and Kafka"
    )
    p.add_argument("action", choices=("up", "down", "status", "compare"))
    p.add_argument("--wipe", action="store_true", help="down: also delete its data and logs")
    p.add_argument("--messages", type=int, default=5000, help="compare: how many transactions")
    p.add_argument(
        "--kill-after",
        type=int,
        default=1000,
        help="compare: SIGKILL one RabbitMQ consumer after it processed this many (0: never)",
    )
    p.add_argument(
        "--work-ms", type=float, default=0.5, help="compare: simulated work per message, ms"
    )
    p.set_defaults(func=_rabbit)
