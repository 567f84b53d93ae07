"""The hop-latency floor: one record produced and read back, by Kafka's tool and by Python.

Every Kafka hop of the pipeline is a produce (acks=all, replicated) followed by a fetch,
and no feature or model code can make a hop cheaper than that. This benchmark measures the
floor twice over, on one cluster, in one run:

- Kafka's own `EndToEndLatency` tool (Java, from the cluster's jars and JDK): it sends one
  record synchronously, polls it back on an assigned consumer, and repeats;
- the same round trip from Python with confluent-kafka, with the tool's client settings
  (linger.ms 0, acks=all with idempotence, fetch.wait.max.ms 0), timed per record.

Each runs on an idle cluster, then under load: Kafka's producer tool writing to another
topic (shaped like `transactions`) at a fixed rate with the project's durable, batched
producer settings. Each run writes to a fresh topic of one partition (what the tool
expects), RF 3, min.insync.replicas 2. The results go to the `hop` section of
docs/benchmarks.md.

    python -m bench.hop              # a throw-away cluster, 10,000 round trips per run
    python -m bench.hop --quick      # 500 round trips per run, about a minute
    python -m bench.hop --external   # the running lab cluster (or RTML_BOOTSTRAP_SERVERS)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from bench.cluster import log_end, throwaway_cluster
from bench.kafka_tool import producer_properties
from bench.producer_runs import BATCHED
from bench.report import (
    BenchError,
    Machine,
    add_run_arguments,
    command_line,
    machine,
    stop_on_sigterm,
    write_section,
)
from rtml.clients import admin, create_missing_topics, durable_producer
from rtml.cluster.tools import tool_command
from rtml.config import Settings
from rtml.connect.worker import java_security
from rtml.errors import RtmlError
from rtml.poll import until
from rtml.topics import spec

DEFAULT_MESSAGES = 10_000
QUICK_MESSAGES = 500
MESSAGE_BYTES = 200
WARMUP_MESSAGES = 200
LOAD_RATE = 5_000  # records/s written to another topic while the loaded runs go
KAFKA, PYTHON = "Kafka's EndToEndLatency (Java)", "Python (confluent-kafka)"
IDLE, LOADED = "idle", "under load"
BUDGET_MS = 100.0  # the design's event-to-prediction target
DESIGN_P50_MS, DESIGN_P99_MS = 1.0, 12.0  # the design's per-hop assumption, idle
KAFKA_HOPS = 3  # inside event-to-prediction: transactions, the repartition topic, features
OVERLOADED = 3.0  # a load average above this many per core inflates even medians
_POLL_S = 60.0  # as the tool: a record not back within this long fails the run
# The tool's summary (Kafka 3.x and 4.x); its latencies are whole milliseconds, truncated.
_AVG = re.compile(r"^Avg latency: (?P<avg>[\d.]+) ms$", re.MULTILINE)
_PERCENTILES = re.compile(
    r"^Percentiles: 50th = (?P<p50>\d+), 99th = (?P<p99>\d+), 99\.9th = (?P<p999>\d+)$",
    re.MULTILINE,
)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Hop:
    """One run: `messages` round trips by one client in one condition, in milliseconds."""

    client: str
    condition: str
    messages: int
    avg_ms: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float | None  # the tool does not print its maximum
    load_rate: float | None = None  # records/s the load wrote meanwhile (None when idle)


@dataclass
class HopBench:
    """Everything one run measured."""

    started: dt.datetime
    messages: int
    replication_factor: int
    min_insync: int
    load_rate: int
    hops: list[Hop] = field(default_factory=list)


def parse_tool_output(output: str) -> tuple[float, int, int, int]:
    """Average, p50, p99 and p99.9 in ms from EndToEndLatency's output (its last summary)."""
    avg, pct = list(_AVG.finditer(output)), list(_PERCENTILES.finditer(output))
    if not avg or not pct:
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise BenchError(f"Kafka's end-to-end latency tool printed no summary; it said:\n{tail}")
    return float(avg[-1]["avg"]), int(pct[-1]["p50"]), int(pct[-1]["p99"]), int(pct[-1]["p999"])


