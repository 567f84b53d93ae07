"""Events page: the CQRS read model, the week-4 services' counters, one transaction traced
across the services, and the dead-letter queues with redrive."""

import time

import pandas as pd
import streamlit as st
from resources import admin_client, settings

from rtml.cards.projection import default_db_path
from rtml.cards.readmodel import ReadModel
from rtml.config import project_root
from rtml.errors import RtmlError
from rtml.observe.events import (
    check_cluster,
    dlq_stages,
    record_label,
    record_table,
    redrive_sentence,
    redrive_table,
    stage_table,
    summary_table,
)
from rtml.observe.trace import (
    Tracer,
    hop_table,
    missing,
    parse_transaction_id,
    recent_transactions,
)
from rtml.ops.dlq import records, redrive, summaries
from rtml.stage import read_statuses

START = "make lab        # or: rtml cluster up && rtml services up"
PROJECTION = "rtml services up        # starts the card projection (alone: rtml cards projections)"
PROBE_S = 2.0  # sections within this long of a failed probe wait instead of probing again
RECENT = 10

st.title("Events")
st.caption(
    "What to notice (week 4, notebook week4_production_patterns): the read model is the "
    "query side of CQRS, built from card-events alone; this page asks it, never the card "
    "service. Trace a flagged transaction: every hop carries the same correlation id and "
    "names the hop that caused it, and each service adds a Kafka transaction commit to the "
    "path. Every stage keeps in == handled + dlq: a record it cannot process is parked in "
    "its dead-letter queue, not lost, and a redrive sends it back to its origin once."
)

cfg = settings()


@st.cache_resource
def tracer(cfg) -> Tracer:
    """One tracer (a Kafka consumer and decoders) per cluster, shared by every session."""
    return Tracer(cfg)


def _read_model(why: str = "") -> ReadModel | None:
    """The live read model, or None after saying how to create it."""
    try:
        return ReadModel(default_db_path(cfg))
    except RtmlError as exc:
        st.info(f"{exc}{why}")
        st.code(PROJECTION, language="bash")
        return None


def _cluster_up() -> bool:
    """True when a broker answers. The first section to find none says so with the command
    to run; the others wait for it instead of each timing out against a stopped cluster."""
    now = time.monotonic()
    probe = st.session_state.get("events_probe")
    fresh = probe is None or now - probe[0] > PROBE_S
    if fresh:
        try:
            check_cluster(cfg, admin_client(cfg))
            probe = (now, None)
        except RtmlError as exc:
            probe = (time.monotonic(), str(exc))
        st.session_state["events_probe"] = probe
    if probe[1] is None:
        return True
    if fresh:
        st.error(probe[1])
        st.code(START, language="bash")
    else:
        st.caption("Waiting for the cluster (see above).")
    return False


@st.fragment(run_every=3)
def read_model() -> None:
    st.subheader("Read model")
    model = _read_model()
    if model is None:
        return
    try:
        counts = model.counts()
        blocked = model.blocked_cards()
        alerts = model.alerts(RECENT)
    except RtmlError as exc:
        st.error(str(exc))
        return
    cells = st.columns(5)
    for cell, (name, value) in zip(
        cells,
        [
            ("Cards", counts.cards),
            ("Blocked cards", counts.blocked),
            ("Alerts raised", counts.alerts),
            ("Events", sum(counts.events.values())),
            ("Commands rejected", counts.events.get("CommandRejected", 0)),
        ],
        strict=True,
    ):
        cell.metric(name, f"{value:,}")
    st.dataframe(
        pd.DataFrame([counts.events], index=["events"]),
        key="readmodel_events",
    )
    left, right = st.columns(2)
    left.markdown(f"**Blocked cards** ({len(blocked):,})")
    left.dataframe(
        blocked[["card_id", "blocked_since", "block_reason", "version", "alerts"]],
        hide_index=True,
    )
    right.markdown(f"**Latest alerts** (newest {RECENT})")
    right.dataframe(
        alerts[["occurred_at", "card_id", "transaction_id", "reason", "correlation_id"]],
        hide_index=True,
    )
    # Shown from the checkout down, as a learner finds it (the whole path says little more).
    root = project_root()
    shown = model.path.relative_to(root) if model.path.is_relative_to(root) else model.path
    st.caption(f"SQLite read model {shown} · refreshes every 3 s")


@st.fragment(run_every=3)
def counters() -> None:
    st.subheader("Services: in == handled + dlq")
    statuses = read_statuses(cfg)
    if not statuses:
        st.info("No week-4 service has run yet: start them with `rtml services up`.")
        st.code(START, language="bash")
        return
    st.dataframe(stage_table(statuses), hide_index=True, key="events_stages")
    st.caption(
        "Each instance's counters, from the status file it rewrites every second (stale: "
        "no news for 5 s). `in` counts the records of finished batches; each was handled "
        "(its outputs written) or dead-lettered. The projection counts duplicates (event ids "
        "it had applied already) as handled, and writes nothing for them."
    )


