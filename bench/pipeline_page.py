"""The pipeline benchmark's section of docs/benchmarks.md and its chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.features_fresh import KEEP_UP_S
from bench.report import DOCS, Machine, write_section

if TYPE_CHECKING:
    from bench.pipeline import Phase, PipelineBench

SECTION = "pipeline"
CHART = Path("img") / "bench-pipeline.png"  # relative to the page
TARGET_RATE = 10_000  # transactions/s sustained ...
TARGET_P99_MS = 100.0  # ... with event-to-prediction p99 under this
STRETCH_RATE = 25_000
STRETCH_P99_MS = 50.0
TARGET_RSS_GIB = 6.0  # the whole stack at TARGET_RATE


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def render(bench: PipelineBench, facts: Machine, command: str, chart: Path | None = CHART) -> str:
    """The `pipeline` section: conditions, the phases, cost per process, targets, chart."""
    from bench.pipeline import BEHIND_S, WARMUP_RATE, WARMUP_S

    lines = [
        "## The whole pipeline: event to prediction at fixed rates",
        "",
        facts.line(),
        "",
        f"Run on {bench.started:%Y-%m-%d at %H:%M} UTC by `{command}`. Reference data of "
        f"{bench.customers:,} customers and {bench.terminals:,} terminals, a model trained and "
        f"published as `make lab` does (version {bench.model}), then `rtml features run` "
        "(every option on: live windows, label join) and `rtml serve run` as child processes, "
        "at-least-once, as in the lab. After a warm-up of "
        f"{WARMUP_S:g} s at {WARMUP_RATE:g} tx/s, live transactions at each rate for up to "
        f"{bench.seconds_per_rate:g} s (`rtml simulate live`'s generator in this process: "
        "now-time timestamps, each label 10 s later). A phase stops early once more than "
        f"{BEHIND_S:g} s of input has no prediction yet, and every prediction of the phase is "
        "then awaited and read back. Latencies come from each prediction's timestamps "
        "(`rtml.observe.latency`): event to prediction = the prediction's record time minus "
        "the transaction's append time; freshness = feature time minus append time; scoring = "
        "the prediction's record time minus feature time.",
        "",
        "| asked (tx/s) | seconds | sent (tx/s) | predictions/s meanwhile | kept up "
        "| drained in (s) | event to prediction p50 / p95 / p99 / max (ms) "
        "| freshness p50 / p99 (ms) | scoring p50 / p99 (ms) | CPU (cores) "
        "| stack RSS (MiB) | load |",
        "|--:|--:|--:|--:|---|--:|---|---|---|--:|--:|--:|",
    ]
    for p in bench.phases:
        e, f, s = (p.latency[m] for m in ("event_to_prediction", "freshness", "scoring"))
        cores = sum(u.cpu_s for u in p.usage) / max(p.seconds + p.drain_s, 1e-9)
        kept = "yes" if p.kept_up else ("no, stopped early" if p.stopped_early else "no")
        lines.append(
            f"| {p.rate:,.0f} | {p.seconds:.0f} | {p.input_rate:,.0f} | {p.output_rate:,.0f} "
            f"| {kept} | {p.drain_s:.1f} | {_ms(e.p50)} / {_ms(e.p95)} / {_ms(e.p99)} / "
            f"{_ms(e.max)} | {_ms(f.p50)} / {_ms(f.p99)} | {_ms(s.p50)} / {_ms(s.p99)} "
            f"| {cores:.2f} | {p.rss_total_mib:,.0f} | {p.load:.1f} |"
        )
    for rate in bench.skipped:
        lines.append(
            f"| {rate:,.0f} | not run: the pipeline fell behind at a lower rate "
            "(`--all-rates` runs it) | | | | | | | | | | |"
        )
    lines += [
        "",
        f"Kept up: at most {KEEP_UP_S:g} s of input without a prediction when the input ended. "
        "Where the pipeline fell behind, latencies include the time a transaction queued "
        "behind the ones before it: they say *not kept up*, not how fast one prediction is. "
        "Values above 60 s are recorded as 60 s (the histograms' range).",
        "",
        *_processes(bench),
        "",
        *targets(bench),
    ]
    if chart is not None:
        lines += [
            "",
            f"![Event-to-prediction latency and freshness per rate]({chart.as_posix()})",
        ]
    return "\n".join(lines)


def _processes(bench: PipelineBench) -> list[str]:
    """CPU (share of one core) and peak RSS of each process, per phase."""
    if not bench.phases:
        return []
    names = [u.name for u in bench.phases[0].usage]
    head = " | ".join(f"{p.rate:,.0f} tx/s" for p in bench.phases)
    lines = [
        "CPU (cores busy over the phase and its catching up) and peak RSS (MiB) per process:",
        "",
        f"| process | {head} |",
        "|---|" + "--:|" * len(bench.phases),
    ]
    for name in names:
        cells = []
        for p in bench.phases:
            u = next((u for u in p.usage if u.name == name), None)
            span = max(p.seconds + p.drain_s, 1e-9)
            cells.append("n/a" if u is None else f"{u.cpu_s / span:.2f} / {u.rss_peak_mib:,.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _phase(bench: PipelineBench, rate: float) -> Phase | None:
    return next((p for p in bench.phases if p.rate == rate), None)


def _judge(bench: PipelineBench, rate: float, p99_ms: float, what: str) -> str:
    phase = _phase(bench, rate)
    if phase is None:
        reason = "it fell behind at a lower rate" if rate in bench.skipped else "not in this run"
        return f"- {what}: **missed**, not run ({reason})"
    e2p = phase.latency["event_to_prediction"].p99
    if phase.input_rate < 0.95 * rate:
        return (
            f"- {what}: **not shown**: the generator sent only {phase.input_rate:,.0f} tx/s "
            f"({1 - phase.input_rate / rate:.0%} short)"
        )
    if not phase.kept_up:
        return (
            f"- {what}: **missed**: {phase.output_rate:,.0f} predictions/s for "
            f"{phase.input_rate:,.0f} tx/s in ({1 - phase.output_rate / phase.input_rate:.0%} "
            "short)"
        )
    verdict = "**met**" if e2p <= p99_ms else f"**missed** by {e2p - p99_ms:,.0f} ms"
    return f"- {what}: kept up; p99 {e2p:,.0f} ms: {verdict}"


def targets(bench: PipelineBench) -> list[str]:
    """The design's targets, each judged from this run."""
    lines = [
        "Targets:",
        "",
        _judge(
            bench,
            TARGET_RATE,
            TARGET_P99_MS,
            f"{TARGET_RATE:,} tx/s sustained, event to prediction p99 under {TARGET_P99_MS:.0f} ms",
        ),
        _judge(
            bench,
            STRETCH_RATE,
            STRETCH_P99_MS,
            f"stretch: {STRETCH_RATE:,} tx/s, p99 at most {STRETCH_P99_MS:.0f} ms",
        ),
    ]
    at_target = _phase(bench, TARGET_RATE)
    if at_target is not None:
        gib = at_target.rss_total_mib / 1024
        verdict = "**met**" if gib < TARGET_RSS_GIB else "**missed**"
        lines.append(
            f"- the whole stack under {TARGET_RSS_GIB:g} GiB RSS at {TARGET_RATE:,} tx/s: "
            f"{gib:.1f} GiB: {verdict}"
        )
    met = [
        p
        for p in bench.phases
        if p.kept_up and p.latency["event_to_prediction"].p99 <= TARGET_P99_MS
    ]
    if met:
        best = max(met, key=lambda p: p.input_rate)
        lines.append(
            f"- the highest rate here with every prediction within {TARGET_P99_MS:.0f} ms at "
            f"p99: **{best.input_rate:,.0f} tx/s** (p99 "
            f"{best.latency['event_to_prediction'].p99:,.0f} ms)"
        )
    else:
        lines.append(f"- no rate here kept up with p99 within {TARGET_P99_MS:.0f} ms")
    return lines


