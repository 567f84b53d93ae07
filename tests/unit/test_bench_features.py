"""The feature benchmark's pure parts: percentiles, verdicts, the hand loop's windows, the
profile summary, the page and the chart, the command line."""

import cProfile
import datetime as dt
import os

import numpy as np
import pytest

from bench.features import FeatureBench, History, _rates, history, main
from bench.features_fresh import Percentiles, Phase, kept_up, percentiles
from bench.features_loop import CustomerHistory
from bench.features_page import plot, render, targets
from bench.features_profile import OTHER, component, summarize
from bench.features_runs import CpuSample, Throughput, child_environment
from bench.features_worker import FULL, HAND, PASSTHROUGH, SLIM
from bench.report import BenchError, Machine
from rtml.config import Settings
from rtml.features.batch import batch_features
from rtml.simulate import SimulationParams, simulate

FACTS = Machine(2, "AMD EPYC", 24, "Debian 12", "3.11.7", "25.0.2", "4.1.1", "3 local nodes")


def test_percentiles_are_observed_values_in_order():
    values = list(range(1, 101))  # 1..100 ms
    p = percentiles(values)
    assert (p.count, p.p50, p.p95, p.p99, p.max) == (100, 50, 95, 99, 100)
    skewed = percentiles([5.0] * 990 + [400.0] * 10)
    assert skewed.p50 == skewed.p95 == 5.0 and skewed.p99 == 5.0 and skewed.max == 400.0
    rng = np.random.default_rng(1)
    p = percentiles(rng.lognormal(2, 1, 10_000))
    assert p.p50 <= p.p95 <= p.p99 <= p.max
    with pytest.raises(BenchError, match="nothing was measured"):
        percentiles([])


def test_kept_up_allows_one_second_of_input_behind():
    assert kept_up(0, 10_000) and kept_up(10_000, 10_000)
    assert not kept_up(10_001, 10_000)
    assert kept_up(1, 0.5)  # a slow rate still allows one record in flight


def _phase(rate: float, sent_rate: float, out_rate: float, p99: float) -> Phase:
    seconds = 60.0
    sent = round(sent_rate * seconds)
    return Phase(
        rate,
        sent,
        sent,
        seconds,
        round(out_rate * seconds),
        3.0,
        Percentiles(sent, p99 / 4, p99 / 2, p99, p99 * 3),
        170.0,
        1.5,
    )


def _bench(phases: list[Phase]) -> FeatureBench:
    bench = FeatureBench(
        dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC),
        History(200_000, 200_000, 5_000, 10_000, 21, 26.3),
        6,
        3,
        60.0,
        10.0,
        phases=phases,
    )
    for kind, rate, main_us in (
        (PASSTHROUGH, 40_000, 20),
        (HAND, 20_000, 45),
        (SLIM, 5_000, 180),
        (FULL, 2_500, 350),
    ):
        records = 190_000
        seconds = records / rate
        cpu = CpuSample(records * main_us * 1.5e-6, records * main_us * 1e-6, seconds / 4)
        bench.runs.append(Throughput(kind, 200_000, records, 4.0, seconds, cpu, 2.0))
    return bench


def test_a_phase_reports_rates_and_what_was_left_behind():
    phase = _phase(10_000, 9_900, 6_000, 800)
    assert phase.input_rate == pytest.approx(9_900)
    assert phase.output_rate == pytest.approx(6_000)
    assert phase.lag_end == 594_000 - 360_000 and not phase.kept_up
    assert _phase(1_000, 1_000, 1_000, 20).kept_up


def test_targets_say_met_missed_or_not_shown_and_by_how_much():
    met = "\n".join(targets(_bench([_phase(10_000, 10_000, 9_990, 40)])))
    assert "keeps up: **met**: 9,990 features/s for 10,000 tx/s" in met
    assert "at most 50 ms: **met**: 40 ms" in met
    missed = "\n".join(targets(_bench([_phase(10_000, 9_900, 6_000, 800)])))
    assert "keeps up: **missed**: 6,000 features/s for 9,900 tx/s in" in missed
    assert "234,000 transactions (23.6 s of input) behind at the end, 39% short" in missed
    assert "**missed** by 750 ms (800 ms, 16.0x the target)" in missed
    short = "\n".join(targets(_bench([_phase(10_000, 7_000, 7_000, 30)])))
    assert "**not shown**: the generator sent only 7,000 tx/s (30% short)" in short
    absent = "\n".join(targets(_bench([_phase(1_000, 1_000, 1_000, 20)])))
    assert "not judged" in absent


def test_the_section_has_both_tables_the_ratios_and_the_limits():
    bench = _bench([_phase(r, r, r, 10 * i + 10) for i, r in enumerate((1_000, 5_000, 10_000))])
    text = render(bench, FACTS, "python -m bench.features")
    assert "**Machine**: 2 cores (AMD EPYC)" in text and "2026-01-02 at 03:04 UTC" in text
    assert "200,000 transactions (Avro values of 26.3 B on average)" in text
    # passthrough: 190,000 records at 40,000/s, 20 µs main thread, 30 µs all threads
    assert "| 40,000 | 1.00 | 4.0 | 4.8 | 30 | 20 | 1.2 | 2.0 |" in text
    assert "| 2,500 | 0.06 | 4.0 | 76.0 | 525 | 350 | 19.0 | 2.0 |" in text
    assert "full feature app / Quix passthrough: **0.06**" in text
    assert "full feature app / hand-written loop: **0.12**" in text
    assert "| 10,000 | 60 | 10,000 | 10,000 | 0 | 3.0 | 8 | 15 | 30 | 90 | yes | 1.5 |" in text
    assert "fell behind" not in text
    assert "main thread used 350 µs of CPU per record" in text
    assert "at most about 2,857 records/s" in text and "3.5x less than it needs" in text
    assert "![Records per second of each consumer" in text and "img/bench-features.png" in text