def _pick_recent() -> None:
    """Copy the transaction picked from the recent ones into the id field."""
    picked = st.session_state.get("trace_pick")
    if picked is not None:
        st.session_state["trace_tx"] = str(picked)


@st.fragment
def trace() -> None:
    """A fragment that does not refresh by itself: a trace is read once per request."""
    st.subheader("Trace one transaction")
    model = _read_model(" The trace starts from the read model's events.")
    if model is None:
        return
    try:
        recent = recent_transactions(model, RECENT)
    except RtmlError as exc:
        st.error(str(exc))
        return
    labels = {
        int(r.transaction_id): f"tx-{r.transaction_id} · {r.type} · card {r.card_id} · "
        f"{r.occurred_at:%H:%M:%S} UTC"
        for r in recent.itertuples(index=False)
    }
    left, right = st.columns(2)
    left.selectbox(
        "Recent alerts and blocks",
        list(labels),
        index=None,
        format_func=labels.get,
        placeholder="pick one to trace" if labels else "none yet",
        key="trace_pick",
        on_change=_pick_recent,
    )
    text = right.text_input("Transaction id", key="trace_tx", placeholder="e.g. 73522 or tx-73522")
    if not text.strip():
        st.caption("Pick a recent alert or block, or type the id of a transaction to trace.")
        return
    try:
        tx = parse_transaction_id(text)
    except RtmlError as exc:
        st.error(str(exc))
        return
    if not _cluster_up():
        return
    try:
        hops = tracer(cfg).trace(tx, model)
    except RtmlError as exc:
        st.error(str(exc))
        return
    if not hops:
        st.info(
            f"The read model holds no event of tx-{tx}: an approved transaction causes no "
            "command, so it has no path past its prediction (or the projection has not read "
            "its events yet)."
        )
        return
    st.dataframe(hop_table(hops), hide_index=True, key="trace_hops")
    for sentence in missing(hops):
        st.warning(sentence)
    st.caption(
        f"Every hop carries correlation id tx-{tx}; `caused by` is the message id of the hop "
        "before, `after (ms)` the time since it was written. Found without scanning: the "
        "events from the read model, the commands and notifications in the one partition "
        "their card's key hashes to, the prediction in its transaction id's, each read from "
        "a little before the event's time."
    )


@st.fragment(run_every=10)
def dead_letters() -> None:
    st.subheader("Dead-letter queues")
    if not _cluster_up():
        return
    try:
        found = summaries(cfg)
    except RtmlError as exc:
        st.error(str(exc))
        return
    st.dataframe(summary_table(found), hide_index=True, key="dlq_summary")
    st.caption("Records each stage could not process, by error type · refreshes every 10 s")


@st.fragment
def dlq_browser() -> None:
    """Browse one DLQ and redrive a record: this one action, through `rtml.ops.dlq.redrive`
    (what `rtml dlq redrive` runs). A fragment that does not refresh by itself, so a click
    never races a redraw."""
    st.subheader("Browse and redrive")
    if not _cluster_up():
        return
    try:
        stages = dlq_stages(cfg, admin_client(cfg))
    except RtmlError as exc:
        st.error(str(exc))
        return
    left, right = st.columns([3, 1])
    stage = left.selectbox("Stage", stages, key="dlq_stage")
    limit = right.number_input("Records", min_value=1, max_value=200, value=20, key="dlq_limit")
    try:
        shown = records(cfg, stage, limit=int(limit))
    except RtmlError as exc:
        st.error(str(exc))
        return
    if not shown:
        st.info(f"{stage}.dlq is empty: stage {stage} has processed every record it read.")
        return
    st.dataframe(record_table(shown), hide_index=True, key="dlq_records")
    st.caption(
        f"The first {len(shown)} record(s) of {stage}.dlq in partition and offset order, "
        "values decoded where they are Avro of their origin topic."
    )
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    picked = left.selectbox("Record to redrive", [record_label(r) for r in shown], key="dlq_record")
    if right.button("Redrive this record", key="dlq_redrive"):
        chosen = next(r for r in shown if record_label(r) == picked)
        try:
            report = redrive(cfg, stage, offsets=[(chosen.partition, chosen.offset)])
        except RtmlError as exc:
            st.session_state["dlq_said"] = (stage, False, str(exc), None)
        else:
            ok, sentence = redrive_sentence(report)
            st.session_state["dlq_said"] = (stage, ok, sentence, redrive_table(report))
    said = st.session_state.get("dlq_said")
    if said and said[0] == stage:
        _, ok, sentence, table = said
        (st.success if ok else st.error)(sentence)
        if table is not None:
            st.dataframe(table, hide_index=True, key="dlq_redriven")


read_model()
counters()
trace()
dead_letters()
dlq_browser()
