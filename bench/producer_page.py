"""The producer benchmark's section of docs/benchmarks.md and its bar chart."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import confluent_kafka
import numpy as np

from bench.producer_runs import BATCHED, CLIENTS, PYTHON, SETUPS, ProducerBench
from bench.report import DOCS, Machine, write_section

TARGET_RATE = 100_000  # messages/s from Python, with replay's settings
TARGET_RATIO = 0.5  # of Kafka's own tool, same settings
SECTION = "producer"
CHART = Path("img") / "bench-producer.png"  # relative to the page


def render(bench: ProducerBench, facts: Machine, command: str, chart: Path | None = CHART) -> str:
    """The `producer` section of docs/benchmarks.md: table, ratios, targets, chart, caveats."""
    lines = [
        "## Producer: the Python Avro producer against Kafka's own producer tool",
        "",
        facts.line(),
        "",
        f"Run on {bench.started:%Y-%m-%d at %H:%M} UTC by `{command}`. Each client produced "
        f"{bench.records:,} records per setting to its own fresh topic ({bench.partitions} "
        f"partitions, RF {bench.replication}, min.insync.replicas 2) with acks=all and "
        "idempotence, one client after the other on the same cluster, after a warm-up of "
        f"{bench.warmup:,} records each; every run had to grow its topic by exactly its record "
        f"count. librdkafka {confluent_kafka.libversion()[0]}, confluent-kafka "
        f"{metadata.version('confluent-kafka')}.",
        "",
        "| client | settings | records | record size (B) | stored (B/record) | seconds | msg/s "
        "| MB/s | latency p50 / p99 (ms) | CPU (µs/record) | load |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for setup in SETUPS:
        for client in CLIENTS:
            run = bench.run(client, setup.name)
            if run is None:
                continue
            stored = "n/a" if run.stored_bytes is None else f"{run.stored_bytes / run.records:.1f}"
            cpu = "n/a" if run.cpu_s is None else f"{run.cpu_s / run.records * 1e6:.1f}"
            load = "n/a" if run.load is None else f"{run.load:.1f}"
            lines.append(
                f"| {CLIENTS[client]} | {setup.name}: {setup.label} | {run.records:,} | "
                f"{run.record_size:.1f} | {stored} | {run.seconds:.2f} | {run.msg_per_s:,.0f} | "
                f"{run.mb_per_s:.2f} | {run.p50_ms:.0f} / {run.p99_ms:.0f} | {cpu} | {load} |"
            )
    lines += ["", *ratios(bench), "", *targets(bench)]
    if chart is not None:
        lines += ["", f"![Messages per second of each client and setting]({chart.as_posix()})"]
    lines += [
        "",
        "How to read it:",
        "",
        "- **Python** serializes each record inside the timed loop (fastavro, Confluent wire "
        "format: magic byte, schema id, Avro body), keys it by customer id (murmur2, so one "
        "customer stays on one partition) and counts every delivery report: the loop of "
        "`rtml simulate replay`.",
        "- **Kafka's tool** (`ProducerPerformance`, from the cluster's own jars and JDK) sends "
        "payloads of the Python records' mean size, rounded, made of random letters A-Z, and no "
        "keys (so its sticky partitioner fills one partition's batch at a time). It cannot send "
        "the real Avro records: it reads a payload file as UTF-8 text, which binary Avro is not. "
        "Random letters compress worse than Avro records under lz4: the *stored* column (bytes "
        "each record adds to one replica's log, batch headers and keys included) shows how "
        "much.",
        "- **batched** is replay's setting (`PRODUCER_CONFIG` in `rtml/simulate/producer.py`); "
        "**defaults** keeps each client's own batch size (librdkafka 1 MB, Java 16 KB).",
        "- MB/s counts payload bytes, 1 MB = 10^6 bytes (Kafka's tool prints MiB/s; converted). "
        "Seconds run from the first send to the last acknowledgement. Latency runs from send to "
        "acknowledgement; at full speed it is mostly time spent queued in the client, not what "
        "one record costs on a quiet system.",
        "- *CPU* is the processor time the client's process used per record, all its threads "
        "(Python: the interpreter and librdkafka's threads; Kafka's tool: its whole JVM, "
        "start-up and JIT compilation included, which weigh more in short runs).",
        "- Both clients and the three brokers share the same cores. *load* is the machine's "
        "1-minute load average when the run started: above the number of cores, processes "
        "(other work on the machine included) waited for a CPU, and a client that spends more "
        "CPU per record, as Python does, loses more. Compare rows of one run with each other, "
        "not with another run's.",
    ]
    return "\n".join(lines) + "\n"


def ratios(bench: ProducerBench) -> list[str]:
    """The comparisons within this run: Python against the tool, batched against defaults."""
    lines = []
    for setup in SETUPS:
        ratio = bench.ratio(setup.name)
        if ratio is not None:
            line = f"- msg/s, Python / Kafka's tool, {setup.name}: **{ratio:.2f}**"
            cpu = bench.cpu_ratio(setup.name)
            if cpu is not None:
                line += f"; CPU per record, Python / Kafka's tool: {cpu:.1f}x"
            lines.append(line)
    for client in CLIENTS:
        gain = bench.batching_gain(client)
        if gain is not None:
            lines.append(f"- msg/s, batched / defaults, {CLIENTS[client]}: **{gain:.2f}x**")
    return lines


def targets(bench: ProducerBench) -> list[str]:
    """Whether the issue's two targets were met with replay's settings, and by how much."""
    py, ratio = bench.run(PYTHON, BATCHED.name), bench.ratio(BATCHED.name)
    if py is None or ratio is None:
        return ["Targets: not judged (the batched pair did not run)."]
    rate = py.msg_per_s
    if rate >= TARGET_RATE:
        rate_verdict = f"**met**: {rate:,.0f} msg/s"
    else:
        rate_verdict = (
            f"**missed** by {TARGET_RATE - rate:,.0f} msg/s ({rate:,.0f} msg/s, "
            f"{1 - rate / TARGET_RATE:.0%} short)"
        )
    if ratio >= TARGET_RATIO:
        ratio_verdict = f"**met**: {ratio:.2f}"
    else:
        ratio_verdict = f"**missed** by {TARGET_RATIO - ratio:.2f} ({ratio:.2f})"
    lines = [
        "Targets, with replay's settings:",
        "",
        f"- at least {TARGET_RATE:,} msg/s from Python: {rate_verdict}",
        f"- at least {TARGET_RATIO} of Kafka's tool: {ratio_verdict}",
    ]
    if py.loop_cpu_s and py.kafka_wait_s is not None:
        # One thread does all of Python's per-record work, so its CPU time bounds the rate.
        per_record = py.loop_cpu_s / py.records
        idle = max(0.0, py.seconds - py.loop_cpu_s - py.kafka_wait_s)
        load = f" (load {py.load:.1f} on {os.cpu_count()} cores)" if py.load is not None else ""
        lines += [
            "",
            f"Python's sending thread (serialize, key, produce, delivery callbacks) used "
            f"{per_record * 1e6:.1f} µs of CPU per record: on a core of its own it would send "
            f"at most about {1 / per_record:,.0f} msg/s. Of its {py.seconds:.1f} s it ran "
            f"{py.loop_cpu_s:.1f} s and waited {py.kafka_wait_s:.1f} s for Kafka (a full "
            f"queue, the last acknowledgements); the other {idle:.1f} s it was ready to run but "
            f"waited for a CPU{load}.",
        ]
    return lines


def plot(bench: ProducerBench, path: Path) -> Path:
    """A bar chart of messages/s per client and setting, with the Python target as a line."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    setups = [s for s in SETUPS if bench.ratio(s.name) is not None]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    x = np.arange(len(setups))
    width = 0.38
    top = TARGET_RATE / 1000
    for i, (client, colour) in enumerate(zip(CLIENTS, ("#3572A5", "#E76F00"), strict=True)):
        rates = [r.msg_per_s / 1000 for s in setups if (r := bench.run(client, s.name))]
        bars = ax.bar(x + (i - 0.5) * width, rates, width, label=CLIENTS[client], color=colour)
        ax.bar_label(bars, fmt="{:,.0f}K", padding=2)
        top = max(top, *rates)
    ax.axhline(
        TARGET_RATE / 1000,
        linestyle="--",
        color="grey",
        linewidth=1,
        label=f"target for Python: {TARGET_RATE // 1000}K msg/s",
    )
    ax.set_xticks(
        x,
        [f"{s.name}: {s.label}\nPython / Kafka's tool = {bench.ratio(s.name):.2f}" for s in setups],
        fontsize=8,
    )
    ax.set_ylabel("thousand messages per second")
    sizes = {round(r.record_size) for r in bench.runs}
    loads = sorted({round(r.load) for r in bench.runs if r.load is not None})
    load = (
        ""
        if not loads
        else f"; load average {loads[0]}" + (f"-{loads[-1]}" if len(loads) > 1 else "")
    )
    ax.set_title(
        f"{bench.records:,} records of {'/'.join(map(str, sorted(sizes)))} B each, "
        f"acks=all, idempotent, RF {bench.replication}{load}",
        fontsize=10,
    )
    ax.set_ylim(0, top * 1.4)  # room for the legend above the bars and the target line
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def publish(bench: ProducerBench, facts: Machine, command: str, page: Path = DOCS) -> Path:
    """Write the chart beside `page` and the `producer` section into it."""
    plot(bench, page.parent / CHART)
    return write_section(SECTION, render(bench, facts, command), page)
