"""The streams-peer benchmark's page section, from figures made up here."""

from __future__ import annotations

import datetime as dt

import pytest

from bench.features_runs import CpuSample, Throughput
from bench.report import Machine, replace_section
from bench.streams_peer import QUIX, STREAMS, PeerBench, section


def _run(kind: str, records: int, seconds: float, cpu_s: float) -> Throughput:
    return Throughput(kind, records, records, 3.0, seconds, CpuSample(cpu_s, cpu_s, None), 2.5)


def test_the_section_states_rates_ratio_and_conditions() -> None:
    bench = PeerBench(dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC), 20_000, 3, 400, 6)
    bench.runs[QUIX] = _run(QUIX, 20_000, 4.0, 1.2)
    bench.runs[STREAMS] = _run(STREAMS, 20_000, 1.0, 0.4)
    assert bench.ratio == pytest.approx(4.0)
    facts = Machine(2, "cpu", 24.0, "os", "3.11", "25", "4.1.1", "3 nodes")
    text = section(bench, facts, "python -m bench.streams_peer --quick")
    assert "**4.0x** the records/s" in text and "3.0x less CPU per record" in text
    assert "| 20,000 | 3.0 s | 1.0 s | 20,000 | 20 | 2.5 |" in text
    assert "| 20,000 | 3.0 s | 4.0 s | 5,000 | 60 | 2.5 |" in text
    assert "`python -m bench.streams_peer --quick`" in text and "2026-01-02 03:04" in text
    # It lands between its own markers, as every benchmark's section does.
    page = replace_section("# Benchmarks\n", "streams-peer", text)
    assert page.count("<!-- bench:streams-peer -->") == 1