def tool_percentile(sorted_values: Sequence[float], q: float) -> float:
    """The value at index floor(n * q) of sorted values: the tool's rule, so both clients'
    percentiles are read the same way."""
    if not sorted_values:
        raise BenchError("No round trip was measured.")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def summarize(
    client: str, condition: str, latencies_ms: Sequence[float], load_rate: float | None = None
) -> Hop:
    """A Hop from every round trip's latency in ms."""
    values = sorted(latencies_ms)
    return Hop(
        client,
        condition,
        len(values),
        sum(values) / len(values) if values else 0.0,
        tool_percentile(values, 0.5),
        tool_percentile(values, 0.99),
        tool_percentile(values, 0.999),
        values[-1],
        load_rate,
    )


def run_tool(settings: Settings, topic: str, messages: int, timeout: float = 900.0) -> Hop:
    """Run EndToEndLatency against `topic` (which must exist: the tool would create it with
    RF 1); the condition is filled in by the caller."""
    with tempfile.TemporaryDirectory(prefix="rtml-bench-") as tmp:
        config = Path(tmp) / "client.properties"
        config.touch(mode=0o600)  # it may hold a password
        _write_properties(config, java_security(settings.security))
        argv = tool_command(
            settings,
            "end-to-end-latency",
            [settings.bootstrap, topic, str(messages), "all", str(MESSAGE_BYTES), str(config)],
        )
        # A C locale keeps the tool's decimal point a '.'.
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"Kafka's end-to-end latency tool took more than {timeout:.0f} s."
            ) from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise BenchError(f"Kafka's end-to-end latency tool exited with {done.returncode}:\n{tail}")
    avg, p50, p99, p999 = parse_tool_output(done.stdout)
    return Hop(KAFKA, "", messages, avg, p50, p99, p999, None)


def python_round_trips(settings: Settings, topic: str, messages: int) -> list[float]:
    """Produce one record and poll it back, `messages` times, as the tool does: the latency
    of each in ms, from the send to the record in hand."""
    producer = durable_producer(settings, quiet=True, linger_ms=0)
    consumer = Consumer(
        settings.client_config(
            group_id=f"bench-hop-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            fetch_wait_max_ms=0,  # as the tool: no waiting for more data on the broker
        )
    )
    try:
        # An explicit offset, not OFFSET_END: the first record cannot slip in before the
        # consumer has resolved where the end is.
        partition = TopicPartition(topic, 0)
        partition.offset = consumer.get_watermark_offsets(partition, timeout=30)[1]
        consumer.assign([partition])
        payload = bytearray(MESSAGE_BYTES)
        latencies = []
        for i in range(messages):
            payload[:] = bytes([65 + i % 26]) * MESSAGE_BYTES
            value = bytes(payload)
            begin = time.perf_counter_ns()
            producer.produce(topic, value, partition=0)
            if producer.flush(_POLL_S) != 0:
                raise BenchError(f"Record {i} was not acknowledged within {_POLL_S:.0f} s.")
            record = consumer.poll(_POLL_S)
            elapsed = time.perf_counter_ns() - begin
            if record is None:
                raise BenchError(f"Record {i} was not read back within {_POLL_S:.0f} s.")
            if record.error() is not None:
                raise BenchError(f"Reading record {i} back failed: {record.error()}.")
            if record.value() != value:
                raise BenchError(f"Record {i} read back is not the record sent.")
            latencies.append(elapsed / 1e6)
        return latencies
    finally:
        consumer.close()


@contextmanager
def background_load(settings: Settings, topic: str, rate: int, log: Log) -> Iterator[None]:
    """Kafka's producer tool writing `rate` records/s of MESSAGE_BYTES to `topic` with the
    durable, batched settings, from a separate process until the block ends."""
    with tempfile.TemporaryDirectory(prefix="rtml-bench-") as tmp:
        config = Path(tmp) / "producer.properties"
        config.touch(mode=0o600)
        _write_properties(config, producer_properties(settings, BATCHED.kafka))
        out = Path(tmp) / "load.log"
        argv = tool_command(
            settings,
            "producer-perf-test",
            [
                "--topic",
                topic,
                "--num-records",
                str(rate * 86_400),  # more than any run lasts: it is stopped at the end
                "--record-size",
                str(MESSAGE_BYTES),
                "--throughput",
                str(rate),
                "--producer.config",
                str(config),
            ],
        )
        with out.open("w") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        try:
            start = log_end(settings, topic)

            def flowing() -> bool:
                if proc.poll() is not None:
                    raise BenchError(f"The load producer stopped:\n{out.read_text()[-2000:]}")
                return log_end(settings, topic) - start >= rate

            until(flowing, timeout=120, interval=0.5, what="the load producer to get going")
            log(f"  load: {rate:,} records/s asked, going")
            yield
            if proc.poll() is not None:
                raise BenchError(f"The load producer stopped:\n{out.read_text()[-2000:]}")
        finally:
            proc.kill()
            proc.wait()


