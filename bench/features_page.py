"""The feature benchmark's section of docs/benchmarks.md and its chart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.features_fresh import KEEP_UP_S, SHORT_SECONDS
from bench.features_worker import CONSUMERS, FULL, HAND, PASSTHROUGH, SLIM
from bench.report import DOCS, Machine, write_section

if TYPE_CHECKING:
    from bench.features import FeatureBench

TARGET_RATE = 10_000  # transactions/s the full app keeps up with
TARGET_P99_MS = 50.0  # freshness p99 at that rate
SECTION = "features"
CHART = Path("img") / "bench-features.png"  # relative to the page
ORDER = (PASSTHROUGH, HAND, SLIM, FULL)


def _us(seconds: float | None, records: int) -> str:
    return "n/a" if seconds is None else f"{seconds / records * 1e6:,.0f}"


def render(bench: FeatureBench, facts: Machine, command: str, chart: Path | None = CHART) -> str:
    """The `features` section: conditions, both tables, targets, limits, chart, caveats."""
    h = bench.history
    lines = [
        "## Feature app: throughput and freshness",
        "",
        facts.line(),
        "",
        f"Run on {bench.started:%Y-%m-%d at %H:%M} UTC by `{command}`. The backlog: "
        f"{h.transactions:,} transactions (Avro values of {h.tx_bytes:.1f} B on average) and "
        f"their {h.labels:,} fraud labels, the first {h.days} days of a simulated history with "
        f"{h.customers:,} customers and {h.terminals:,} terminals, replayed into empty topics "
        f"({bench.partitions} partitions, RF {bench.replication}) before any consumer started. "
        "Each consumer then processed all of it, one after the other, each in its own consumer "
        "group and process, reading from the start, and had to write exactly one record per "
        "transaction. At-least-once, offsets committed every second; producers with acks=all, "
        "idempotence, linger.ms 5, lz4.",
        "",
        "### Throughput on the same backlog",
        "",
        "| consumer | records/s | vs passthrough | start-up (s) | seconds | CPU (µs/record) "
        "| main thread CPU (µs/record) | main thread waited for a CPU (s) | load |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    base = bench.run(PASSTHROUGH)
    for kind in ORDER:
        run = bench.run(kind)
        if run is None:
            continue
        versus = f"{run.rate / base.rate:.2f}" if base else "n/a"
        wait = "n/a" if run.cpu.main_wait_s is None else f"{run.cpu.main_wait_s:.1f}"
        lines.append(
            f"| {CONSUMERS[kind]} | {run.rate:,.0f} | {versus} | {run.startup_s:.1f} | "
            f"{run.seconds:.1f} | {_us(run.cpu.process_s, run.records)} | "
            f"{_us(run.cpu.main_s, run.records)} | {wait} | {run.load:.1f} |"
        )
    lines += ["", *ratios(bench)]
    if bench.phases:
        lines += [
            "",
            "### Freshness at fixed rates",
            "",
            f"The full feature app, caught up with the backlog, then {bench.warmup_s:.0f} s of "
            f"live input to leave replay behind (not measured), then "
            f"{bench.seconds_per_rate:.0f} s of live transactions at each rate (`rtml simulate "
            "live`'s generator: now-time timestamps, each label 10 s later). Freshness = "
            "`feature_time` of the features record minus the transaction's record timestamp "
            "(its send time), for every transaction sent.",
            "",
            "| asked (tx/s) | seconds | sent (tx/s) | features/s meanwhile | behind at the end | "
            "drained in (s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | kept up | load |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|",
        ]
        for p in bench.phases:
            f = p.freshness
            lines.append(
                f"| {p.rate:,.0f} | {p.seconds:.0f} | {p.input_rate:,.0f} | {p.output_rate:,.0f} | "
                f"{p.lag_end:,} | "
                f"{p.drain_s:.1f} | {f.p50:,.0f} | {f.p95:,.0f} | {f.p99:,.0f} | {f.max:,.0f} | "
                f"{'yes' if p.kept_up else 'no'} | {p.load:.1f} |"
            )
        size = np.mean([p.feature_bytes for p in bench.phases])
        lines += ["", f"A features record's value is {size:.0f} B on average."]
        if any(not p.kept_up for p in bench.phases):
            lines += [
                "",
                "Where the app fell behind, a transaction's freshness includes the time it "
                "queued behind the ones before it, so it grows with the length of the phase: "
                "those percentiles say *not kept up*, not how fresh features are. A rate above "
                "twice the app's backlog rate, or above one it already fell behind at, runs for "
                f"{min(bench.seconds_per_rate, SHORT_SECONDS):.0f} s only, which keeps the "
                "catching up after it short.",
            ]
    lines += ["", *targets(bench), "", *limits(bench)]
    if chart is not None:
        lines += [
            "",
            f"![Records per second of each consumer; freshness percentiles per rate]"
            f"({chart.as_posix()})",
        ]
    lines += [
        "",
        "How to read it:",
        "",
        "- **records/s** counts from the consumer's first record out to its last, so start-up "
        "(imports, the registry, Quix creating its topics, the label table, the group joining) "
        "is its own column. It is read from outside, by polling the output topic's log end "
        "every 0.1 s.",
        "- The **passthrough** is the floor of any Quix app here: decode nothing, copy bytes. The "
        "**hand-written loop** computes the customer windows only (no joins, no terminal "
        "windows, no dead-letter or late-record paths) and keeps its state in a Python dict, "
        "with no changelog: it shows what the rest of the work and the framework's durable "
        "state cost. The **feature app without live windows and label join** drops the demo "
        "windows and the stream-stream join, which are not needed for the features themselves.",
        "- *CPU* is the consumer process's processor time per record, all threads (Python and "
        "librdkafka's and RocksDB's own threads); *main thread* is the one that runs every "
        "record through Python: on a core of its own, 1 / (its µs per record) bounds the rate. "
        "*waited for a CPU* is how long that thread was ready to run but had no core (Linux's "
        "schedstat).",
        f"- *kept up*: when the last transaction of a rate had been acknowledged, at most "
        f"{KEEP_UP_S:g} s of input was still without features. *behind at the end* counts "
        "those transactions; *drained in* is how long the app took to finish them.",
        "- The brokers, the producer of live input, the app and anything else on the machine "
        "share the same cores; *load* is the 1-minute load average when a run started. Above "
        "the number of cores, processes waited for a CPU, and every figure here is worse than "
        "on a quiet machine. Compare rows of one run with each other.",
    ]
    return "\n".join(lines) + "\n"


def ratios(bench: FeatureBench) -> list[str]:
    """The comparisons within this run."""
    pairs = (
        (FULL, PASSTHROUGH, "full feature app / Quix passthrough"),
        (FULL, HAND, "full feature app / hand-written loop"),
        (SLIM, FULL, "feature app without live windows and label join / full feature app"),
        (HAND, PASSTHROUGH, "hand-written loop / Quix passthrough"),
    )
    return [
        f"- records/s, {label}: **{ratio:.2f}**"
        for top, bottom, label in pairs
        if (ratio := bench.ratio(top, bottom)) is not None
    ]


def targets(bench: FeatureBench) -> list[str]:
    """Whether the full app kept up with 10,000 tx/s with freshness p99 <= 50 ms."""
    phase = bench.phase(TARGET_RATE)
    head = f"Targets, for the full feature app at {TARGET_RATE:,} transactions/s:"
    if phase is None:
        return [head, "", f"- not judged: the run did not include {TARGET_RATE:,} tx/s."]
    short = phase.input_rate < 0.95 * TARGET_RATE
    if phase.kept_up and not short:
        rate = f"**met**: {phase.output_rate:,.0f} features/s for {phase.input_rate:,.0f} tx/s in"
    elif phase.kept_up:
        rate = (
            f"**not shown**: the generator sent only {phase.input_rate:,.0f} tx/s "
            f"({1 - phase.input_rate / TARGET_RATE:.0%} short), and the app kept up with that"
        )
    else:
        rate = (
            f"**missed**: {phase.output_rate:,.0f} features/s for {phase.input_rate:,.0f} tx/s "
            f"in, {phase.lag_end:,} transactions ({phase.lag_end / phase.input_rate:.1f} s of "
            f"input) behind at the end, {1 - phase.output_rate / phase.input_rate:.0%} short"
        )
    p99 = phase.freshness.p99
    if p99 <= TARGET_P99_MS:
        fresh = f"**met**: {p99:,.0f} ms"
    else:
        fresh = (
            f"**missed** by {p99 - TARGET_P99_MS:,.0f} ms "
            f"({p99:,.0f} ms, {p99 / TARGET_P99_MS:.1f}x the target)"
        )
    return [
        head,
        "",
        f"- keeps up: {rate}",
        f"- freshness p99 at most {TARGET_P99_MS:.0f} ms: {fresh}",
    ]


def limits(bench: FeatureBench) -> list[str]:
    """What limits the full app, from its CPU use on the backlog and its profile."""
    full = bench.run(FULL)
    if full is None:
        return []
    main_us = full.cpu.main_s / full.records * 1e6
    budget_us = 1e6 / TARGET_RATE
    lines = [
        "### What limits it",
        "",
        f"On the backlog, the full app's main thread used {main_us:,.0f} µs of CPU per record "
        f"({full.cpu.process_s / full.records * 1e6:,.0f} µs for the whole process): on a core "
        f"of its own it could process at most about {1e6 / main_us:,.0f} records/s. "
        f"{TARGET_RATE:,} records/s leaves {budget_us:.0f} µs per record"
        + (
            f", {main_us / budget_us:.1f}x less than it needs."
            if main_us > budget_us
            else f", {budget_us / main_us:.1f}x what it needs."
        ),
    ]
    if full.cpu.main_wait_s is not None:
        ran, waited = full.cpu.main_s, full.cpu.main_wait_s
        lines[-1] += (
            f" Over its {full.seconds:.1f} s it ran {ran:.1f} s and waited {waited:.1f} s for a "
            f"CPU (load {full.load:.1f} on {os.cpu_count()} cores); the rest it waited for "
            "Kafka (fetches, the producer's acknowledgements at each commit)."
        )
    hand = bench.run(HAND)
    if hand is not None:
        lines[-1] += (
            f" The hand-written loop needs {hand.cpu.main_s / hand.records * 1e6:,.0f} µs on its "
            "main thread for the customer windows alone."
        )
    profile = bench.profile
    if profile is not None and profile.total_s > 0:
        per = profile.total_s / profile.records * 1e6
        lines += [
            "",
            f"Profile (cProfile, a second instance of the full app over the first "
            f"{profile.records:,} records of the backlog; cProfile adds its own cost to every "
            f"Python call, {per:,.0f} µs per record in all): own time per part of the stack,",
            "",
            "| part | share | µs/record |",
            "|---|--:|--:|",
            *(
                f"| {name} | {profile.share(s):.0%} | {s / profile.records * 1e6:,.1f} |"
                for name, s in profile.components.items()
                if profile.share(s) >= 0.005
            ),
            "",
            "and the functions with the most own time:",
            "",
            "| function | part | calls/record | share |",
            "|---|---|--:|--:|",
            *(
                f"| `{c.name}` | {c.component} | {c.calls / profile.records:.1f} | "
                f"{profile.share(c.seconds):.0%} |"
                for c in profile.top
            ),
        ]
    return lines


def summary(bench: FeatureBench) -> list[str]:
    """What the command prints at the end: ratios and targets."""
    return [*ratios(bench), "", *targets(bench)]


def plot(bench: FeatureBench, path: Path) -> Path:
    """Records/s per consumer (bars) beside freshness p50/p95/p99 per rate (log scale)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    runs = [r for kind in ORDER if (r := bench.run(kind))]
    names = ["passthrough", "hand loop", "app, slim", "app, full"]
    labels = [names[ORDER.index(r.consumer)] for r in runs]
    bars = left.bar(labels, [r.rate for r in runs], color="#3572A5")
    left.bar_label(bars, fmt="{:,.0f}", padding=2, fontsize=8)
    left.axhline(TARGET_RATE, linestyle="--", color="grey", linewidth=1, label="10,000/s")
    left.set_ylabel("records per second (backlog)")
    left.set_title(f"{bench.history.transactions:,} transactions, each consumer alone", fontsize=10)
    left.legend(loc="upper right", fontsize=8)
    if bench.phases:
        rates = [p.rate for p in bench.phases]
        for name, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
            right.plot(rates, [getattr(p.freshness, name) for p in bench.phases], style, label=name)
        right.axhline(TARGET_P99_MS, linestyle="--", color="grey", linewidth=1, label="p99 target")
        for p in bench.phases:
            if not p.kept_up:
                right.annotate(
                    "fell behind",
                    (p.rate, p.freshness.p99),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize=8,
                    color="firebrick",
                )
        right.set_yscale("log")
        right.set_xticks(rates, [f"{r:,.0f}" for r in rates])
        right.set_xlabel("live input, transactions per second")
        right.set_ylabel("feature freshness (ms)")
        right.set_title("full feature app, caught up", fontsize=10)
        right.legend(fontsize=8)
    else:
        right.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def publish(bench: FeatureBench, facts: Machine, command: str, page: Path = DOCS) -> Path:
    """Write the chart beside `page` and the `features` section into it."""
    plot(bench, page.parent / CHART)
    return write_section(SECTION, render(bench, facts, command), page)
