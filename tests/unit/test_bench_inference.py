"""The inference benchmark's parts: timing loop, best-of rounds, ratios, page, a tiny run."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bench.inference import (
    ONNX,
    SKLEARN,
    Cell,
    InferenceBench,
    bench_inference,
    costs,
    measure,
    publish,
    run_cells,
)
from bench.report import Machine
from rtml.errors import RtmlError

FACTS = Machine(2, "AMD EPYC", 24, "Debian 12", "3.11.7", "25.0.2", "4.1.1", "3 local nodes")


def test_measure_scores_consecutive_batches_until_the_time_is_up() -> None:
    seen = []
    rows = np.arange(10, dtype=np.float32).reshape(10, 1)
    calls, seconds = measure(lambda x: seen.append(x[:, 0].tolist()), rows, 4, 0.0)
    assert calls == 3 and seconds >= 0
    # Two whole batches fit in 10 rows; the third call wraps around to the first.
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]
    with pytest.raises(RtmlError, match="cannot make a batch of 11"):
        measure(lambda x: None, rows, 11, 0.0)


def test_each_cell_keeps_its_best_round() -> None:
    delays = iter([0.02, 0.0, 0.0])  # the first round is disturbed, later ones are not

    def slow_then_fast(x: np.ndarray) -> None:
        pause = next(delays, 0.0)
        if pause:
            # Wait on a clock, not a sleep: the point is a slower first call.
            end = dt.datetime.now() + dt.timedelta(seconds=pause)
            while dt.datetime.now() < end:
                pass

    rows = np.zeros((4, 1), dtype=np.float32)
    cells = run_cells(
        {("m", SKLEARN): slow_then_fast}, rows, batches=(1,), rounds=3, min_seconds=0.0
    )
    assert len(cells) == 1 and cells[0].calls == 3
    assert cells[0].seconds < 0.02


def _bench() -> InferenceBench:
    bench = InferenceBench(dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC), 1000, 500, 3, 0.5)
    bench.max_diff = {"forest": 3e-7}
    rates = {(SKLEARN, 1): 100, (SKLEARN, 100): 5_000, (ONNX, 1): 10_000, (ONNX, 100): 300_000}
    for (fmt, batch), rate in rates.items():
        bench.cells.append(Cell("forest", fmt, batch, rate, rate // batch, 1.0))
    return bench


def test_ratios_speedups_and_the_kept_format() -> None:
    bench = _bench()
    assert bench.ratio("forest", ONNX, 100) == pytest.approx(30)
    assert bench.ratio("forest", SKLEARN, 100) == pytest.approx(50)
    assert bench.speedup("forest", 1) == pytest.approx(100)
    assert bench.ratio("forest", ONNX, 10) is None  # not measured
    assert bench.kept() == ONNX
    bench.max_diff = {}  # an export that was not checked is never kept
    assert bench.kept() == SKLEARN


def test_the_page_states_the_ratio_target_and_kept_format(tmp_path) -> None:
    page = publish(_bench(), FACTS, "python -m bench.inference", tmp_path / "benchmarks.md")
    text = page.read_text()
    assert "<!-- bench:inference -->" in text and "<!-- /bench:inference -->" in text
    assert "| forest | onnxruntime | 10,000 | n/a | 300,000 | n/a | 100 |" in text
    assert "(forest, onnxruntime): **met** (30x)" in text
    assert "Kept: **onnxruntime**" in text
    assert (tmp_path / "img" / "bench-inference.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tiny_real_run_times_both_models_in_both_formats() -> None:
    bench = bench_inference(
        customers=150, terminals=300, days=30, rounds=1, min_seconds=0.01, batches=(1, 10)
    )
    assert {(c.model, c.fmt, c.batch) for c in bench.cells} == {
        (m, f, b)
        for m in ("logistic_regression", "random_forest")
        for f in (SKLEARN, ONNX)
        for b in (1, 10)
    }
    assert all(c.rows_per_s > 0 and c.rows == c.calls * c.batch for c in bench.cells)
    assert max(bench.max_diff.values()) <= 1e-5


def test_a_missed_target_is_explained_by_the_per_row_cost(tmp_path) -> None:
    bench = _bench()
    # One row: 10,000 rows/s = 100 µs a call; 1,000 rows: 20,000 rows/s = 50 µs a row.
    bench.cells.append(Cell("forest", ONNX, 1000, 20_000, 20, 1.0))
    bench.cells = [c for c in bench.cells if (c.fmt, c.batch) != (ONNX, 100)]
    bench.cells.append(Cell("forest", ONNX, 100, 15_000, 150, 1.0))
    assert costs(bench, "forest", ONNX) == (pytest.approx(50.0), pytest.approx(50.0))
    text = publish(bench, FACTS, "python -m bench.inference", tmp_path / "b.md").read_text()
    assert "**missed** (2x)" in text
    assert "about 50.0 µs plus 50.0 µs per row here (from batches 1 and 1,000)" in text