def bench_hop(
    settings: Settings,
    messages: int = DEFAULT_MESSAGES,
    load_rate: int = LOAD_RATE,
    *,
    log: Log = print,
) -> HopBench:
    """Both clients idle, then both under load, each on a fresh topic; the topics are
    deleted afterwards."""
    if messages < 1:
        raise BenchError(f"messages must be at least 1, got {messages}.")
    shape = spec("transactions").for_cluster(settings.nodes if settings.local else None)
    min_insync = int(shape.configs.get("min.insync.replicas", "1"))
    run_id = uuid.uuid4().hex[:8]
    names = {
        (client, condition): f"bench.hop.{run_id}.{i}"
        for i, (condition, client) in enumerate(
            (c, k) for c in (IDLE, LOADED) for k in (KAFKA, PYTHON)
        )
    }
    load_topic = f"bench.hop.{run_id}.load"
    wanted = [
        NewTopic(t, 1, shape.replication_factor, config={"min.insync.replicas": str(min_insync)})
        for t in names.values()
    ] + [NewTopic(load_topic, shape.partitions, shape.replication_factor, config=shape.configs)]
    result = HopBench(
        dt.datetime.now(dt.UTC), messages, shape.replication_factor, min_insync, load_rate
    )
    try:
        if len(create_missing_topics(settings, wanted)) != len(wanted):
            raise BenchError(f"Some bench topics bench.hop.{run_id}.* existed already.")
        # Warm the brokers and this process's client code up first, so the idle runs do
        # not pay alone for what the loaded runs then get for free.
        warm = min(messages, WARMUP_MESSAGES)
        log(f"Warming up: {warm:,} round trips, not measured ...")
        python_round_trips(settings, load_topic, warm)
        log(f"Idle cluster: {messages:,} round trips of {MESSAGE_BYTES} B per client ...")
        result.hops += _both(settings, names, IDLE, messages, log)
        log(f"Under load ({load_rate:,} records/s to another topic) ...")
        with background_load(settings, load_topic, load_rate, log):
            before, begin = log_end(settings, load_topic), time.monotonic()
            hops = _both(settings, names, LOADED, messages, log)
            rate = (log_end(settings, load_topic) - before) / (time.monotonic() - begin)
        log(f"  load: {rate:,.0f} records/s written while measuring")
        result.hops += [dataclasses.replace(h, load_rate=rate) for h in hops]
    finally:
        _delete(settings, [*names.values(), load_topic], log)
    return result


def _both(
    settings: Settings,
    names: Mapping[tuple[str, str], str],
    condition: str,
    messages: int,
    log: Log,
) -> list[Hop]:
    """The tool, then Python, each on its own topic, in `condition`."""
    kafka = dataclasses.replace(
        run_tool(settings, names[KAFKA, condition], messages), condition=condition
    )
    log(_line(kafka))
    latencies = python_round_trips(settings, names[PYTHON, condition], messages)
    python = summarize(PYTHON, condition, latencies)
    log(_line(python))
    return [kafka, python]


def _line(hop: Hop) -> str:
    worst = "" if hop.max_ms is None else f", max {hop.max_ms:.1f}"
    return (
        f"  {hop.client}, {hop.condition}: {hop.messages:,} round trips, avg {hop.avg_ms:.2f} ms, "
        f"p50 {hop.p50_ms:.1f}, p99 {hop.p99_ms:.1f}, p99.9 {hop.p999_ms:.1f}{worst} ms"
    )


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    # In a properties file a backslash escapes the next character.
    path.write_text("".join(f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in props.items()))


