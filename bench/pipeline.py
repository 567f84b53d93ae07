"""The whole pipeline at fixed rates: simulator -> feature app -> prediction service.

In one run, on one cluster: reference data and a model trained as the lab trains it
(`rtml model train --publish`), then `rtml features run` and `rtml serve run` as child
processes, as in the lab. After a short warm-up, live transactions (with their labels 10 s
later) go in at each fixed rate for a while; every prediction of a phase is read back and
its event-to-prediction latency, feature freshness and scoring time go into HDR histograms
(`rtml.observe.latency`). CPU and peak RSS of each process (feature app, service, brokers,
registry, and this process, which produces the input) are sampled through the phase.

A phase stops early once the pipeline is more than `BEHIND_S` seconds of input behind:
beyond that it has not kept up, and running on would only lengthen the catching up. Higher
rates are then skipped (`--all-rates` runs them anyway, each stopping early the same way).

    python -m bench.pipeline              # a throw-away cluster, 300 s per rate
    python -m bench.pipeline --quick      # 30 s per rate
    python -m bench.pipeline --external   # the lab cluster: its pipeline topics are EMPTIED
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil

from bench.cluster import throwaway_cluster
from bench.features import _rates
from bench.features_fresh import kept_up
from bench.features_runs import Watermarks, child_environment
from bench.report import (
    BenchError,
    Machine,
    add_run_arguments,
    command_line,
    machine,
    stop_on_sigterm,
)
from rtml.cluster.manager import LocalCluster
from rtml.cluster.registry import Registry
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.features.runner import PIPELINE_TOPICS, FeatureRun, fresh_topics, remove_group
from rtml.model.registry import latest_published
from rtml.observe.latency import Summary, read_latency
from rtml.schemas import register_all
from rtml.serve.runner import SERVING_TOPICS, ServeRun
from rtml.simulate import Simulation, SimulationParams, simulate
from rtml.simulate.producer import live, publish_reference

RATES = (20, 100, 1_000, 5_000, 10_000, 25_000)  # 20: the lab's rate
DEFAULT_SECONDS = 300.0
QUICK_SECONDS = 30.0
BEHIND_S = 5.0  # a phase stops once this many seconds of input have no prediction yet
WARMUP_RATE = 20.0
WARMUP_S = 10.0
_SAMPLE_S = 0.5
_PROGRESS_S = 10.0
Log = Callable[[str], None]


@dataclass(frozen=True)
class Usage:
    """One process over one phase: CPU seconds used and the largest RSS seen."""

    name: str
    cpu_s: float
    rss_peak_mib: float


@dataclass(frozen=True)
class Phase:
    """One rate: what went in, what came out by when, the latencies and what it cost."""

    rate: float  # asked for, transactions/s
    asked_s: float  # how long the phase was to run
    sent: int  # transactions sent and acknowledged
    seconds: float  # from the first send to the last acknowledgement
    predicted_by_end: int  # predictions written by then
    drain_s: float  # from then until the last prediction
    stopped_early: bool  # fell BEHIND_S behind and was cut short
    latency: dict[str, Summary]  # freshness, event_to_prediction, scoring
    usage: list[Usage]
    load: float  # 1-minute load average at the start

    @property
    def input_rate(self) -> float:
        return self.sent / self.seconds

    @property
    def output_rate(self) -> float:
        """Predictions per second while transactions were coming in."""
        return self.predicted_by_end / self.seconds

    @property
    def lag_end(self) -> int:
        return self.sent - self.predicted_by_end

    @property
    def kept_up(self) -> bool:
        return not self.stopped_early and kept_up(self.lag_end, self.input_rate)

    @property
    def rss_total_mib(self) -> float:
        return sum(u.rss_peak_mib for u in self.usage)


@dataclass
class PipelineBench:
    """Everything one run measured."""

    started: dt.datetime
    customers: int
    terminals: int
    model: str  # "kind version" of the model in service
    seconds_per_rate: float
    phases: list[Phase] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)


class Processes:
    """The processes of the stack by name, sampled for CPU time and peak RSS."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._cpu: dict[str, float] = {}
        self._rss: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start a phase: CPU counted from now, RSS peaks sampled until `stop`."""
        self._cpu = {name: self._cpu_s(p) for name, p in self.procs.items()}
        self._rss = dict.fromkeys(self.procs, 0.0)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> list[Usage]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peek()
        return [
            Usage(name, self._cpu_s(p) - self._cpu[name], self._rss[name])
            for name, p in self.procs.items()
        ]

    def _sample(self) -> None:
        while not self._stop.wait(_SAMPLE_S):
            self._peek()

    def _peek(self) -> None:
        for name, p in self.procs.items():
            try:
                self._rss[name] = max(self._rss[name], p.memory_info().rss / 2**20)
            except psutil.Error:
                continue  # a process that died shows in the phase's results, not here

    @staticmethod
    def _cpu_s(p: psutil.Process) -> float:
        try:
            times = p.cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system


def stack_pids(settings: Settings, features: FeatureRun, serve: ServeRun) -> dict[str, int]:
    """The pid of every process of the stack this machine runs, by name."""
    assert features.proc is not None and serve.proc is not None
    pids = {
        "feature app": features.proc.pid,
        "prediction service": serve.proc.pid,
        "bench (input producer, readers)": os.getpid(),
    }
    if settings.local:
        cluster = LocalCluster(settings, log=lambda _: None)
        for n, node in sorted(cluster.nodes.items()):
            if (pid := node.process.pid) is not None:
                pids[f"broker {n}"] = pid
        if not settings.schema_registry_url and (pid := Registry(settings).process.pid):
            pids["schema registry"] = pid
    return pids


def train_and_publish(settings: Settings, log: Log) -> str:
    """Train and publish a model as `make lab` does; return "kind version"."""
    log("Training and publishing a model as the lab does (rtml model train --publish) ...")
    result = subprocess.run(
        [sys.executable, "-m", "rtml", "model", "train", "--publish"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"Training the model failed:\n{(result.stdout + result.stderr)[-3000:]}")
    update = latest_published(settings)
    if update is None:
        raise BenchError("The model was trained but no published version can be read back.")
    return update.version


def run_phase(
    settings: Settings,
    sim: Simulation,
    serve: ServeRun,
    features: FeatureRun,
    processes: Processes,
    rate: float,
    seconds: float,
    lap: int,
    *,
    log: Log = print,
) -> Phase:
    """Send live transactions at `rate` for `seconds` (less if the pipeline falls behind),
    wait until each has its prediction, and measure the phase."""
    watch_tx, watch_out = Watermarks(settings, "transactions"), Watermarks(settings, "predictions")
    try:
        tx_base, out_base = watch_tx.total(), watch_out.total()
        since_ms = int(time.time() * 1000)
        load = os.getloadavg()[0]
        stop, behind = threading.Event(), threading.Event()
        reports = []

        def produce() -> None:
            reports.append(
                live(
                    settings,
                    sim,
                    rate=rate,
                    duration=seconds,
                    progress=False,
                    stop=stop,
                    first_lap=lap,
                )
            )

        producer = threading.Thread(target=produce, daemon=True)
        processes.start()
        producer.start()
        next_line = time.monotonic() + _PROGRESS_S
        while producer.is_alive():
            producer.join(_SAMPLE_S)
            lag = (watch_tx.total() - tx_base) - (watch_out.total() - out_base)
            if lag > max(rate * BEHIND_S, 100) and not stop.is_set():
                log(f"  {lag:,} transactions without a prediction: behind, stopping the input")
                behind.set()
                stop.set()
            if time.monotonic() >= next_line:
                log(f"  {watch_tx.total() - tx_base:,} sent, {lag:,} waiting for a prediction")
                next_line = time.monotonic() + _PROGRESS_S
            for run in (features, serve):
                if not run.running:
                    stop.set()
                    raise BenchError(f"The {run.what} stopped mid-phase:\n{run.output()}")
        report = reports[0]
        if not report.ok:
            raise BenchError(f"The live input was not fully acknowledged: {report.summary()}")
        sent = report.topics.get("transactions", 0)
        predicted_by_end = min(watch_out.total() - out_base, sent)
        ended = time.monotonic()
        capacity = max(predicted_by_end / max(report.duration_s, 1e-9), 50.0)
        timeout = 120 + 3 * sent / capacity
        while (done := watch_out.total() - out_base) < sent:
            if time.monotonic() - ended > timeout:
                raise BenchError(
                    f"{done:,} of {sent:,} predictions within {timeout:.0f} s of the end of the "
                    "input: the pipeline is stuck."
                )
            for run in (features, serve):
                if not run.running:
                    raise BenchError(f"The {run.what} stopped while catching up:\n{run.output()}")
            time.sleep(_SAMPLE_S)
        drain_s = time.monotonic() - ended if predicted_by_end < sent else 0.0
        usage = processes.stop()
    finally:
        processes.stop()
        watch_tx.close()
        watch_out.close()
    if done != sent:
        raise BenchError(
            f"{done:,} predictions for {sent:,} transactions: records were lost or duplicated, "
            "so the results are not valid."
        )
    histograms = read_latency(settings, since_ms=since_ms, until_count=sent, timeout=300)
    latency = {s.measure: s for s in histograms.snapshot().summary()}
    phase = Phase(
        rate,
        seconds,
        sent,
        report.duration_s,
        predicted_by_end,
        drain_s,
        behind.is_set(),
        latency,
        usage,
        load,
    )
    e2p = latency["event_to_prediction"]
    log(
        f"  {rate:,.0f} tx/s asked, {phase.input_rate:,.0f} sent for {phase.seconds:.0f} s, "
        f"{phase.output_rate:,.0f} predictions/s meanwhile; event to prediction p50 "
        f"{e2p.p50:,.0f} ms, p99 {e2p.p99:,.0f} ms, max {e2p.max:,.0f} ms; "
        f"{'kept up' if phase.kept_up else 'fell behind'}"
    )
    return phase


def bench_pipeline(
    settings: Settings,
    rates: Sequence[float] = RATES,
    seconds: float = DEFAULT_SECONDS,
    *,
    all_rates: bool = False,
    log: Log = print,
) -> PipelineBench:
    """Run every phase against the cluster of `settings` (its pipeline topics are emptied)."""
    log("Emptying the pipeline's topics ...")
    fresh_topics(settings, [*PIPELINE_TOPICS, *SERVING_TOPICS])
    register_all(settings)
    params = SimulationParams(n_days=30)  # as `rtml simulate live` in the lab
    log(f"Simulating {params.n_customers:,} customers and {params.n_terminals:,} terminals ...")
    sim = simulate(params)
    publish_reference(settings, sim)
    groups: list[str] = []
    with child_environment(settings):
        version = train_and_publish(settings, log)
        result = PipelineBench(
            dt.datetime.now(dt.UTC), params.n_customers, params.n_terminals, version, seconds
        )
        try:
            with FeatureRun(settings) as features, ServeRun(settings) as serve:
                groups += [features.group, serve.group]
                serve.wait_status(lambda s: s.state == "serving", 180, "the service to serve")
                processes = Processes(stack_pids(settings, features, serve))
                log(f"Warm-up: {WARMUP_S:g} s at {WARMUP_RATE:g} tx/s ...")
                quiet: Log = lambda _: None  # noqa: E731
                run_phase(
                    settings, sim, serve, features, processes, WARMUP_RATE, WARMUP_S, 1, log=quiet
                )
                behind_at: float | None = None
                for i, rate in enumerate(rates, start=1):
                    if behind_at is not None and not all_rates:
                        result.skipped.append(rate)
                        continue
                    log(f"The pipeline at {rate:,.0f} tx/s for up to {seconds:g} s ...")
                    # Laps of 1,000 per phase: every phase's transaction ids are new.
                    phase = run_phase(
                        settings,
                        sim,
                        serve,
                        features,
                        processes,
                        rate,
                        seconds,
                        1000 * i,
                        log=log,
                    )
                    result.phases.append(phase)
                    if not phase.kept_up and behind_at is None:
                        behind_at = rate
        finally:
            for group in groups:
                try:
                    remove_group(settings, group)
                except RtmlError as exc:
                    log(f"Could not remove consumer group {group}: {exc}")
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description=(
            "Benchmark the whole pipeline (simulator, feature app, prediction service) at fixed "
            "rates: event-to-prediction latency, freshness, CPU and memory; write the results "
            "to docs/benchmarks.md."
        ),
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=RATES,
        help="rates in transactions/s, comma-separated (default "
        + ",".join(str(r) for r in RATES)
        + ")",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"seconds per rate (default {DEFAULT_SECONDS:g})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {QUICK_SECONDS:g} s per rate"
    )
    parser.add_argument(
        "--all-rates",
        action="store_true",
        help="run every rate, also those above one the pipeline already fell behind at",
    )
    add_run_arguments(
        parser,
        "pipeline",
        "its pipeline topics are DELETED and created again empty, so stop the lab's services first",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write its section and chart, print the results."""
    from bench.pipeline_page import CHART, publish, summary

    args = _parser().parse_args(argv)
    seconds = QUICK_SECONDS if args.quick else args.seconds
    if seconds <= 0:
        print("bench: --seconds must be above 0.", file=sys.stderr)
        return 2
    command = command_line(
        "python -m bench.pipeline",
        (
            ("--quick", args.quick),
            ("--rates " + ",".join(f"{r:g}" for r in args.rates), tuple(args.rates) != RATES),
            (f"--seconds {seconds:g}", not args.quick and seconds != DEFAULT_SECONDS),
            ("--all-rates", args.all_rates),
            ("--external", args.external),
        ),
    )
    stop_on_sigterm()
    try:
        if args.external:
            settings = Settings.from_env()
            bench, facts = _bench(settings, args.rates, seconds, args.all_rates)
        else:
            print("Starting a throw-away 3-node cluster on free ports ...")
            with throwaway_cluster() as settings:
                bench, facts = _bench(settings, args.rates, seconds, args.all_rates)
        page = publish(bench, facts, command, args.output)
    except RtmlError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary(bench)).replace("**", ""))
    print(f"Wrote the pipeline section of {page} and {page.parent / CHART}.")
    return 0


def _bench(
    settings: Settings, rates: Sequence[float], seconds: float, all_rates: bool
) -> tuple[PipelineBench, Machine]:
    facts = machine(settings)
    print(facts.line().replace("**", ""))
    return bench_pipeline(settings, rates, seconds, all_rates=all_rates), facts


if __name__ == "__main__":
    sys.exit(main())
