"""The Kafka Streams peer against a slim Quix app: the same feature on the same backlog.

In one run, on one cluster: a history is replayed into an empty `transactions` topic; then
the Kafka Streams peer (`infra/streams/`, a JVM) and the slim Quix app (`rtml.peers.quix`,
a Python process) each compute the 7-day customer count and mean for every transaction of
that backlog, one after the other, each in its own consumer group, process and output
topic. Each is timed from outside as the feature benchmark times its consumers (the output
topic's log end is polled; the rate counts from the first record out), and each output is
checked against the batch reference for every transaction before its rate is believed.
The results go to the `streams-peer` section of docs/benchmarks.md.

    python -m bench.streams_peer              # a throw-away cluster on free ports
    python -m bench.streams_peer --quick      # a smaller backlog
    python -m bench.streams_peer --external   # the lab cluster: its transactions are EMPTIED
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from types import SimpleNamespace

from bench.cluster import throwaway_cluster
from bench.features import history
from bench.features_runs import (
    Throughput,
    Watermarks,
    check_count,
    child_environment,
    measure_backlog,
)
from bench.producer import _clean_up, _positive_int
from bench.report import (
    BenchError,
    Machine,
    add_run_arguments,
    command_line,
    machine,
    stop_on_sigterm,
    write_section,
)
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.features.batch import batch_features
from rtml.features.runner import fresh_topics, remove_group
from rtml.peers.compare import compare
from rtml.peers.quix import QuixPeerRun
from rtml.peers.streams import StreamsPeer, ensure_built, ensure_output, new_app_id, read_peer
from rtml.schemas import register_all
from rtml.simulate.producer import replay
from rtml.topics import spec

DEFAULT_TRANSACTIONS = 200_000
QUICK_TRANSACTIONS = 20_000
STREAMS, QUIX = "kafka-streams", "quix"
Log = Callable[[str], None]


@dataclass
class PeerBench:
    """What one run measured."""

    started: dt.datetime
    transactions: int
    days: int
    customers: int
    partitions: int
    runs: dict[str, Throughput] = dataclasses.field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Records/s of the Kafka Streams peer over those of the slim Quix app."""
        return self.runs[STREAMS].rate / self.runs[QUIX].rate


class StreamsWorker:
    """The Kafka Streams peer with the interface `measure_backlog` times (start, proc.pid,
    running, output, stop). Its start returns once Kafka Streams is RUNNING; that time is
    added to the start-up measured afterwards."""

    kind = STREAMS

    def __init__(self, peer: StreamsPeer, log: Log) -> None:
        self.peer, self.log = peer, log
        self.proc: SimpleNamespace | None = None
        self.start_s = 0.0

    def start(self) -> None:
        began = time.monotonic()
        pid = self.peer.start(log=self.log)
        self.start_s = time.monotonic() - began
        self.proc = SimpleNamespace(pid=pid)

    @property
    def running(self) -> bool:
        return self.peer.running()

    def output(self) -> str:
        return self.peer.log_tail()

    def stop(self) -> None:
        self.peer.stop()


def bench_peers(
    settings: Settings, transactions: int, *, progress: bool = False, log: Log = print
) -> PeerBench:
    """Replay a backlog, time both apps on it, check both outputs; return the figures."""
    if transactions < 1000:
        raise BenchError(f"The backlog needs at least 1,000 transactions, got {transactions:,}.")
    log("Building the Kafka Streams peer (once; cached afterwards) ...")
    ensure_built(settings, log=log)
    log("Emptying the transactions topic ...")
    fresh_topics(settings, ["transactions"])
    register_all(settings)
    log(f"Simulating and replaying {transactions:,} transactions ...")
    sim = history(transactions)
    report = replay(settings, sim, progress=progress)
    if not report.ok:
        raise BenchError(f"The history was not fully acknowledged: {report.summary()}")
    log(report.summary())
    reference = batch_features(sim.transactions, sim.labels)
    run_id = uuid.uuid4().hex[:8]
    outputs = {kind: f"bench.peer.{run_id}.{kind}" for kind in (QUIX, STREAMS)}
    for topic in outputs.values():
        ensure_output(settings, topic)
    peer = StreamsPeer(settings, app_id=new_app_id(), output=outputs[STREAMS])
    quix_group = f"bench-peer-{run_id}-quix"
    result = PeerBench(
        dt.datetime.now(dt.UTC),
        transactions,
        sim.params.n_days,
        sim.transactions["customer_id"].nunique(),
        spec("transactions").for_cluster(settings.nodes if settings.local else None).partitions,
    )
    timeout = 300 + transactions / 100
    try:
        with child_environment(settings):
            workers = {QUIX: QuixPeerRun(settings, quix_group, outputs[QUIX])}
            workers[STREAMS] = StreamsWorker(peer, log)
            for kind in (QUIX, STREAMS):
                log(f"Timing the {kind} app on the backlog ...")
                worker = workers[kind]
                watch = Watermarks(settings, outputs[kind])
                try:
                    run = measure_backlog(worker, watch, transactions, timeout=timeout, log=log)
                    worker.stop()
                    check_count(watch, 0, transactions, f"The {kind} app")
                finally:
                    worker.stop()
                    watch.close()
                if isinstance(worker, StreamsWorker):
                    run = dataclasses.replace(run, startup_s=run.startup_s + worker.start_s)
                log(f"  {_line(run)}")
                checked = compare(read_peer(settings, outputs[kind]), reference, who=kind)
                log(f"  {kind}: {checked.line()}")
                result.runs[kind] = run
    finally:
        try:
            remove_group(settings, quix_group)
            peer.remove()
        except RtmlError as exc:
            log(f"Could not remove a bench group: {exc}")
        _clean_up(settings, list(outputs.values()), [], log)
    return result


