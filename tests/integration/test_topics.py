"""`rtml topics apply` against the live cluster: creates, is idempotent, reports drift."""

import subprocess
import sys
import uuid

from rtml import topics
from rtml.clients import admin


def _specs():
    suffix = uuid.uuid4().hex[:6]
    return (
        topics.TopicSpec(
            f"t-hist-{suffix}",
            "k",
            "test",
            6,
            3,
            {"min.insync.replicas": "2", "retention.ms": "-1"},
        ),
        topics.TopicSpec(
            f"t-ref-{suffix}",
            "k",
            "test",
            3,
            3,
            {"min.insync.replicas": "2", "cleanup.policy": "compact"},
        ),
    )


def test_apply_creates_then_verifies(cluster_settings):
    specs = _specs()
    first = topics.apply(cluster_settings, specs)
    assert [c.state for c in first] == ["created", "created"]
    second = topics.apply(cluster_settings, specs)
    assert [c.state for c in second] == ["ok", "ok"]
    meta = admin(cluster_settings).list_topics(timeout=10).topics
    assert len(meta[specs[0].name].partitions) == 6
    assert all(len(p.replicas) == 3 for p in meta[specs[1].name].partitions.values())


def test_drift_is_reported_not_accepted(cluster_settings):
    specs = _specs()
    topics.apply(cluster_settings, specs)
    drifted = (
        topics.TopicSpec(
            specs[0].name, "k", "test", 12, 3, {"min.insync.replicas": "2", "retention.ms": "-1"}
        ),
        topics.TopicSpec(
            specs[1].name,
            "k",
            "test",
            3,
            3,
            {"min.insync.replicas": "2", "cleanup.policy": "delete"},
        ),
    )
    checks = topics.apply(cluster_settings, drifted)
    assert [c.state for c in checks] == ["drift", "drift"]
    assert "has 6 partitions, the catalogue says 12" in checks[0].problems
    assert "has cleanup.policy=compact, the catalogue says delete" in checks[1].problems


def test_cli_applies_the_whole_catalogue(cluster_settings):
    out = subprocess.run(
        [sys.executable, "-m", "rtml", "topics", "apply"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(topics.CATALOGUE)} topics match the catalogue." in out.stdout
    meta = admin(cluster_settings).list_topics(timeout=10).topics
    assert {t.name for t in topics.CATALOGUE} <= set(meta)