def summary(bench: PipelineBench) -> list[str]:
    """What the command prints at the end."""
    return targets(bench)


def plot(bench: PipelineBench, path: Path) -> Path:
    """Event-to-prediction p50/p95/p99 and freshness p99 against the rate sent (log-log)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    rates = [p.input_rate for p in bench.phases]
    for name, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        ax.plot(
            rates,
            [getattr(p.latency["event_to_prediction"], name) for p in bench.phases],
            style,
            label=f"event to prediction {name}",
        )
    ax.plot(
        rates,
        [p.latency["freshness"].p99 for p in bench.phases],
        "x--",
        color="grey",
        label="freshness p99",
    )
    ax.axhline(TARGET_P99_MS, linestyle=":", color="black", linewidth=1, label="100 ms target")
    for p in bench.phases:
        if not p.kept_up:
            ax.annotate(
                "fell behind",
                (p.input_rate, p.latency["event_to_prediction"].p99),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
                color="firebrick",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("transactions per second sent")
    ax.set_ylabel("milliseconds")
    ax.set_title("simulator -> feature app -> prediction service", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def publish(bench: PipelineBench, facts: Machine, command: str, page: Path = DOCS) -> Path:
    """Write the chart beside `page` and the `pipeline` section into it."""
    if bench.phases:
        plot(bench, page.parent / CHART)
    return write_section(SECTION, render(bench, facts, command), page)
