"""The Prometheus endpoint on the live cluster: what a scraper reads, and that it is true."""

from __future__ import annotations

import os

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rtml.cluster.ports import free_base_port
from rtml.observe.metrics import serve
from rtml.observe.throughput import end_offsets
from rtml.poll import until
from rtml.stage import StageStatus, status_file, write_status
from rtml.topics import apply


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert reply.status_code == 200
    return _samples(reply.text)


def _scrape_with(port: int, keys: list) -> dict | None:
    """A scrape that holds every key, or None."""
    got = _scrape(port)
    return got if all(k in got for k in keys) else None


def test_metrics_report_topics_dlqs_and_stage_counters(cluster_settings) -> None:
    settings = cluster_settings
    apply(settings)
    status = StageStatus("metricstest", "g", 3, os.getpid(), "exactly-once", "running")
    status.records, status.handled, status.dlq, status.outputs = 12, 10, 2, 9
    write_status(settings, status)
    port = free_base_port(1)
    server, thread = serve(settings, port)
    key = ("rtml_topic_records_total", (("topic", "transactions"),))
    dlq = ("rtml_dlq_records_total", (("stage", "cards"),))
    try:
        # Topics created a moment ago may not have a leader yet; a scraper simply asks again.
        got = until(lambda: _scrape_with(port, [key, dlq]), 60, "both topics in a scrape", 1)
    finally:
        server.shutdown()
        thread.join(10)
        status_file(settings, "metricstest", 3, "g").unlink()
    assert got[("rtml_cluster_up", ())] == 1
    # The records per topic are the cluster's end offsets, read at the scrape.
    truth = end_offsets(settings, ["transactions", "cards.dlq"], timeout=10)
    assert got[key] <= truth["transactions"]
    assert got[dlq] <= truth["cards.dlq"]
    labels = (("instance", "3"), ("stage", "metricstest"))
    outcome = {
        o: got[("rtml_stage_records_total", tuple(sorted((*labels, ("outcome", o)))))]
        for o in ("handled", "dlq", "outputs")
    }
    assert outcome == {"handled": 10, "dlq": 2, "outputs": 9}
    assert got[("rtml_stage_up", labels)] == 1
