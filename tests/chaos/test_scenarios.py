"""Short runs of every chaos scenario on the test cluster: the verdict, the checks, the
time to resume and the kinds of events each timeline must hold."""

from __future__ import annotations

import pytest

from rtml.chaos import ChaosError, run
from rtml.chaos.timeline import BROKER, CHECK, ISR, LEADER, PRODUCER, REJOINED, STEP
from rtml.clients import admin
from rtml.config import Settings


def _run(name, settings, duplicates_allowed=False, **size):
    events = []
    result = run(name, settings, on_event=events.append, **size)
    assert events == list(result.timeline) or sorted(events, key=lambda e: e.at) == list(
        result.timeline
    ), "every event went to the callback as it happened"
    failed = [c for c in result.checks if not c.passed]
    assert not failed, failed
    assert result.verdict.lost == 0, result.verdict
    assert duplicates_allowed or result.verdict.duplicated == 0, result.verdict
    assert result.verdict.out_of_order == 0
    return result


def test_leader_kill_loses_and_duplicates_nothing(local_cluster, cluster_settings):
    result = _run("leader-kill", cluster_settings, records=30_000, rate=0)
    assert result.passed and result.verdict.acknowledged == 30_000 and result.verdict.failed == 0
    assert result.time_to_resume is not None and 0 < result.time_to_resume < 60
    kinds = {e.kind for e in result.timeline}
    assert {STEP, BROKER, LEADER, ISR, REJOINED, CHECK} <= kinds
    assert any(e.text.startswith("SIGKILL broker") for e in result.timeline)


def test_two_down_blocks_writes_then_delivers_every_one(local_cluster, cluster_settings):
    result = _run("two-down", cluster_settings, records=4_000, rate=1_000)
    assert result.passed and result.verdict.failed == 0
    assert result.verdict.acknowledged >= 4_000
    assert result.time_to_resume is not None
    assert {STEP, BROKER, PRODUCER, REJOINED} <= {e.kind for e in result.timeline}
    assert any(e.text.startswith("acks stalled") for e in result.timeline)


def test_two_down_with_a_short_timeout_reports_errors_and_loses_nothing(
    local_cluster, cluster_settings
):
    # Records the client timed out in flight may be stored anyway, some twice (the client's
    # new producer epoch sends them again): the scenario shows that rather than hiding it,
    # and checks that every such copy comes from the outage.
    result = _run(
        "two-down-timeout", cluster_settings, duplicates_allowed=True, records=4_000, rate=1_000
    )
    assert result.verdict.failed > 0 and result.errors
    assert result.time_to_resume is not None
    assert any(c.name.startswith("every record stored twice") for c in result.checks)
    assert result.passed == (result.verdict.duplicated == 0)


def test_rolling_restart_keeps_every_record_and_the_group_drains(local_cluster, cluster_settings):
    result = _run("rolling-restart", cluster_settings, records=6_000, rate=500)
    assert result.passed and result.verdict.failed == 0
    assert len(result.resumes) == 3 and all(r.seconds is not None for r in result.resumes)
    assert any("lag drained to 0" in c.name and c.passed for c in result.checks)
    assert {STEP, BROKER, LEADER} <= {e.kind for e in result.timeline}


def test_registry_down_keeps_avro_clients_working_on_cached_schemas(
    local_cluster, cluster_settings
):
    result = _run("registry-down", cluster_settings, records=3_000, rate=300)
    assert result.passed and result.verdict.acknowledged >= 3_000
    names = {c.name for c in result.checks}
    assert "registering a new schema fails while the registry is down" in names
    refused = next(c for c in result.checks if c.name.startswith("registering a new schema"))
    assert "No schema registry answers" in refused.detail


def test_an_external_cluster_is_refused_in_one_sentence(cluster_settings):
    external = Settings.from_env({"RTML_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    with pytest.raises(ChaosError, match="refuse to run against the external cluster"):
        run("leader-kill", external)


def _leftovers(settings, name: str) -> list[str]:
    """Topics and consumer groups of scenario `name` still on the cluster."""
    client = admin(settings, timeout=10)
    prefix = f"chaos-{name}-"
    topics = [t for t in client.list_topics(timeout=10).topics if t.startswith(prefix)]
    groups = client.list_consumer_groups(request_timeout=10).result().valid
    return topics + [g.group_id for g in groups if g.group_id.startswith(prefix)]


def test_serve_kill_predicts_every_record_and_counts_what_was_scored_twice(cluster_settings):
    result = _run("serve-kill", cluster_settings, duplicates_allowed=True, records=1_800, rate=300)
    v = result.verdict
    assert result.passed and v.failed == 0
    # Every features record acknowledged has a prediction; none is unknown.
    assert v.acknowledged == v.read == 1_800 and v.lost == 0
    # At-least-once: re-scored batches are counted, and each copy says the same thing.
    assert v.duplicates_allowed and v.duplicated >= 0 and v.differing == 0
    assert any(c.name.startswith("every transaction scored twice") for c in result.checks)
    assert result.time_to_resume is not None and 0 < result.time_to_resume < 180
    assert [r.step for r in result.resumes] == ["SIGKILL the prediction service"]
    assert any(e.text.startswith("SIGKILL the prediction service") for e in result.timeline)
    sentence = result.sentence()
    assert sentence.startswith("Passed: 1,800 features records, 1,800 with a prediction, 0 lost")
    assert f"{v.duplicated:,} scored twice (at-least-once" in sentence
    assert "predictions resumed" in sentence
    assert not _leftovers(cluster_settings, "serve-kill")


def test_serve_kill_exactly_once_shows_every_prediction_once(cluster_settings):
    result = _run("serve-kill-exactly-once", cluster_settings, records=1_800, rate=300)
    v = result.verdict
    assert result.passed and not v.duplicates_allowed
    assert v.acknowledged == v.read == 1_800 and v.lost == 0 and v.duplicated == 0
    assert result.time_to_resume is not None and 0 < result.time_to_resume < 180
    assert "0 scored twice (exactly-once, read_committed" in result.sentence()
    assert not _leftovers(cluster_settings, "serve-kill-exactly-once")
