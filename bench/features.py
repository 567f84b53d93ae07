"""The feature-app benchmark: throughput against a passthrough and a hand-written loop, and
feature freshness at fixed rates.

In one run, on one cluster:

1. a history of simulated transactions (with their labels and reference data) is replayed
   into empty pipeline topics; then each consumer processes all of it, one after the other,
   each in its own consumer group and process: the passthrough Quix app, the hand-written
   confluent-kafka loop, the feature app without its live windows and label join, and the
   full feature app (see `bench.features_worker`);
2. the full feature app, now caught up, gets live transactions at fixed rates
   (`bench.features_fresh`), and the freshness of every feature is measured;
3. a second instance of the full app processes part of the backlog under cProfile
   (`bench.features_profile`).

The results go to the `features` section of docs/benchmarks.md, with a chart in docs/img/.

    python -m bench.features              # a throw-away cluster on free ports
    python -m bench.features --quick      # a smaller history and 10 s per rate
    python -m bench.features --external   # the lab cluster: its pipeline topics are EMPTIED
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from confluent_kafka.admin import NewTopic

from bench.cluster import throwaway_cluster
from bench.features_fresh import SHORT_SECONDS, Phase, run_phase
from bench.features_profile import Profile, profile_app
from bench.features_runs import (
    Throughput,
    Watermarks,
    Worker,
    check_count,
    child_environment,
    measure_backlog,
)
from bench.features_worker import CONSUMERS, FULL, HAND, PASSTHROUGH, SLIM
from bench.producer import _TX_PER_DAY, _clean_up, _positive_int
from bench.report import (
    BenchError,
    Machine,
    add_run_arguments,
    command_line,
    machine,
    stop_on_sigterm,
)
from rtml.clients import create_missing_topics
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.features.errors import FeatureError
from rtml.features.runner import count_records, fresh_topics, remove_group
from rtml.poll import until
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer
from rtml.simulate import Simulation, SimulationParams, simulate
from rtml.simulate.producer import TRANSACTIONS, publish_reference, records, replay
from rtml.topics import spec

DEFAULT_TRANSACTIONS = 200_000
QUICK_TRANSACTIONS = 20_000
RATES = (1_000, 5_000, 10_000)
DEFAULT_SECONDS = 60.0
QUICK_SECONDS = 10.0
Log = Callable[[str], None]


@dataclass(frozen=True)
class History:
    """The backlog every consumer processes."""

    transactions: int
    labels: int
    customers: int
    terminals: int
    days: int
    tx_bytes: float  # mean size of a transaction record's value (Avro, wire format)


@dataclass
class FeatureBench:
    """Everything one run of the benchmark measured."""

    started: dt.datetime
    history: History
    partitions: int
    replication: int
    seconds_per_rate: float
    warmup_s: float
    runs: list[Throughput] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    profile: Profile | None = None

    def run(self, consumer: str) -> Throughput | None:
        return next((r for r in self.runs if r.consumer == consumer), None)

    def ratio(self, top: str, bottom: str) -> float | None:
        """Records/s of consumer `top` over those of `bottom`."""
        a, b = self.run(top), self.run(bottom)
        return a.rate / b.rate if a and b else None

    def phase(self, rate: float) -> Phase | None:
        return next((p for p in self.phases if p.rate == rate), None)


def history(transactions: int, seed: int = 0) -> Simulation:
    """The first `transactions` of a simulated history (default profiles) and their labels."""
    days = max(1, math.ceil(transactions / _TX_PER_DAY))
    while len((sim := simulate(SimulationParams(n_days=days, seed=seed))).transactions) < (
        transactions
    ):
        days *= 2
    txs = sim.transactions.iloc[:transactions]
    labels = sim.labels[sim.labels["transaction_id"].isin(txs["transaction_id"])]
    return dataclasses.replace(sim, transactions=txs, labels=labels)


def bench_features(
    settings: Settings,
    transactions: int = DEFAULT_TRANSACTIONS,
    *,
    rates: Sequence[float] = RATES,
    seconds: float = DEFAULT_SECONDS,
    warmup: float | None = None,
    profile_records: int | None = None,
    progress: bool = False,
    log: Log = print,
) -> FeatureBench:
    """Run every part of the benchmark against the cluster of `settings`; return the figures.

    The pipeline's topics are emptied first (see `fresh_topics`). Before the measured rates,
    `warmup` seconds (default: a sixth of `seconds`) of live input at the first rate let the
    app leave replay behind (its live windows jump from the history's time to now). The
    consumer groups, Quix's internal topics and the bench's own topics are deleted at the end.
    """
    if transactions < 1000:
        raise BenchError(f"The backlog needs at least 1,000 transactions, got {transactions:,}.")
    warmup = seconds / 6 if warmup is None else warmup
    profile_records = profile_records or min(50_000, transactions // 4)
    log("Emptying the pipeline's topics ...")
    fresh_topics(settings)
    register_all(settings)
    log(f"Simulating and replaying {transactions:,} transactions with their labels ...")
    sim = history(transactions)
    publish_reference(settings, sim)
    report = replay(settings, sim, progress=progress)
    if not report.ok:
        raise BenchError(f"The history was not fully acknowledged: {report.summary()}")
    log(report.summary())
    shape = spec("transactions").for_cluster(settings.nodes if settings.local else None)
    result = FeatureBench(
        dt.datetime.now(dt.UTC),
        History(
            transactions,
            len(sim.labels),
            len(sim.customers),
            len(sim.terminals),
            sim.params.n_days,
            _value_bytes(settings, sim),
        ),
        shape.partitions,
        shape.replication_factor,
        seconds,
        warmup,
    )
    run_id = uuid.uuid4().hex[:8]
    outputs = {kind: f"bench.features.{run_id}.{kind}" for kind in (PASSTHROUGH, HAND)}
    groups = {kind: f"bench-features-{run_id}-{kind}" for kind in (*CONSUMERS, "profile")}
    created = create_missing_topics(
        settings,
        [
            NewTopic(t, shape.partitions, shape.replication_factor, config=shape.configs)
            for t in outputs.values()
        ],
    )
    if sorted(created) != sorted(outputs.values()):
        raise BenchError(f"The bench topics {', '.join(outputs.values())} existed already.")
    until(lambda: _readable(settings, outputs.values()), 60, "the bench topics to be readable")
    timeout = 300 + transactions / 100  # 100 records/s would be far slower than anything seen
    try:
        with child_environment(settings), tempfile.TemporaryDirectory() as tmp:
            for kind in (PASSTHROUGH, HAND, SLIM):
                log(f"Timing {CONSUMERS[kind]} on the backlog ...")
                watch = Watermarks(settings, outputs.get(kind, "features"))
                worker = Worker(settings, kind, groups[kind], outputs.get(kind))
                try:
                    base = watch.total()
                    run = measure_backlog(worker, watch, transactions, timeout=timeout, log=log)
                    worker.stop()
                    check_count(watch, base, transactions, f"The {kind} consumer")
                finally:
                    worker.stop()
                    watch.close()
                result.runs.append(run)
                log(_line(run))
            _full_and_fresh(settings, sim, result, groups[FULL], rates, timeout, log)
            if profile_records:
                log(f"Profiling the full feature app over {profile_records:,} records ...")
                watch = Watermarks(settings, "features")
                stats = Path(tmp) / "features.prof"
                try:
                    worker = Worker(settings, FULL, groups["profile"], profile=stats)
                    result.profile = profile_app(worker, watch, profile_records, stats, log=log)
                finally:
                    watch.close()
    finally:
        for group in groups.values():
            try:
                remove_group(settings, group)
            except RtmlError as exc:
                log(f"Could not remove consumer group {group}: {exc}")
        _clean_up(settings, list(outputs.values()), [outputs[HAND]], log)
    return result


def _full_and_fresh(
    settings: Settings,
    sim: Simulation,
    result: FeatureBench,
    group: str,
    rates: Sequence[float],
    timeout: float,
    log: Log,
) -> None:
    """Time the full app on the backlog, then keep it running for the freshness phases."""
    n = result.history.transactions
    log(f"Timing {CONSUMERS[FULL]} on the backlog ...")
    watch = Watermarks(settings, "features")
    app = Worker(settings, FULL, group)
    try:
        base = watch.total()
        run = measure_backlog(app, watch, n, timeout=timeout, log=log)
        result.runs.append(run)
        log(_line(run))
        sent, behind = 0, False
        if result.warmup_s > 0:
            log(f"Warm-up: {result.warmup_s:.0f} s of live input at {rates[0]:,.0f} tx/s ...")
            quiet: Log = lambda _: None  # noqa: E731
            warm = run_phase(
                settings, sim, app, watch, rates[0], result.warmup_s, run.rate, log=quiet
            )
            sent += warm.sent
        for rate in rates:
            # Above what it can do, the app falls behind at once and must then work off the
            # whole input: a short phase shows that, and keeps the catching up short.
            short = behind or run.rate < rate / 2
            length = (
                min(result.seconds_per_rate, SHORT_SECONDS) if short else result.seconds_per_rate
            )
            log(f"Freshness at {rate:,.0f} tx/s for {length:.0f} s ...")
            phase = run_phase(settings, sim, app, watch, rate, length, run.rate, log=log)
            result.phases.append(phase)
            sent += phase.sent
            behind = behind or not phase.kept_up
        app.stop()
        check_count(watch, base, n + sent, "The full feature app")
    finally:
        app.stop()
        watch.close()


def _readable(settings: Settings, topics: Iterable[str]) -> bool:
    """True once every topic of `topics` has partitions with leaders that answer."""
    try:
        for topic in topics:
            count_records(settings, topic)
    except FeatureError:
        return False
    return True


def _value_bytes(settings: Settings, sim: Simulation, sample: int = 2000) -> float:
    """The mean size of the history's transaction values, as the producer wrote them."""
    encode = PreparedSerializer.for_topic(settings, "transactions")
    rows = records(sim.transactions.iloc[:sample], TRANSACTIONS.fields, encode.booleans)
    return float(np.mean([len(encode(row)) for row in rows]))


def _line(run: Throughput) -> str:
    return (
        f"  {run.consumer}: {run.records:,} records in {run.seconds:.1f} s after "
        f"{run.startup_s:.1f} s of start-up = {run.rate:,.0f} records/s, CPU "
        f"{run.cpu.process_s / run.records * 1e6:.0f} µs/record"
    )


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.replace("_", "").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of rates"
        ) from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more rates above 0")
    return rates


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.features",
        description=(
            "Benchmark the feature app: its throughput on a replayed backlog against a Quix "
            "passthrough and a hand-written confluent-kafka loop, and the freshness of its "
            "features at fixed live rates; write the results to docs/benchmarks.md."
        ),
    )
    parser.add_argument(
        "--transactions",
        type=_positive_int,
        default=DEFAULT_TRANSACTIONS,
        help=f"transactions in the backlog (default {DEFAULT_TRANSACTIONS:,})",
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=RATES,
        help="live rates in transactions/s, comma-separated (default "
        + ",".join(str(r) for r in RATES)
        + ")",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"seconds of live input per rate (default {DEFAULT_SECONDS:g})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_TRANSACTIONS:,} transactions, {QUICK_SECONDS:g} s per rate",
    )
    add_run_arguments(
        parser,
        "features",
        "its pipeline topics (transactions, features, labels, ...) are DELETED and created "
        "again empty, so stop the lab's services first",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write its section and chart, print the results."""
    from bench.features_page import CHART, publish, summary

    args = _parser().parse_args(argv)
    transactions = QUICK_TRANSACTIONS if args.quick else args.transactions
    seconds = QUICK_SECONDS if args.quick else args.seconds
    if seconds <= 0:
        print("bench: --seconds must be above 0.", file=sys.stderr)
        return 2
    command = command_line(
        "python -m bench.features",
        (
            ("--quick", args.quick),
            (
                f"--transactions {transactions}",
                not args.quick and transactions != DEFAULT_TRANSACTIONS,
            ),
            ("--rates " + ",".join(f"{r:g}" for r in args.rates), tuple(args.rates) != RATES),
            (f"--seconds {seconds:g}", not args.quick and seconds != DEFAULT_SECONDS),
            ("--external", args.external),
        ),
    )
    stop_on_sigterm()
    progress = sys.stderr.isatty()
    try:
        if args.external:
            settings = Settings.from_env()
            bench, facts = _bench(settings, transactions, args.rates, seconds, progress)
        else:
            print("Starting a throw-away 3-node cluster on free ports ...")
            with throwaway_cluster() as settings:
                bench, facts = _bench(settings, transactions, args.rates, seconds, progress)
        page = publish(bench, facts, command, args.output)
    except RtmlError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary(bench)).replace("**", ""))
    print(f"Wrote the features section of {page} and {page.parent / CHART}.")
    return 0


def _bench(
    settings: Settings,
    transactions: int,
    rates: Sequence[float],
    seconds: float,
    progress: bool,
) -> tuple[FeatureBench, Machine]:
    facts = machine(settings)
    print(facts.line().replace("**", ""))
    bench = bench_features(settings, transactions, rates=rates, seconds=seconds, progress=progress)
    return bench, facts


if __name__ == "__main__":
    sys.exit(main())
