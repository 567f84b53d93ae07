"""The hop benchmark's pure parts: the tool's output, percentiles, the page, the command line."""

from __future__ import annotations

import datetime as dt

import pytest

from bench.hop import (
    IDLE,
    KAFKA,
    LOADED,
    PYTHON,
    Hop,
    HopBench,
    main,
    parse_tool_output,
    publish,
    render,
    summarize,
    tool_percentile,
)
from bench.report import BenchError, Machine

FACTS = Machine(2, "AMD EPYC", 24, "Debian 12", "3.11.7", "25.0.2", "4.1.1", "3 local nodes")

# What Kafka 4.1.1's EndToEndLatency printed for 1,500 records of 200 B, acks=all, on a
# throw-away 3-node cluster: a progress line every 1,000 records (the first one includes
# connecting), then the summary.
TOOL_OUTPUT = """\
0\t256.081501
1000\t3.775874
Avg latency: 9.4731 ms
Percentiles: 50th = 6, 99th = 41, 99.9th = 73
"""


def test_the_tools_summary_is_parsed_from_its_real_output() -> None:
    assert parse_tool_output(TOOL_OUTPUT) == (9.4731, 6, 41, 73)
    # A progress value is never mistaken for the summary.
    assert parse_tool_output("WARN something\n" + TOOL_OUTPUT)[0] == pytest.approx(9.4731)


def test_output_without_a_summary_fails_with_its_tail() -> None:
    with pytest.raises(BenchError, match=r"(?s)printed no summary.*poll\(\) timed out"):
        parse_tool_output("0\t12.5\npoll() timed out before finding a result\n")
    with pytest.raises(BenchError, match="no summary"):
        parse_tool_output("Avg latency: 9.4731 ms\n")  # the percentiles line is missing


def test_percentiles_follow_the_tools_index_rule() -> None:
    values = [float(v) for v in range(1, 1001)]  # 1..1000 ms
    assert tool_percentile(values, 0.5) == 501  # index int(1000 * 0.5) = 500
    assert tool_percentile(values, 0.99) == 991
    assert tool_percentile(values, 0.999) == 1000
    assert tool_percentile([3.0], 0.999) == 3.0
    with pytest.raises(BenchError, match="No round trip"):
        tool_percentile([], 0.5)


def test_a_run_is_summarized_from_unsorted_latencies() -> None:
    hop = summarize(PYTHON, IDLE, [5.0, 1.0, 2.0, 4.0, 3.0] * 20)
    assert (hop.messages, hop.avg_ms, hop.p50_ms, hop.p99_ms, hop.max_ms) == (100, 3, 3, 5, 5)
    assert hop.client == PYTHON and hop.condition == IDLE and hop.load_rate is None


def _bench(python_p50: float = 2.4, python_p99: float = 9.5) -> HopBench:
    bench = HopBench(dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC), 10_000, 3, 2, 5_000)
    bench.hops = [
        Hop(KAFKA, IDLE, 10_000, 2.81, 2, 7, 30, None),
        Hop(PYTHON, IDLE, 10_000, 2.2, 1.9, 6.4, 25.1, 31.7),
        Hop(KAFKA, LOADED, 10_000, 4.1, 3, 14, 60, None, 4_987.2),
        Hop(PYTHON, LOADED, 10_000, 3.0, python_p50, python_p99, 40.2, 75.3, 4_987.2),
    ]
    return bench


def test_the_section_has_the_conditions_the_table_and_the_budget() -> None:
    text = render(_bench(), FACTS, "python -m bench.hop", load=1.2)
    assert "**Machine**: 2 cores (AMD EPYC)" in text and "2026-01-02 at 03:04 UTC" in text
    assert "`python -m bench.hop`" in text and "load average was 1.2 on 2 cores" in text
    assert "shared with other work" not in text
    assert "10,000 records of 200 B" in text and "(RF 3, min.insync.replicas 2)" in text
    assert "writes 5,000 records/s" in text and "4,987 records/s were written meanwhile" in text
    kafka_idle = (
        "| Kafka's EndToEndLatency (Java) | idle | 10,000 | 2.81 | 2 | 7 | 30 | not printed |"
    )
    python_loaded = (
        "| Python (confluent-kafka) | under load | 10,000 | 3.00 | 2.4 | 9.5 | 40.2 | 75.3 |"
    )
    assert kafka_idle in text and python_loaded in text
    assert "p50 1.9 ms against the tool's 2 ms idle and 2.4 ms against the tool's 3 ms" in text
    assert "costs no more than one from Kafka's own Java clients" in text
    assert "Kafka's tool measured p50 2 ms and p99 7 ms here" in text
    assert "about 7 ms at p50 and up to 28 ms if every hop hit its p99" in text
    assert "(3 x 2.4 and 3 x 9.5 ms): 28% of the budget" in text


def test_a_slow_python_client_and_a_blown_budget_are_said_plainly() -> None:
    text = render(_bench(python_p50=6.5, python_p99=48.0), FACTS, "python -m bench.hop", load=5.5)
    assert "load average was 5.5 on 2 cores at the start: the machine was shared" in text
    overloaded = render(_bench(), FACTS, "python -m bench.hop", load=28.0)
    assert "was overloaded by other work, so every figure here, medians included" in overloaded
    assert "the Python client adds up to 3.5 ms per hop at p50" in text
    assert "up to 144 ms if every hop hit its p99" in text
    assert "more than the whole 100 ms budget" in text


def test_the_section_is_written_between_its_markers(tmp_path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n<!-- bench:producer -->\nkept\n<!-- /bench:producer -->\n")
    publish(_bench(), FACTS, "python -m bench.hop --quick", page, 1.0)
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- bench:producer -->\nkept\n")
    assert text.count("<!-- bench:hop -->") == 1 and text.rstrip().endswith("<!-- /bench:hop -->")
    assert "## The hop floor" in text


def test_the_command_line_offers_quick_external_and_output(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "--quick" in out and "--external" in out and "--output" in out
    with pytest.raises(SystemExit) as exit_:
        main(["--messages", "5"])
    assert exit_.value.code == 2
