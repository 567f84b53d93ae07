"""The producer benchmark: the Python Avro producer against Kafka's own producer tool.

In one run, on one cluster, with the same record count and size, acks=all and idempotence,
each client (see `bench.producer_runs`) produces with replay's batching, then both again
with each client's default settings to show what batching buys. Each client writes to a
fresh topic shaped like `transactions` (6 partitions, RF 3, min.insync.replicas 2), and
each run must grow it by exactly the records it sent. The results go to the `producer`
section of docs/benchmarks.md, with a bar chart in docs/img/.

    python -m bench.producer              # a throw-away cluster on free ports
    python -m bench.producer --quick      # fewer records, for a first look
    python -m bench.producer --external   # the running lab cluster (or RTML_BOOTSTRAP_SERVERS)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from functools import partial

import pandas as pd
from confluent_kafka.admin import NewTopic

from bench.cluster import log_end, stored_bytes, throwaway_cluster
from bench.producer_page import CHART, publish, ratios, targets
from bench.producer_runs import (
    BATCHED,
    CLIENTS,
    KAFKA,
    PYTHON,
    SETUPS,
    ProducerBench,
    Run,
    Setup,
    run_kafka,
    run_python,
)
from bench.report import (
    BenchError,
    Machine,
    add_run_arguments,
    command_line,
    machine,
    stop_on_sigterm,
)
from rtml.clients import admin, create_missing_topics
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.schemas import load_schema, register, registry_client, subject
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.producer import PreparedSerializer
from rtml.topics import spec

DEFAULT_RECORDS = 1_000_000
QUICK_RECORDS = 200_000
_TX_PER_DAY = 9_000  # the default 5,000 customers make about 9,800 transactions a day
Log = Callable[[str], None]


def transactions(records: int, seed: int = 0) -> pd.DataFrame:
    """The first `records` transactions of a simulated history (default profiles), in time order."""
    days = max(1, math.ceil(records / _TX_PER_DAY))
    while True:
        txs = simulate(SimulationParams(n_days=days, seed=seed)).transactions
        if len(txs) >= records:
            return txs.iloc[:records]
        days *= 2


def bench_producer(
    settings: Settings,
    records: int = DEFAULT_RECORDS,
    *,
    setups: Sequence[Setup] = SETUPS,
    warmup: int | None = None,
    progress: bool = False,
    log: Log = print,
) -> ProducerBench:
    """Run both clients with each setup against the cluster of `settings`; return every run.

    Two topics are created for this run (one per client) and deleted afterwards, with the
    schema subject of the Python one. Before measuring, each client writes `warmup` records
    (default: a tenth, at most 50,000) so neither pays alone for the brokers' warm-up.
    """
    if records < 1:
        raise BenchError(f"records must be at least 1, got {records}.")
    warmup = min(50_000, max(1, records // 10)) if warmup is None else min(warmup, records)
    log(f"Simulating {records:,} transactions ...")
    txs = transactions(records)
    run_id = uuid.uuid4().hex[:8]
    topics = {client: f"bench.producer.{run_id}.{client}" for client in CLIENTS}
    shape = spec("transactions").for_cluster(settings.nodes if settings.local else None)
    result = ProducerBench(
        records, warmup, shape.partitions, shape.replication_factor, dt.datetime.now(dt.UTC)
    )
    try:
        wanted = [
            NewTopic(t, shape.partitions, shape.replication_factor, config=shape.configs)
            for t in topics.values()
        ]
        if sorted(create_missing_topics(settings, wanted)) != sorted(topics.values()):
            raise BenchError(f"The bench topics {', '.join(topics.values())} existed already.")
        text = load_schema("transaction")
        serializer = PreparedSerializer(text, register(settings, topics[PYTHON], text))
        if warmup:
            log(f"Warming up: {warmup:,} records from each client ...")
            first = run_python(settings, topics[PYTHON], txs.iloc[:warmup], serializer, BATCHED)
            run_kafka(
                settings,
                topics[KAFKA],
                warmup,
                round(first.record_size),
                BATCHED,
                log=lambda _: None,
            )
        for setup in setups:
            py = _measured(
                settings,
                topics[PYTHON],
                partial(
                    run_python, settings, topics[PYTHON], txs, serializer, setup, progress=progress
                ),
            )
            log(_line(py))
            size = round(py.record_size)
            kafka = _measured(
                settings,
                topics[KAFKA],
                partial(run_kafka, settings, topics[KAFKA], records, size, setup, log=log),
            )
            log(_line(kafka))
            result.runs += [py, kafka]
    finally:
        _clean_up(settings, list(topics.values()), [topics[PYTHON]], log)
    return result


def _measured(settings: Settings, topic: str, run: Callable[[], Run]) -> Run:
    """`run()`, checked: the topic must grow by exactly the records it sent (no loss, no
    duplicate); with the bytes that growth took on disk, where they can be read."""
    before_offsets, before_bytes = log_end(settings, topic), stored_bytes(settings, topic)
    load = os.getloadavg()[0]
    result = run()
    grew = log_end(settings, topic) - before_offsets
    if grew != result.records:
        raise BenchError(
            f"Topic {topic} grew by {grew:,} records while {result.records:,} were acknowledged: "
            "records were lost or duplicated, so the results are not valid."
        )
    after_bytes = stored_bytes(settings, topic)
    stored = None if before_bytes is None or after_bytes is None else after_bytes - before_bytes
    return dataclasses.replace(result, stored_bytes=stored, load=load)


def _clean_up(settings: Settings, topics: list[str], subjects_of: list[str], log: Log) -> None:
    """Delete the bench topics and schema subjects that exist; a failure is reported, not raised."""
    client = admin(settings, timeout=10)
    existing = [t for t in topics if t in client.list_topics(timeout=10).topics]
    for name, fut in (
        client.delete_topics(existing, operation_timeout=30) if existing else {}
    ).items():
        try:
            fut.result(timeout=60)
        except Exception as exc:
            log(f"Could not delete bench topic {name}: {exc}")
    registry = registry_client(settings)
    try:
        registered = set(registry.get_subjects())
        for name in [subject(t) for t in subjects_of if subject(t) in registered]:
            registry.delete_subject(name)
            registry.delete_subject(name, permanent=True)
    except Exception as exc:
        log(f"Could not delete the bench's schema subject: {exc}")


def _line(run: Run) -> str:
    return (
        f"  {run.client:>6}, {run.setup}: {run.records:,} records of {run.record_size:.1f} B in "
        f"{run.seconds:.2f} s = {run.msg_per_s:,.0f} msg/s, {run.mb_per_s:.2f} MB/s, "
        f"latency p50 {run.p50_ms:.0f} ms, p99 {run.p99_ms:.0f} ms, CPU {run.cpu_s or 0:.1f} s"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.producer",
        description=(
            "Benchmark the Python Avro producer against Kafka's own producer tool on the same "
            "cluster, in one run, and write the results to docs/benchmarks.md."
        ),
    )
    parser.add_argument(
        "--records",
        type=_positive_int,
        default=DEFAULT_RECORDS,
        help=f"records per client and setting (default {DEFAULT_RECORDS:,})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a first look: {QUICK_RECORDS:,} records"
    )
    parser.add_argument(
        "--batched-only",
        action="store_true",
        help="skip the pair with each client's default settings",
    )
    add_run_arguments(
        parser, "producer", "two temporary topics are created there and deleted afterwards"
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write its section and chart, print the results."""
    args = _parser().parse_args(argv)
    records = QUICK_RECORDS if args.quick else args.records
    setups = (BATCHED,) if args.batched_only else SETUPS
    command = command_line(
        "python -m bench.producer",
        (
            (f"--records {records}", records != DEFAULT_RECORDS),
            ("--batched-only", args.batched_only),
            ("--external", args.external),
        ),
    )
    stop_on_sigterm()
    progress = sys.stderr.isatty()
    try:
        if args.external:
            settings = Settings.from_env()
            bench, facts = _bench(settings, records, setups, progress)
        else:
            print("Starting a throw-away 3-node cluster on free ports ...")
            with throwaway_cluster() as settings:
                bench, facts = _bench(settings, records, setups, progress)
        page = publish(bench, facts, command, args.output)
    except RtmlError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print("\n".join([*ratios(bench), "", *targets(bench)]).replace("**", ""))
    print(f"Wrote the producer section of {page} and {page.parent / CHART}.")
    return 0


def _bench(
    settings: Settings, records: int, setups: Sequence[Setup], progress: bool
) -> tuple[ProducerBench, Machine]:
    facts = machine(settings)
    print(facts.line().replace("**", ""))
    return bench_producer(settings, records, setups=setups, progress=progress), facts


if __name__ == "__main__":
    sys.exit(main())
