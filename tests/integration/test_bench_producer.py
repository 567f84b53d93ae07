"""The producer benchmark on the live test cluster, with few records: it runs, numbers add up.

Not a timed test: it asserts that both clients delivered every record and that the figures
are consistent, never how fast anything was.
"""

import pytest

from bench.producer import bench_producer
from bench.producer_page import publish
from bench.producer_runs import CLIENTS, KAFKA, PYTHON, SETUPS
from bench.report import machine
from rtml.clients import admin
from rtml.schemas import registry_client

RECORDS = 20_000


@pytest.fixture(scope="module")
def logged():
    return []


@pytest.fixture(scope="module")
def bench(cluster_settings, logged):
    return bench_producer(cluster_settings, RECORDS, warmup=1_000, log=logged.append)


def test_both_clients_delivered_every_record_with_each_setup(bench):
    assert {(r.client, r.setup) for r in bench.runs} == {
        (c, s.name) for c in CLIENTS for s in SETUPS
    }
    for run in bench.runs:
        # bench_producer also checked that each run grew its topic by exactly this many.
        assert run.records == RECORDS, run
        assert run.seconds > 0 and run.msg_per_s > 0 and run.p99_ms >= run.p50_ms >= 0
        assert run.load is not None and run.load >= 0
        assert run.cpu_s > 0
        if run.client == PYTHON:
            assert 0 < run.loop_cpu_s <= run.cpu_s
            assert 0 < run.kafka_wait_s < run.seconds  # at least the final flush


def test_sizes_and_rates_are_consistent(bench, cluster_settings, logged):
    for setup in SETUPS:
        py, kafka = bench.run(PYTHON, setup.name), bench.run(KAFKA, setup.name)
        assert 20 <= py.record_size <= 40  # a Confluent-framed Avro transaction
        assert kafka.record_size == round(py.record_size)  # the tool sent the same size
        assert bench.ratio(setup.name) == pytest.approx(py.msg_per_s / kafka.msg_per_s)
        for run in (py, kafka):
            assert run.mb_per_s == pytest.approx(run.msg_per_s * run.record_size / 1e6)
            if cluster_settings.local:
                # One replica's log grew by at least the payloads (lz4 can shrink them a little).
                assert run.stored_bytes / run.records > 0.5 * run.record_size
        # The tool's own MiB/s, printed with two decimals, agrees with our MB/s.
        assert kafka.tool_mib_s * 2**20 / 1e6 == pytest.approx(kafka.mb_per_s, rel=0.03, abs=0.01)
    assert sum("records of" in line for line in logged) == len(bench.runs)  # a line per run


def test_the_bench_topics_and_subject_are_gone(bench, cluster_settings, logged):
    assert not [line for line in logged if line.startswith("Could not delete")]
    topics = admin(cluster_settings).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith("bench.producer.")]
    subjects = registry_client(cluster_settings).get_subjects()
    assert not [s for s in subjects if s.startswith("bench.producer.")]


def test_the_section_and_chart_are_written_where_asked(bench, cluster_settings, tmp_path):
    page = publish(bench, machine(cluster_settings), "python -m bench.producer", tmp_path / "b.md")
    text = page.read_text()
    assert text.count("<!-- bench:producer -->") == 1 and f"| {RECORDS:,} |" in text
    assert (tmp_path / "img" / "bench-producer.png").read_bytes()[:4] == b"\x89PNG"
