"""The pipeline benchmark's pure parts: phase verdicts, the page, the targets and the chart."""

import datetime as dt

import pytest

from bench.pipeline import Phase, PipelineBench, Usage, _parser
from bench.pipeline_page import plot, render, targets
from bench.report import Machine
from rtml.observe.latency import Summary

FACTS = Machine(2, "AMD EPYC", 24, "Debian 12", "3.11.7", "25.0.2", "4.1.1", "3 local nodes")


def _latency(p99: float) -> dict[str, Summary]:
    return {
        m: Summary(m, 100, p99 / 3, p99 / 1.5, p99, p99 * 2, 0, 0)
        for m in ("freshness", "event_to_prediction", "scoring")
    }


def _phase(rate: float, out_rate: float, p99: float, *, early: bool = False) -> Phase:
    seconds = 30.0
    usage = [Usage("feature app", seconds * 0.5, 600.0), Usage("broker 1", seconds, 900.0)]
    return Phase(
        rate, 30.0, round(rate * seconds), seconds, round(out_rate * seconds), 0.0, early,
        _latency(p99), usage, 3.0,
    )  # fmt: skip


def _bench(*phases: Phase, skipped: tuple[float, ...] = ()) -> PipelineBench:
    started = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
    return PipelineBench(started, 5000, 10000, "v0001", 30.0, list(phases), list(skipped))


def test_a_phase_keeps_up_only_if_it_was_not_cut_short_and_little_is_left():
    assert _phase(100, 100, 40).kept_up
    assert not _phase(1000, 500, 40).kept_up  # 15 s of input left at the end
    assert not _phase(1000, 1000, 40, early=True).kept_up
    assert _phase(100, 100, 40).rss_total_mib == 1500.0


def test_targets_say_met_missed_and_not_run_with_the_figures():
    bench = _bench(
        _phase(100, 100, 60),
        _phase(1000, 1000, 250),
        _phase(5000, 900, 30_000, early=True),
        skipped=(10_000, 25_000),
    )
    lines = "\n".join(targets(bench))
    assert "10,000 tx/s sustained" in lines and "not run (it fell behind at a lower rate)" in lines
    assert "highest rate here with every prediction within 100 ms at p99: **100 tx/s**" in lines
    bench = _bench(_phase(10_000, 10_000, 80), _phase(25_000, 25_000, 70))
    lines = "\n".join(targets(bench))
    assert "p99 80 ms: **met**" in lines
    assert "p99 70 ms: **missed** by 20 ms" in lines
    assert "1.5 GiB: **met**" in lines


def test_the_page_has_a_row_per_phase_the_skipped_rates_and_the_chart(tmp_path):
    bench = _bench(_phase(100, 100, 60), _phase(1000, 600, 9000, early=True), skipped=(5000,))
    text = render(bench, FACTS, "python -m bench.pipeline --quick")
    assert text.startswith("## The whole pipeline")
    assert "| 100 | 30 | 100 | 100 | yes |" in text
    assert "no, stopped early" in text
    assert "| 5,000 | not run" in text
    assert "| feature app | 0.50 / 600 | 0.50 / 600 |" in text
    assert "python -m bench.pipeline --quick" in text and FACTS.cpu in text
    path = plot(bench, tmp_path / "chart.png")
    assert path.stat().st_size > 10_000


def test_the_command_line_checks_rates():
    args = _parser().parse_args(["--rates", "100,2_000", "--quick"])
    assert args.rates == (100.0, 2000.0) and args.quick
    with pytest.raises(SystemExit):
        _parser().parse_args(["--rates", "0"])