def _delete(settings: Settings, topics: list[str], log: Log) -> None:
    """Delete the bench topics that exist; a failure is reported, not raised."""
    client = admin(settings, timeout=10)
    try:
        existing = [t for t in topics if t in client.list_topics(timeout=10).topics]
        for name, fut in (
            client.delete_topics(existing, operation_timeout=30) if existing else {}
        ).items():
            try:
                fut.result(timeout=60)
            except (KafkaException, TimeoutError) as exc:
                log(f"Could not delete bench topic {name}: {exc}")
    except (KafkaException, TimeoutError) as exc:
        log(f"Could not delete the bench topics: {exc}")


def _ms(value: float | None, whole: bool) -> str:
    if value is None:
        return "not printed"
    return f"{value:,.0f}" if whole else f"{value:,.1f}"


def render(bench: HopBench, facts: Machine, command: str, load: float | None = None) -> str:
    """The `hop` section: conditions, the table, and what it means for the 100 ms budget."""
    when = bench.started.strftime("%Y-%m-%d at %H:%M UTC")
    rows = [
        f"| {h.client} | {h.condition} | {h.messages:,} | {h.avg_ms:.2f} | "
        f"{_ms(h.p50_ms, h.client == KAFKA)} | {_ms(h.p99_ms, h.client == KAFKA)} | "
        f"{_ms(h.p999_ms, h.client == KAFKA)} | {_ms(h.max_ms, False)} |"
        for h in bench.hops
    ]
    loaded = [h.load_rate for h in bench.hops if h.load_rate is not None]
    achieved = "no loaded run finished"
    if loaded:
        low, high = f"{min(loaded):,.0f}", f"{max(loaded):,.0f}"
        achieved = f"{low if low == high else f'{low} to {high}'} records/s were written meanwhile"

    shared = ""
    if load is not None:
        shared = f" The 1-minute load average was {load:.1f} on {facts.cores} cores at the start"
        if load > OVERLOADED * facts.cores:
            shared += (
                ": the machine was overloaded by other work, so every figure here, medians "
                "included, holds time spent waiting for a CPU, and *idle* means only that no "
                "other client used this cluster."
            )
        elif load > facts.cores:
            shared += ": the machine was shared with other work, which shows in the tails."
        else:
            shared += "."
    lines = [
        "## The hop floor: one record produced and read back",
        "",
        facts.line(),
        "",
        f"Run on {when} by `{command}`.{shared} Each run sends {bench.messages:,} records of "
        f"{MESSAGE_BYTES} B one at a time to a fresh topic of 1 partition (RF "
        f"{bench.replication_factor}, min.insync.replicas {bench.min_insync}), each "
        "acknowledged with acks=all and then polled back on an assigned consumer before the "
        "next is sent: Kafka's own `EndToEndLatency` tool (Java), then the same loop in "
        "Python with confluent-kafka and the tool's client settings (linger.ms 0, "
        "idempotence, fetch.wait.max.ms 0). *Under load*, Kafka's producer tool writes "
        f"{bench.load_rate:,} records/s of {MESSAGE_BYTES} B to another topic shaped like "
        "`transactions` from a separate process, with the project's durable batched "
        f"settings (acks=all, idempotence, linger.ms 20, lz4): {achieved}.",
        "",
        "| client | condition | round trips | avg (ms) | p50 (ms) | p99 (ms) | p99.9 (ms) | "
        "max (ms) |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
        *rows,
        "",
        "The tool truncates each latency to whole milliseconds and prints no maximum; its "
        "average is exact. Percentiles of both are the value at index n x q of the sorted "
        "latencies (the tool's rule), so with fewer than 1,000 round trips p99.9 is the "
        "maximum. The first round trip of each run includes connecting to the partition's "
        "leader, and each run of the tool is a new JVM, started cold: in short runs its "
        "figures include the JIT's warm-up.",
        "",
        *_meaning(bench),
    ]
    return "\n".join(lines)


