"""The topic catalogue is consistent with the schemas and with its generated docs."""

from pathlib import Path

from rtml import topics
from rtml.schemas import SCHEMAS, load_schema

ROOT = Path(__file__).resolve().parents[2]


def test_docs_page_is_generated_from_the_catalogue():
    assert (ROOT / "docs" / "topics.md").read_text() == topics.docs_page(), (
        "docs/topics.md is stale: run `rtml topics docs`"
    )


def test_every_schema_belongs_to_a_catalogue_topic_and_loads():
    names = {t.name for t in topics.CATALOGUE}
    for topic, schema in SCHEMAS.items():
        assert topic in names
        assert load_schema(schema).startswith("{")


def test_durability_and_retention_rules():
    for t in topics.CATALOGUE:
        assert t.replication_factor == 3 and t.configs["min.insync.replicas"] == "2", t.name
        if t.compacted:
            assert "retention.ms" not in t.configs, t.name
    history = {"transactions", "labels", "features", "predictions", "card-events"}
    assert {t.name for t in topics.CATALOGUE if t.configs.get("retention.ms") == "-1"} >= history


def test_small_clusters_get_a_feasible_replication_factor():
    t = topics.spec("transactions").for_cluster(1)
    assert t.replication_factor == 1 and t.configs["min.insync.replicas"] == "1"
    assert topics.spec("transactions").for_cluster(None).replication_factor == 3


def test_unknown_topic_names_the_catalogue():
    try:
        topics.spec("transaction")
    except topics.TopicError as exc:
        assert "Unknown topic 'transaction'" in str(exc) and "transactions" in str(exc)
    else:
        raise AssertionError("expected TopicError")
