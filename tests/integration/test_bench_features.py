"""The feature benchmark on the live test cluster, with a tiny backlog and short live rates.

Not a timed test: it asserts that every consumer processed every record, that every live
transaction got its features, that the figures are consistent and the leftovers are gone,
never how fast anything was.
"""

import pytest

from bench.features import bench_features
from bench.features_page import publish
from bench.features_worker import CONSUMERS, FULL
from bench.report import machine
from rtml.clients import admin
from rtml.features.runner import count_records
from rtml.schemas import registry_client

TRANSACTIONS = 3_000
RATES = (200, 500)
SECONDS = 2.0
PROFILED = 600
# Start-ups and group clean-ups on a busy 2-core machine take most of the time.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def logged():
    return []


@pytest.fixture(scope="module")
def bench(cluster_settings, logged):
    return bench_features(
        cluster_settings,
        TRANSACTIONS,
        rates=RATES,
        seconds=SECONDS,
        warmup=1.0,
        profile_records=PROFILED,
        log=logged.append,
    )


def test_every_consumer_processed_the_whole_backlog(bench):
    # bench_features also checked that each wrote exactly one record per transaction.
    assert [r.consumer for r in bench.runs] == list(CONSUMERS)
    assert bench.history.transactions == TRANSACTIONS
    assert bench.history.labels == TRANSACTIONS  # the simulator labels every transaction
    assert 20 <= bench.history.tx_bytes <= 40  # a Confluent-framed Avro transaction
    for run in bench.runs:
        assert run.backlog == TRANSACTIONS
        assert 0 < run.records < TRANSACTIONS  # timed from the first record out
        assert run.startup_s > 0 and run.seconds > 0 and run.rate > 0
        # CPU is read in clock ticks: a fast consumer on a small backlog may show none.
        assert run.cpu.process_s >= run.cpu.main_s >= 0
        assert run.cpu.main_wait_s is None or run.cpu.main_wait_s >= 0
    assert bench.ratio(FULL, FULL) == pytest.approx(1.0)


def test_every_live_transaction_got_features_and_percentiles_are_ordered(bench):
    assert [p.rate for p in bench.phases] == list(RATES)
    for phase in bench.phases:
        # The token bucket paces the input; a busy machine may send fewer, never more.
        assert 0.3 * phase.rate * SECONDS <= phase.sent <= phase.rate * (SECONDS + 0.5)
        assert phase.freshness.count == phase.sent
        f = phase.freshness
        assert 0 <= f.p50 <= f.p95 <= f.p99 <= f.max
        assert 0 <= phase.out_by_end <= phase.sent and phase.drain_s >= 0
        # The frame (5 B) and at least seven 8-byte doubles; well under a kilobyte.
        assert 60 < phase.feature_bytes < 400


def test_the_features_topic_holds_exactly_what_the_runs_counted(bench, cluster_settings):
    # The slim and the full app each wrote the backlog once, the full one every live
    # transaction (warm-up included), and the profiled instance what it wrote before and
    # while it was profiled.
    live = count_records(cluster_settings, "transactions") - TRANSACTIONS
    assert live >= sum(p.sent for p in bench.phases)
    assert bench.profile is not None and bench.profile.records >= PROFILED
    assert count_records(cluster_settings, "features") == (
        2 * TRANSACTIONS + live + bench.profile.before + bench.profile.records
    )
    assert bench.profile.before >= PROFILED // 5


def test_the_profile_names_the_top_costs(bench):
    profile = bench.profile
    assert profile.total_s > 0 and len(profile.top) == 10
    assert "rtml feature code" in profile.components and "Quix Streams" in profile.components
    assert sum(profile.components.values()) == pytest.approx(profile.total_s)


def test_the_groups_and_bench_topics_are_gone(bench, cluster_settings, logged):
    assert not [line for line in logged if line.startswith("Could not")]
    client = admin(cluster_settings, timeout=10)
    topics = client.list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith("bench.features.") or "bench-features-" in t]
    groups = client.list_consumer_groups(request_timeout=10).result().valid
    assert not [g.group_id for g in groups if g.group_id.startswith("bench-features-")]
    subjects = registry_client(cluster_settings).get_subjects()
    assert not [s for s in subjects if s.startswith("bench.features.")]


def test_the_section_and_chart_are_written_where_asked(bench, cluster_settings, tmp_path):
    page = publish(bench, machine(cluster_settings), "python -m bench.features", tmp_path / "b.md")
    text = page.read_text()
    assert text.count("<!-- bench:features -->") == 1 and "### Freshness at fixed rates" in text
    assert "| 500 |" in text and "not judged" in text  # 10,000 tx/s was not among the rates
    assert (tmp_path / "img" / "bench-features.png").read_bytes()[:4] == b"\x89PNG"
