"""What the control room's Events page shows besides the read model and a trace: the week-4
services' counters and the dead-letter queues, as tables.

The counters come from the status files every stage instance writes (`rtml.stage`), so
they need no broker; the dead-letter queues come from `rtml.ops.dlq`, which this module
only turns into rows and sentences.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rtml.clients import admin
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.observe import no_broker
from rtml.ops.dlq import DlqRecord, DlqSummary, RedriveReport, format_time
from rtml.stage import StageStatus
from rtml.topics import DLQ_STAGES

STAGE_COLUMNS = [
    "stage",
    "instance",
    "group",
    "state",
    "guarantee",
    "in",
    "handled",
    "out",
    "dlq",
    "retries",
    "in == handled + dlq",
]
RECORD_COLUMNS = [
    "record",
    "time",
    "error type",
    "error",
    "attempts",
    "origin",
    "key",
    "value",
]


class EventsError(RtmlError):
    """The cluster does not answer."""


def check_cluster(
    settings: Settings, client: AdminClient | None = None, timeout: float = 3.0
) -> None:
    """Fail with one sentence (and what to do) within about `timeout` s if no broker answers."""
    client = client or admin(settings, timeout)
    try:
        client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise EventsError(no_broker(settings)) from exc


def stage_table(statuses: Sequence[StageStatus]) -> pd.DataFrame:
    """One row per service instance: its counters, and whether every record it read was
    handled or dead-lettered (`in == handled + dlq`), the check that nothing was lost."""
    rows = [
        {
            "stage": s.stage,
            "instance": s.instance,
            "group": s.group,
            "state": "stale" if s.stale and s.state != "stopped" else s.state,
            "guarantee": s.guarantee,
            "in": s.records,
            "handled": s.handled,
            "out": s.outputs,
            "dlq": s.dlq,
            "retries": s.retries,
            "in == handled + dlq": s.records == s.handled + s.dlq,
        }
        for s in statuses
    ]
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)


def dlq_stages(settings: Settings, client: AdminClient | None = None) -> list[str]:
    """The stages whose dead-letter queue can be browsed: the catalogue's, then those of any
    other `<stage>.dlq` topic the cluster holds."""
    client = client or admin(settings, timeout=5)
    try:
        topics = client.list_topics(timeout=5).topics
    except KafkaException as exc:
        raise EventsError(no_broker(settings)) from exc
    extra = sorted(
        name.removesuffix(".dlq")
        for name in topics
        if name.endswith(".dlq") and name.removesuffix(".dlq") not in DLQ_STAGES
    )
    return [*DLQ_STAGES, *extra]


def summary_table(summaries: Sequence[DlqSummary]) -> pd.DataFrame:
    """One row per dead-letter queue: how many records it holds, and their error types."""
    return pd.DataFrame(
        [
            {
                "stage": s.stage,
                "topic": s.topic,
                "records": s.records if s.exists else None,
                "errors": ", ".join(f"{name} {n:,}" for name, n in s.error_types.items())
                if s.exists
                else "topic missing: run `rtml topics apply`",
            }
            for s in summaries
        ],
        columns=["stage", "topic", "records", "errors"],
    ).astype({"records": "Int64"})


def record_label(record: DlqRecord) -> str:
    """How a record is named when picking it: `partition:offset`."""
    return f"{record.partition}:{record.offset}"


def record_table(records: Sequence[DlqRecord]) -> pd.DataFrame:
    """One row per dead-lettered record: where it is, why it failed, where it came from."""
    rows = []
    for r in records:
        o = r.origin
        origin = f"{o.get('topic', '?')} {o.get('partition', '?')}:{o.get('offset', '?')}"
        value = json.dumps(r.value, default=str) if isinstance(r.value, dict) else r.value
        rows.append(
            {
                "record": record_label(r),
                "time": format_time(r.timestamp_ms),
                "error type": o.get("error_type", "?"),
                "error": o.get("error", ""),
                "attempts": o.get("attempts", "?"),
                "origin": origin,
                "key": r.key,
                "value": f"({r.value_format}) {value}",
            }
        )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def redrive_table(report: RedriveReport) -> pd.DataFrame:
    """What a redrive did with each record it looked at."""
    return pd.DataFrame(
        [
            {
                "record": f"{i.partition}:{i.offset}",
                "origin topic": i.origin_topic,
                "action": i.action,
                "why": i.reason,
            }
            for i in report.items
        ],
        columns=["record", "origin topic", "action", "why"],
    )


def redrive_sentence(report: RedriveReport) -> tuple[bool, str]:
    """(ok, one sentence) for a redrive's outcome: what was sent, skipped, or done before."""
    sent = [i for i in report.items if i.action in ("sent", "would send")]
    skipped = [i for i in report.items if i.action == "skipped"]
    before = [i for i in report.items if i.action == "already redriven"]
    parts = []
    if sent:
        where = ", ".join(sorted({i.origin_topic or "?" for i in sent}))
        verb = "Would send" if report.dry_run else "Sent"
        parts.append(
            f"{verb} {len(sent)} record(s) of {report.topic} back to {where}"
            + ("" if report.dry_run else ", once: redriving again sends nothing")
        )
    if before:
        parts.append(
            f"{len(before)} record(s) were redriven before, so not again "
            f"(group rtml-dlq-redrive-{report.stage} remembers)"
        )
    if skipped:
        parts.append(f"{len(skipped)} skipped: {skipped[0].reason}")
    if not parts:
        return True, f"Nothing to redrive in {report.topic}."
    return not skipped, "; ".join(parts) + "."
