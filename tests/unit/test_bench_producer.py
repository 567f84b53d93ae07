"""The producer benchmark's pure parts: the tool's summary, the numbers, the page, the chart."""

import datetime as dt

import pytest

from bench.cluster import throwaway_settings
from bench.kafka_tool import parse_summary, producer_properties
from bench.producer import main
from bench.producer_page import plot, render, targets
from bench.producer_runs import BATCHED, DEFAULTS, KAFKA, PYTHON, ProducerBench, Run
from bench.report import BenchError, Machine
from rtml.config import Settings

# Kafka 4.1's ProducerPerformance, as printed on this machine.
SUMMARY = (
    "500000 records sent, 174642.0 records/sec (4.33 MB/sec), 131.16 ms avg latency, "
    "714.00 ms max latency, 96 ms 50th, 379 ms 95th, 443 ms 99th, 445 ms 99.9th."
)
PROGRESS = (
    "612345 records sent, 122469.0 records/sec (2.93 MB/sec), 45.1 ms avg latency, "
    "300.0 ms max latency."
)
FACTS = Machine(2, "AMD EPYC", 24, "Debian 12", "3.11.7", "25.0.2", "4.1.1", "3 local nodes")


def _bench(py_batched: float, kafka_batched: float) -> ProducerBench:
    bench = ProducerBench(1_000_000, 50_000, 6, 3, dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC))
    for client, setup, rate in (
        (PYTHON, BATCHED, py_batched),
        (KAFKA, BATCHED, kafka_batched),
        (PYTHON, DEFAULTS, 50_000),
        (KAFKA, DEFAULTS, 100_000),
    ):
        bench.runs.append(
            Run(
                client,
                setup.name,
                1_000_000,
                26_000_000,
                1_000_000 / rate,
                20,
                90,
                32_000_000,
                load=1.5 if client == PYTHON else None,
                cpu_s=6.0 if client == PYTHON else 2.0,
                loop_cpu_s=5.0 if client == PYTHON else None,
                kafka_wait_s=0.5 if client == PYTHON else None,
            )
        )
    return bench


def test_the_summary_line_is_parsed_and_progress_lines_are_not_taken_for_it():
    s = parse_summary(f"WARNING: something\n{PROGRESS}\n{SUMMARY}\n")
    assert s.records == 500_000 and s.rate == 174642.0 and s.mib_s == 4.33
    assert (s.p50_ms, s.p95_ms, s.p99_ms, s.p999_ms) == (96, 379, 443, 445)
    assert s.avg_ms == 131.16 and s.max_ms == 714.0
    steady = parse_summary(SUMMARY.replace("records sent", "steady state records sent"))
    assert steady.records == 500_000
    with pytest.raises(BenchError, match="no summary line"):
        parse_summary(f"{PROGRESS}\nException in thread main\n")


def test_the_java_producer_gets_acks_all_idempotence_and_the_setup():
    props = producer_properties(Settings.from_env({}), BATCHED.kafka)
    assert props["acks"] == "all" and props["enable.idempotence"] == "true"
    assert props["linger.ms"] == "20" and props["batch.size"] == "262144"
    assert props["compression.type"] == "lz4" and "partitioner" not in props
    secure = producer_properties(
        Settings.from_env(
            {
                "RTML_BOOTSTRAP_SERVERS": "broker:9092",
                "RTML_SECURITY_PROTOCOL": "SASL_SSL",
                "RTML_SASL_MECHANISM": "PLAIN",
                "RTML_SASL_USERNAME": "key",
                "RTML_SASL_PASSWORD": "secret",
            }
        ),
        DEFAULTS.kafka,
    )
    assert secure["bootstrap.servers"] == "broker:9092"
    assert (
        secure["security.protocol"] == "SASL_SSL"
        and 'password="secret"' in secure["sasl.jaas.config"]
    )
    assert secure["linger.ms"] == "5" and secure["compression.type"] == "none"


def test_a_run_derives_rates_from_records_bytes_and_seconds():
    run = Run(PYTHON, "batched", 200_000, 5_200_000, 2.0, 10, 50)
    assert run.record_size == 26 and run.msg_per_s == 100_000 and run.mb_per_s == 2.6


def test_targets_say_met_or_missed_and_by_how_much():
    met = "\n".join(targets(_bench(120_000, 200_000)))
    assert "msg/s from Python: **met**: 120,000" in met and "tool: **met**: 0.60" in met
    missed = "\n".join(targets(_bench(80_000, 200_000)))
    assert "**missed** by 20,000 msg/s (80,000 msg/s, 20% short)" in missed
    assert "**missed** by 0.10 (0.40)" in missed
    # 5 s of the sending thread's CPU for 1,000,000 records in 12.5 s of wall time
    assert "used 5.0 µs of CPU per record" in missed and "at most about 200,000 msg/s" in missed
    assert "Of its 12.5 s it ran 5.0 s and waited 0.5 s for Kafka" in missed
    assert "the other 7.0 s it was ready to run but waited for a CPU (load 1.5 on" in missed


def test_the_section_has_the_table_the_ratios_and_the_chart():
    bench = _bench(120_000, 200_000)
    text = render(bench, FACTS, "python -m bench.producer")
    assert "**Machine**: 2 cores (AMD EPYC)" in text
    assert text.count("| Python: confluent-kafka + fastavro |") == 2
    assert "| 1,000,000 | 26.0 | 32.0 | 8.33 | 120,000 | 3.12 | 20 / 90 | 6.0 | 1.5 |" in text
    assert "| 1,000,000 | 26.0 | 32.0 | 5.00 | 200,000 | 5.20 | 20 / 90 | 2.0 | n/a |" in text
    assert "CPU per record, Python / Kafka's tool: 3.0x" in text
    assert "msg/s, Python / Kafka's tool, batched: **0.60**; CPU per record" in text
    assert "msg/s, Python / Kafka's tool, defaults: **0.50**" in text
    assert "msg/s, batched / defaults, Python: confluent-kafka + fastavro: **2.40x**" in text
    assert "![Messages per second of each client and setting](img/bench-producer.png)" in text
    assert "2026-01-02 at 03:04 UTC" in text


def test_the_chart_is_a_png(tmp_path):
    path = plot(_bench(120_000, 200_000), tmp_path / "img" / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_a_throwaway_cluster_ignores_the_external_one_and_uses_low_free_ports():
    settings = throwaway_settings(
        {"RTML_BOOTSTRAP_SERVERS": "broker:9092", "RTML_SCHEMA_REGISTRY_URL": "http://r:8081"}
    )
    assert settings.local and settings.schema_registry_url is None
    assert settings.cluster_name.startswith("bench-") and settings.nodes == 3
    assert settings.kafka_port >= 20000 and settings.connect_port < 32768


def test_the_command_line_checks_its_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "--external" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["--records", "0"])
    assert exit_.value.code == 2 and "not a positive number" in capsys.readouterr().err