def _meaning(bench: HopBench) -> list[str]:
    """Two or three sentences from the numbers: Python beside the tool, the design's
    assumption, and what the hops take of the 100 ms event-to-prediction budget."""
    runs = {(h.client, h.condition): h for h in bench.hops}
    sentences = []
    pairs = [(c, runs[KAFKA, c], runs[PYTHON, c]) for c in (IDLE, LOADED) if (KAFKA, c) in runs]
    pairs = [(c, k, py) for c, k, py in pairs if (PYTHON, c) in runs]
    if pairs:
        gap = max(py.p50_ms - k.p50_ms for _, k, py in pairs)
        # The tool truncates to whole ms: within 1 ms of it is no measurable difference.
        verdict = (
            "a hop from Python costs no more than one from Kafka's own Java clients"
            if gap < 1
            else f"the Python client adds up to {gap:.1f} ms per hop at p50"
        )
        compared = " and ".join(
            f"{py.p50_ms:.1f} ms against the tool's {k.p50_ms:.0f} ms {c}" for c, k, py in pairs
        )
        sentences.append(f"**Python beside Java**: p50 {compared}: {verdict}.")
    if (KAFKA, IDLE) in runs:
        idle = runs[KAFKA, IDLE]
        sentences.append(
            f"The design assumed p50 {DESIGN_P50_MS:.0f} ms and p99 {DESIGN_P99_MS:.0f} ms per "
            f"hop on an idle cluster; Kafka's tool measured p50 {idle.p50_ms:.0f} ms and p99 "
            f"{idle.p99_ms:.0f} ms here."
        )
    worst = runs.get((PYTHON, LOADED)) or runs.get((PYTHON, IDLE))
    if worst is not None:
        p50, p99 = KAFKA_HOPS * worst.p50_ms, KAFKA_HOPS * worst.p99_ms
        where = "under load" if worst.condition == LOADED else "on the idle cluster"
        sentences.append(
            f"**What it means for the 100 ms budget**: event to prediction crosses Kafka "
            f"{KAFKA_HOPS} times (the transaction fetched after its append, the feature app's "
            "repartition topic, features to the prediction service), each a round trip like "
            f"these. At the Python client's figures {where} that is about {p50:,.0f} ms at "
            f"p50 and up to {p99:,.0f} ms if every hop hit its p99 ({KAFKA_HOPS} x "
            f"{worst.p50_ms:.1f} and {KAFKA_HOPS} x {worst.p99_ms:.1f} ms): {_share(p99)}, "
            "before any feature or model code runs and before the pipeline's producers wait "
            "for their batches (linger.ms 5 in the simulator's live mode and the feature app). "
            "Percentiles do not add exactly: three hops all at their p99 is the pessimistic "
            "bound, not the expected p99 of the path."
        )
    return [" ".join(sentences[:-1]), "", sentences[-1]] if len(sentences) > 1 else sentences


def _share(ms: float) -> str:
    """How much of the 100 ms budget `ms` takes, in words."""
    if ms > BUDGET_MS:
        return f"more than the whole {BUDGET_MS:.0f} ms budget"
    return f"{ms / BUDGET_MS:.0%} of the budget"


def publish(bench: HopBench, facts: Machine, command: str, path: Path, load: float) -> Path:
    """Write the `hop` section of the page at `path`."""
    return write_section("hop", render(bench, facts, command, load), path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hop",
        description=(
            "Measure one Kafka hop (produce with acks=all, read back) with Kafka's own "
            "end-to-end latency tool and with Python, idle and under load, and write the "
            "results to docs/benchmarks.md."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a first look: {QUICK_MESSAGES:,} round trips per run instead of "
        f"{DEFAULT_MESSAGES:,}",
    )
    add_run_arguments(
        parser,
        "hop",
        "five temporary topics are created there, loaded and deleted afterwards",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write its section, print the results."""
    args = _parser().parse_args(argv)
    messages = QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES
    command = command_line(
        "python -m bench.hop", (("--quick", args.quick), ("--external", args.external))
    )
    stop_on_sigterm()
    try:
        if args.external:
            page = _run(Settings.from_env(), messages, command, args.output)
        else:
            print("Starting a throw-away 3-node cluster on free ports ...")
            with throwaway_cluster() as settings:
                page = _run(settings, messages, command, args.output)
    except RtmlError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote the hop section of {page}.")
    return 0


def _run(settings: Settings, messages: int, command: str, output: Path) -> Path:
    facts = machine(settings)
    print(facts.line().replace("**", ""))
    load = os.getloadavg()[0]
    bench = bench_hop(settings, messages)
    return publish(bench, facts, command, output, load)


if __name__ == "__main__":
    sys.exit(main())