def _line(run: Throughput) -> str:
    return (
        f"{run.consumer}: {run.records:,} records in {run.seconds:.1f} s after "
        f"{run.startup_s:.1f} s of start-up = {run.rate:,.0f} records/s, CPU "
        f"{run.cpu.process_s / run.records * 1e6:.0f} µs/record"
    )


def section(bench: PeerBench, facts: Machine, command: str) -> str:
    """The `streams-peer` section of docs/benchmarks.md."""
    s, q = bench.runs[STREAMS], bench.runs[QUIX]
    rows = [
        (
            f"Kafka Streams {facts.kafka} peer (Processor API, RocksDB store; Java {facts.java})",
            s,
        ),
        (f"slim Quix Streams {version('quixstreams')} app (RocksDB state; Python)", q),
    ]
    cpu_ratio = (q.cpu.process_s / q.records) / (s.cpu.process_s / s.records)
    table = [
        "| app | records timed | start-up | duration | records/s | CPU µs/record | "
        "load (1 min) at start |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in rows:
        table.append(
            f"| {name} | {run.records:,} | {run.startup_s:.1f} s | {run.seconds:.1f} s | "
            f"{run.rate:,.0f} | {run.cpu.process_s / run.records * 1e6:.0f} | {run.load:.1f} |"
        )
    return "\n".join(
        [
            "## Kafka Streams peer: one feature in two frameworks",
            "",
            facts.line(),
            "",
            f"Run `{command}` at {bench.started:%Y-%m-%d %H:%M} UTC. A backlog of "
            f"{bench.transactions:,} transactions ({bench.days} simulated days, "
            f"{bench.customers:,} customers) was replayed into `transactions` "
            f"({bench.partitions} partitions); then each app computed the 7-day customer count "
            "and mean amount of every transaction, one app after the other, each in its own "
            "consumer group, process and output topic (JSON). Both ran at-least-once with a "
            "commit a second, one processing thread, lz4 and 5 ms linger. Each output was "
            "checked against the batch reference for every transaction (equal counts, means "
            "within 1e-9) before its rate was recorded. Rates count from each app's first "
            "record out to its last; the Kafka Streams start-up includes the JVM's start.",
            "",
            *table,
            "",
            f"**Ratio**: the Kafka Streams peer processed **{bench.ratio:.1f}x** the records/s "
            f"of the slim Quix app in this run, and used {cpu_ratio:.1f}x less CPU per record. "
            "Both apps share the machine's cores with the three brokers (and, on a loaded "
            "machine, with whatever else runs: see the load column), so read the ratios, not "
            "the absolute rates; [Kafka Streams beside Quix](beyond/kafka-streams.md) explains "
            "the setup.",
        ]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.streams_peer",
        description="Time the Kafka Streams peer and a slim Quix app computing the same "
        "feature on one replayed backlog; write the ratio to docs/benchmarks.md.",
    )
    parser.add_argument(
        "--transactions",
        type=_positive_int,
        default=DEFAULT_TRANSACTIONS,
        help=f"transactions in the backlog (default {DEFAULT_TRANSACTIONS:,})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {QUICK_TRANSACTIONS:,} transactions"
    )
    add_run_arguments(
        parser,
        "streams-peer",
        "its transactions topic is DELETED and created again empty, so stop the lab's "
        "services first",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write its section, print the results."""
    args = _parser().parse_args(argv)
    transactions = QUICK_TRANSACTIONS if args.quick else args.transactions
    command = command_line(
        "python -m bench.streams_peer",
        (
            ("--quick", args.quick),
            (
                f"--transactions {transactions}",
                not args.quick and transactions != DEFAULT_TRANSACTIONS,
            ),
            ("--external", args.external),
        ),
    )
    stop_on_sigterm()
    progress = sys.stderr.isatty()
    try:
        if args.external:
            settings = Settings.from_env()
            facts = machine(settings)
            bench = bench_peers(settings, transactions, progress=progress)
        else:
            print("Starting a throw-away 3-node cluster on free ports ...")
            with throwaway_cluster() as settings:
                facts = machine(settings)
                bench = bench_peers(settings, transactions, progress=progress)
        page = write_section("streams-peer", section(bench, facts, command), args.output)
    except RtmlError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(f"Kafka Streams / Quix: {bench.ratio:.2f}x. Wrote the streams-peer section of {page}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
