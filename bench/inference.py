"""The inference benchmark: scoring rows/s by batch size, scikit-learn in-process against
the ONNX export in onnxruntime (one thread), for both candidate models, in one run.

Both models are trained as `rtml model train` trains them, on a seeded simulated history,
and every format scores the same float32 rows of its test window. Each (model, format,
batch) cell scores batches for at least `min_seconds`, in rounds that visit every cell in
turn so that a burst of other load on a shared machine hits all of them alike; a cell's
figure is its best round. Before timing, each export must equal scikit-learn's scores to
1e-5 (`rtml.model.export.check_equal`): a faster format that scores differently is not kept.

    python -m bench.inference            # the full run: writes docs/benchmarks.md
    python -m bench.inference --quick    # shorter cells, for a first look
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from bench.report import DOCS, Machine, machine, write_section
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.model.dataset import INPUTS, training_set
from rtml.model.export import check_equal, onnx_session, to_onnx
from rtml.model.train import matrix, time_split, train_candidates
from rtml.simulate import SimulationParams, simulate

SECTION = "inference"
CHART = Path("img") / "bench-inference.png"  # relative to the page
BATCHES = (1, 10, 100, 1000)
SKLEARN, ONNX = "scikit-learn", "onnxruntime"
FORMATS = (SKLEARN, ONNX)
TARGET_RATIO = 20.0  # micro-batched rows/s over one-row-at-a-time rows/s
Score = Callable[[np.ndarray], object]


@dataclass(frozen=True)
class Cell:
    """One measurement: `rows` scored in `calls` calls of `batch` rows in `seconds`."""

    model: str
    fmt: str
    batch: int
    rows: int
    calls: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def us_per_call(self) -> float:
        return self.seconds / self.calls * 1e6 if self.calls else 0.0


@dataclass
class InferenceBench:
    """Every cell of one run (best round of each), and the facts of the run."""

    started: dt.datetime
    train_rows: int
    rows: int  # distinct rows scored (the test window)
    rounds: int
    min_seconds: float
    max_diff: dict[str, float] = field(default_factory=dict)  # model -> |ONNX - sklearn|
    cells: list[Cell] = field(default_factory=list)
    load: float | None = None

    def cell(self, model: str, fmt: str, batch: int) -> Cell | None:
        return next(
            (c for c in self.cells if (c.model, c.fmt, c.batch) == (model, fmt, batch)), None
        )

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.cells))

    def ratio(self, model: str, fmt: str, batch: int) -> float | None:
        """rows/s at `batch` over rows/s at batch 1, same model and format."""
        one, many = self.cell(model, fmt, 1), self.cell(model, fmt, batch)
        if one is None or many is None or one.rows_per_s == 0:
            return None
        return many.rows_per_s / one.rows_per_s

    def speedup(self, model: str, batch: int) -> float | None:
        """onnxruntime rows/s over scikit-learn rows/s, same model and batch."""
        sk, ox = self.cell(model, SKLEARN, batch), self.cell(model, ONNX, batch)
        if sk is None or ox is None or sk.rows_per_s == 0:
            return None
        return ox.rows_per_s / sk.rows_per_s

    def kept(self) -> str:
        """The format that is faster in most cells (ONNX only if it also matched)."""
        wins = [
            s > 1
            for m in self.models
            for b in BATCHES
            if (s := self.speedup(m, b)) is not None and m in self.max_diff
        ]
        return ONNX if wins and sum(wins) * 2 > len(wins) else SKLEARN


def measure(score: Score, rows: np.ndarray, batch: int, min_seconds: float) -> tuple[int, float]:
    """Score consecutive `batch`-row slices of `rows` (wrapping around) until `min_seconds`
    have passed and at least 3 calls were made; return (calls, seconds)."""
    slices = [rows[i : i + batch] for i in range(0, len(rows) - batch + 1, batch)]
    if not slices:
        raise RtmlError(f"{len(rows)} rows cannot make a batch of {batch}.")
    calls, started = 0, time.perf_counter()
    while True:
        score(slices[calls % len(slices)])
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and calls >= 3:
            return calls, elapsed


def run_cells(
    scorers: dict[tuple[str, str], Score],
    rows: np.ndarray,
    batches: Sequence[int] = BATCHES,
    rounds: int = 3,
    min_seconds: float = 0.5,
) -> list[Cell]:
    """The best of `rounds` measurements of every (model, format) scorer at every batch."""
    best: dict[tuple[str, str, int], Cell] = {}
    for _ in range(rounds):
        for (model, fmt), score in scorers.items():
            for batch in batches:
                calls, seconds = measure(score, rows, batch, min_seconds)
                cell = Cell(model, fmt, batch, calls * batch, calls, seconds)
                key = (model, fmt, batch)
                if key not in best or cell.rows_per_s > best[key].rows_per_s:
                    best[key] = cell
    return list(best.values())


def bench_inference(
    customers: int = 1000,
    terminals: int = 2000,
    days: int = 50,
    rounds: int = 3,
    min_seconds: float = 0.5,
    batches: Sequence[int] = BATCHES,
    log: Callable[[str], None] = print,
) -> InferenceBench:
    """Train both candidates on a seeded history, export them, check, and time them."""
    log(f"Training both models on {days} days of {customers:,} customers ...")
    sim = simulate(SimulationParams(n_customers=customers, n_terminals=terminals, n_days=days))
    frame = training_set(sim)
    candidates, train, test = train_candidates(frame, time_split(frame, train_days=14))
    rows = matrix(test)
    bench = InferenceBench(
        started=dt.datetime.now(dt.UTC),
        train_rows=len(train),
        rows=len(rows),
        rounds=rounds,
        min_seconds=min_seconds,
        load=os.getloadavg()[0],
    )
    scorers: dict[tuple[str, str], Score] = {}
    for c in candidates:
        onnx = to_onnx(c.model, len(INPUTS))
        bench.max_diff[c.kind] = check_equal(onnx, c.scores, rows)
        session = onnx_session(onnx)
        name = session.get_inputs()[0].name
        scorers[(c.kind, SKLEARN)] = c.model.predict_proba
        scorers[(c.kind, ONNX)] = lambda x, s=session, n=name: s.run(None, {n: x})
    log(f"Timing {len(scorers)} scorers x {len(batches)} batch sizes x {rounds} rounds ...")
    bench.cells = run_cells(scorers, rows, batches, rounds, min_seconds)
    return bench


def render(bench: InferenceBench, facts: Machine, command: str, chart: Path | None = CHART) -> str:
    """The `inference` section of docs/benchmarks.md."""
    versions = ", ".join(
        f"{p} {metadata.version(p)}" for p in ("scikit-learn", "onnxruntime", "skl2onnx")
    )
    load = f", 1-minute load average {bench.load:.1f} at the start" if bench.load else ""
    lines = [
        "## Inference: micro-batches against one row at a time, scikit-learn against ONNX",
        "",
        f"**Machine**: {facts.cores} cores ({facts.cpu}), {facts.ram_gib:.0f} GiB RAM, "
        f"{facts.os}; Python {facts.python}; {versions}. No Kafka in this one: scoring only, "
        f"in one process and one thread, while other work shared the machine{load}.",
        "",
        f"Run on {bench.started:%Y-%m-%d at %H:%M} UTC by `{command}`. Both candidates of "
        f"`rtml model train` (trained on {bench.train_rows:,} rows) scored the same "
        f"{bench.rows:,} float32 rows of their test window, each batch size for at least "
        f"{bench.min_seconds:g} s per round; each figure is the best of {bench.rounds} rounds "
        "that visit every cell in turn. ONNX matched scikit-learn on every row to "
        + ", ".join(f"{d:.1e} ({m})" for m, d in bench.max_diff.items())
        + ".",
        "",
        "| model | format | " + " | ".join(f"batch {b:,} rows/s" for b in BATCHES) + " | "
        "µs per call at batch 1 |",
        "|---|---|" + "--:|" * (len(BATCHES) + 1),
    ]
    for model in bench.models:
        for fmt in FORMATS:
            cells = [bench.cell(model, fmt, b) for b in BATCHES]
            rates = " | ".join("n/a" if c is None else f"{c.rows_per_s:,.0f}" for c in cells)
            one = cells[0]
            lines.append(
                f"| {model} | {fmt} | {rates} | "
                f"{'n/a' if one is None else f'{one.us_per_call:,.0f}'} |"
            )
    lines += ["", *summary(bench)]
    if chart is not None:
        lines += ["", f"![Rows per second by batch size, model and format]({chart.as_posix()})"]
    lines += [
        "",
        "How to read it: one call has a fixed cost (Python to C and back, input checks, for "
        "scikit-learn a pass through the pipeline's steps and, for the forest, a joblib "
        "dispatch per call), and a per-row cost (the arithmetic). At batch 1 the fixed cost is "
        "all there is; a micro-batch spreads it over its rows. The prediction service scores "
        "what one poll returns as one batch for that reason.",
    ]
    return "\n".join(lines) + "\n"


def summary(bench: InferenceBench) -> list[str]:
    """The ratios asked for, the target verdict, and the format kept."""
    lines = []
    for model in bench.models:
        for fmt in FORMATS:
            parts = [
                f"batch {b:,}: **{r:,.0f}x**"
                for b in BATCHES[1:]
                if (r := bench.ratio(model, fmt, b)) is not None
            ]
            lines.append(f"- rows/s over one row at a time, {model}, {fmt}: " + ", ".join(parts))
    kept = bench.kept()
    speedups = []
    for model in bench.models:
        parts = [
            f"{x:.1f}x at batch {b:,}"
            for b in BATCHES
            if (x := bench.speedup(model, b)) is not None
        ]
        if parts:
            speedups.append(f"{model} {', '.join(parts)}")
    lines += [
        f"- onnxruntime over scikit-learn: {'; '.join(speedups)}.",
        "",
        *targets(bench, kept),
        "",
        f"Kept: **{kept}**"
        + (
            ", the format `model-updates` carries: faster in most cells and equal to 1e-5."
            if kept == ONNX
            else ": scikit-learn was faster here, so the ONNX export buys no speed on this "
            "machine (it is still what is published, as data rather than pickled code)."
        ),
    ]
    return lines


def costs(bench: InferenceBench, model: str, fmt: str) -> tuple[float, float] | None:
    """(µs per call, µs per row) of a scorer, from its batch 1 and largest-batch cells:
    a call of n rows takes about fixed + n x per_row."""
    one, many = bench.cell(model, fmt, 1), bench.cell(model, fmt, BATCHES[-1])
    if one is None or many is None or many.rows_per_s == 0:
        return None
    per_row = 1e6 / many.rows_per_s
    return max(0.0, one.us_per_call - per_row), per_row


def targets(bench: InferenceBench, kept: str) -> list[str]:
    """The issue's target: micro-batches at least TARGET_RATIO times one row at a time."""
    out = []
    for model in bench.models:
        ratio = bench.ratio(model, kept, 100)
        if ratio is None:
            continue
        verdict = "**met**" if ratio >= TARGET_RATIO else "**missed**"
        line = (
            f"- target: micro-batches of 100 at least {TARGET_RATIO:g}x one row at a time "
            f"({model}, {kept}): {verdict} ({ratio:,.0f}x)"
        )
        cost = costs(bench, model, kept)
        if cost is not None and ratio < TARGET_RATIO:
            fixed, per_row = cost
            line += (
                f". A call costs about {fixed:,.1f} µs plus {per_row:,.1f} µs per row here "
                f"(from batches 1 and {BATCHES[-1]:,}): the rows' own work (for a forest, "
                "walking every tree) dominates, so batching has little fixed cost to spread."
            )
        out.append(line)
    return out


