"""The system's health as Prometheus text: throughput, lag, DLQ counts, stage counters.

`rtml observe metrics` serves `/metrics` on 127.0.0.1 (default port 9464) for a Prometheus
or any scraper. Every scrape asks the cluster and reads the services' status files at that
moment (a custom collector, so nothing is cached or goes stale between scrapes):

- `rtml_topic_records_total{topic}`: records ever written to each catalogue topic (the sum
  of its end offsets); `rate()` of it is the throughput the Flow page shows;
- `rtml_dlq_records_total{stage}`: records in each stage's dead-letter topic;
- `rtml_consumer_lag{group,topic}`: records each consumer group has not committed yet;
- `rtml_stage_records_total{stage,instance,outcome}`: what each week-4 service instance
  did with its input (handled, dlq) and produced (outputs), and its retries; `in ==
  handled + dlq` can be checked by the scraper too;
- `rtml_stage_up{stage,instance}`: 1 while the instance writes its status, else 0.

The latency histograms stay with `rtml observe latency` (HDR histograms over a window of
predictions), which a scrape every few seconds could not reproduce cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from rtml.config import Settings
from rtml.dlq import dlq_topic
from rtml.observe.lag import LagError, snapshot_all
from rtml.observe.throughput import ThroughputError, end_offsets
from rtml.stage import read_statuses
from rtml.topics import CATALOGUE, DLQ_STAGES

DEFAULT_PORT = 9464
# Prometheus waits 10 s for a scrape by default; a busy cluster may need most of it.
SCRAPE_TIMEOUT_S = 8.0


class RtmlCollector(Collector):
    """Collects the metrics above at each scrape; a cluster that does not answer gives
    `rtml_cluster_up 0` and only the status-file metrics, never an error page."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        """The metrics of this scrape, read from the cluster and the status files now."""
        up = GaugeMetricFamily("rtml_cluster_up", "1 when the cluster answered this scrape")
        try:
            totals = end_offsets(
                self.settings, [t.name for t in CATALOGUE], timeout=SCRAPE_TIMEOUT_S
            )
            lags = snapshot_all(self.settings)
        except (ThroughputError, LagError):
            up.add_metric([], 0)
            yield up
            yield from self._stages()
            return
        up.add_metric([], 1)
        yield up
        records = CounterMetricFamily(
            "rtml_topic_records",
            "Records written to the topic (sum of end offsets)",
            labels=["topic"],
        )
        dlq = CounterMetricFamily(
            "rtml_dlq_records", "Records in the stage's dead-letter topic", labels=["stage"]
        )
        for topic, total in sorted(totals.items()):
            records.add_metric([topic], total)
        for stage in DLQ_STAGES:
            if dlq_topic(stage) in totals:
                dlq.add_metric([stage], totals[dlq_topic(stage)])
        yield records
        yield dlq
        lag = GaugeMetricFamily(
            "rtml_consumer_lag",
            "Records the group has not committed yet",
            labels=["group", "topic"],
        )
        for snap in lags:
            per_topic: dict[str, int] = {}
            for p in snap.partitions:
                per_topic[p.topic] = per_topic.get(p.topic, 0) + p.lag
            for topic, value in sorted(per_topic.items()):
                lag.add_metric([snap.group, topic], value)
        yield lag
        yield from self._stages()

    def _stages(self) -> Iterator[Metric]:
        counts = CounterMetricFamily(
            "rtml_stage_records",
            "What a week-4 service instance did: handled, dlq, outputs, retries",
            labels=["stage", "instance", "outcome"],
        )
        alive = GaugeMetricFamily(
            "rtml_stage_up", "1 while the instance writes its status", labels=["stage", "instance"]
        )
        for s in read_statuses(self.settings):
            labels = [s.stage, str(s.instance)]
            for outcome in ("handled", "dlq", "outputs", "retries"):
                counts.add_metric([*labels, outcome], getattr(s, outcome))
            alive.add_metric(labels, 0 if s.stale else 1)
        yield counts
        yield alive


def registry(settings: Settings) -> CollectorRegistry:
    """A registry holding only rtml's collector (not the Python process's own metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RtmlCollector(settings))
    return reg


def serve(settings: Settings, port: int = DEFAULT_PORT):
    """Serve /metrics on 127.0.0.1:`port` in a background thread; returns (server, thread)."""
    return start_http_server(port, addr="127.0.0.1", registry=registry(settings))
