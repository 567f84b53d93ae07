"""`rtml online`: rebuild and inspect the online feature store, serve the scoring endpoint."""

from __future__ import annotations

import argparse
import json
import logging
import time

from rtml.cli import iso_time_ms
from rtml.config import Settings
from rtml.serve.store import DEFAULT_NAME, OnlineStoreError


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.serve.store import rebuild

    started = time.monotonic()
    store = rebuild(
        settings, args.name, from_offset=args.from_offset, from_timestamp=args.from_timestamp
    )
    counts, stats = store.counts(), store.stats()
    print(
        f"Rebuilt online store {args.name} in {time.monotonic() - started:.1f} s: "
        f"{stats['records']:,} records, {counts['customers']:,} customers, "
        f"{counts['terminals']:,} terminals ({stats['late']:,} late, "
        f"{stats['poison']:,} poison); fingerprint {store.fingerprint()[:16]}"
    )
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.serve.store import OnlineStore, store_path

    if not store_path(settings, args.name).exists():
        raise OnlineStoreError(
            f"There is no online store {args.name} yet: build it with `rtml online rebuild` "
            "or `rtml online serve`."
        )
    row = OnlineStore.open(settings, args.name).customer(args.customer_id)
    if row is None:
        raise OnlineStoreError(f"Customer {args.customer_id} is not in online store {args.name}.")
    row["age_ms"] = time.time_ns() // 1_000_000 - row["feature_time"]
    print(json.dumps(row, indent=2))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from rtml.serve.http import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(settings, args.name, host=args.host, port=args.port)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add `rtml online rebuild|show|serve`."""
    online = sub.add_parser(
        "online",
        help="the online feature store and the synchronous scoring endpoint",
        description="Materialise the features topic into an online store (SQLite) and score "
        "single transactions over HTTP on 127.0.0.1.",
    )
    actions = online.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild",
        help="replay the features topic into a fresh store",
        description="Replay the features topic from the beginning (or a timestamp) into a "
        "fresh store and print its fingerprint; a rebuild of the same log gives the same one.",
    )
    start = rebuild.add_mutually_exclusive_group()
    start.add_argument(
        "--from-timestamp",
        type=iso_time_ms,
        metavar="ISO",
        help="start at the first record stamped at or after this time (no zone: UTC)",
    )
    start.add_argument(
        "--from-offset", type=int, default=0, help="start at this offset in every partition"
    )
    show = actions.add_parser(
        "show",
        help="print a customer's latest features",
        description="Print the latest features record of a customer from the store.",
    )
    show.add_argument("customer_id", type=int, metavar="CUSTOMER_ID")
    serve = actions.add_parser(
        "serve",
        help="follow the store and serve POST /score on 127.0.0.1",
        description="Keep the store up to date from the features topic, follow the latest "
        "model on model-updates, and serve POST /score, GET /features/ID and GET /health.",
    )
    serve.add_argument(
        "--port", type=int, help="port (default RTML_ONLINE_PORT, which defaults to 8600)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is accepted")
    for parser, func in ((rebuild, _rebuild), (show, _show), (serve, _serve)):
        parser.add_argument(
            "--name", default=DEFAULT_NAME, help=f"store name (default {DEFAULT_NAME})"
        )
        parser.set_defaults(func=func)