def plot(bench: InferenceBench, path: Path) -> Path:
    """Rows/s against batch size, log-log, one line per model and format."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for model in bench.models:
        for fmt, style in zip(FORMATS, ("--", "-"), strict=True):
            cells = [c for b in BATCHES if (c := bench.cell(model, fmt, b)) is not None]
            ax.plot(
                [c.batch for c in cells],
                [c.rows_per_s for c in cells],
                style,
                marker="o",
                label=f"{model}, {fmt}",
            )
    ax.set(xscale="log", yscale="log", xlabel="rows per call (batch size)", ylabel="rows/s")
    ax.set_title("Scoring rate by batch size (one thread, best of rounds)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def publish(bench: InferenceBench, facts: Machine, command: str, page: Path = DOCS) -> Path:
    """Write the chart beside `page` and the `inference` section into it."""
    plot(bench, page.parent / CHART)
    return write_section(SECTION, render(bench, facts, command), page)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write its section and chart, print the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="0.2 s cells, 2 rounds")
    parser.add_argument("--output", type=Path, default=DOCS, help="the page to write")
    args = parser.parse_args(argv)
    rounds, seconds = (2, 0.2) if args.quick else (3, 0.5)
    command = "python -m bench.inference" + (" --quick" if args.quick else "")
    try:
        facts = machine(Settings.from_env())
        bench = bench_inference(rounds=rounds, min_seconds=seconds)
        page = publish(bench, facts, command, args.output)
    except RtmlError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary(bench)).replace("**", ""))
    print(f"Wrote the inference section of {page} and {page.parent / CHART}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