def test_a_phase_that_fell_behind_is_marked_and_explained():
    bench = _bench([_phase(1_000, 1_000, 1_000, 20), _phase(5_000, 5_000, 2_000, 9_000)])
    text = render(bench, FACTS, "python -m bench.features")
    assert "| 5,000 | 60 | 5,000 | 2,000 | 180,000 | 3.0 |" in text
    assert "| no | 1.5 |" in text and "| yes | 1.5 |" in text
    assert "Where the app fell behind" in text and "runs for 10 s only" in text


def test_the_chart_is_a_png(tmp_path):
    bench = _bench([_phase(1_000, 1_000, 1_000, 20), _phase(10_000, 9_000, 5_000, 900)])
    path = plot(bench, tmp_path / "img" / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_the_hand_loop_computes_the_batch_customer_windows():
    sim = simulate(SimulationParams(n_customers=50, n_terminals=100, n_days=40, seed=3))
    txs = sim.transactions.sort_values(["event_time_ms", "transaction_id"], kind="stable")
    loop = CustomerHistory()
    rows = {}
    for tx in txs.itertuples():
        out = loop.add(
            {
                "transaction_id": tx.transaction_id,
                "tx_datetime": tx.event_time_ms,
                "customer_id": tx.customer_id,
                "terminal_id": tx.terminal_id,
                "tx_amount": tx.tx_amount,
            }
        )
        rows[tx.transaction_id] = out
    batch = batch_features(sim.transactions, sim.labels)
    columns = ["is_weekend", "is_night"] + [
        f"customer_{w}_{d}d" for d in (1, 7, 30) for w in ("nb_tx", "avg_amount")
    ]
    assert len(rows) == len(batch) > 1000
    for column in columns:
        mine = np.array([rows[i][column] for i in batch.index], dtype=float)
        np.testing.assert_allclose(mine, batch[column].to_numpy(dtype=float), err_msg=column)
    # Older than 30 days is gone from memory.
    times, _ = loop.customers[int(txs["customer_id"].iloc[-1])]
    assert times[-1] - times[0] <= 30 * 86_400_000


def test_the_history_is_cut_to_the_backlog_with_its_labels():
    sim = history(3_000)
    assert len(sim.transactions) == 3_000
    assert set(sim.labels["transaction_id"]) == set(sim.transactions["transaction_id"])


def _busy(n: int) -> float:
    return sum(i * i for i in range(n))


def test_a_profile_is_summarized_by_function_and_part(tmp_path):
    profile = cProfile.Profile()
    profile.runcall(lambda: [_busy(20_000) for _ in range(50)])
    path = tmp_path / "p.prof"
    profile.dump_stats(path)
    summary = summarize(path, records=50, seconds=1.0, top=5)
    assert len(summary.top) == 5 and summary.total_s > 0
    assert summary.top[0].seconds >= summary.top[-1].seconds
    assert sum(summary.components.values()) == pytest.approx(summary.total_s)
    assert any("_busy" in c.name for c in summary.top)
    # Names are relative: no absolute path of this machine reaches the page.
    assert not any(c.name.startswith("/") or os.sep + "tmp" in c.name for c in summary.top)


def test_profiled_functions_are_put_in_their_part_of_the_stack():
    site = "/x/site-packages/"
    assert component("~", "<method 'poll' of 'cimpl.Consumer' objects>").startswith("confluent")
    assert component("~", "<method 'get' of 'Rdict' objects>").startswith("RocksDB")
    assert component(site + "quixstreams/app.py", "run") == "Quix Streams"
    assert component(site + "fastavro/_read_py.py", "read_data") == "Avro (fastavro)"
    assert component("/w/rtml/features/app.py", "_parse") == "rtml feature code"
    assert component("/usr/lib/python3.11/json/decoder.py", "decode").startswith("JSON")
    assert component("/usr/lib/python3.11/bisect.py", "x") == OTHER


def test_the_children_get_the_throwaway_cluster_and_the_environment_comes_back():
    settings = Settings.from_env({"RTML_CLUSTER_NAME": "bench-abc", "RTML_KAFKA_PORT": "21000"})
    before = dict(os.environ)
    os.environ["RTML_BOOTSTRAP_SERVERS"] = "elsewhere:9092"
    try:
        with child_environment(settings):
            inside = Settings.from_env()
            assert inside.local and inside.cluster_name == "bench-abc"
            assert inside.kafka_port == 21000 and "PYTHONPATH" in os.environ
        assert os.environ["RTML_BOOTSTRAP_SERVERS"] == "elsewhere:9092"
    finally:
        os.environ.clear()
        os.environ.update(before)


def test_rates_are_parsed_and_checked():
    assert _rates("1000,5_000, 10000") == (1000.0, 5000.0, 10000.0)
    with pytest.raises(Exception, match="comma-separated"):
        _rates("fast")
    with pytest.raises(Exception, match="above 0"):
        _rates("1000,0")


def test_the_command_line_checks_its_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--external" in out and "--quick" in out
    with pytest.raises(SystemExit) as exit_:
        main(["--rates", "0"])
    assert exit_.value.code == 2 and "above 0" in capsys.readouterr().err
