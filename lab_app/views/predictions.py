"""Predictions page: the model in service and its hot swap, the score stream, latency
histograms, and online precision and recall from the delayed labels."""

import math

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from resources import settings

from rtml.errors import RtmlError
from rtml.model import registry
from rtml.observe.latency import HIGHEST_US, MEASURES, LatencySnapshot
from rtml.observe.predictions import EvaluationFollower, RecentPredictions, recent_predictions
from rtml.serve.status import read_status
from rtml.simulate.producer import LIVE_LABEL_DELAY_S

START = "make lab        # or: rtml cluster up && rtml services up"
SPAN_S = 30  # the score stream and the latency histograms cover this many seconds
WINDOW_MIN = 10  # online metrics: this many minutes of event time
PUBLISH_TIMEOUT_S = 15
DECISION_COLOURS = {"APPROVE": "#2ca02c", "REVIEW": "#ff7f0e", "DECLINE": "#d62728"}
SHOWN = {"event_to_prediction": "event-to-prediction", "freshness": "feature freshness"}

st.title("Predictions")
st.caption(
    "What to notice (week 3, notebook week3_event_driven_ml): feature freshness is most of "
    "the event-to-prediction latency (the service adds little); the service scores "
    "micro-batches, so a new model version takes over at a batch boundary, never in the "
    "middle of one (publish another version below and watch the version switch); labels "
    f"arrive days later in production ({LIVE_LABEL_DELAY_S:g} s in the lab), so precision "
    "and recall always trail the scores."
)

cfg = settings()


@st.fragment(run_every=2)
def in_service() -> None:
    st.subheader("Model in service")
    live = [s for s in read_status(cfg) if not s.stale]
    if not live:
        st.info(
            "No prediction service is running: start it with `rtml services up` (or restart "
            "serve on the Cluster page)."
        )
        return
    a, b, c, d = st.columns(4)
    a.metric("Model in service", ", ".join(sorted({s.model_version or "-" for s in live})))
    b.metric("Service", ", ".join(sorted({s.state for s in live})))
    c.metric("Predictions written", f"{sum(s.predictions for s in live):,}")
    d.metric("Swaps", sum(s.swaps for s in live))
    for s in live:
        if s.refused:
            last = s.refused[-1]
            st.warning(f"Instance {s.instance} refused version {last['version']}: {last['reason']}")


@st.fragment
def hot_swap() -> None:
    """Publish a saved version: this one action, through `registry.publish` (what `rtml
    model publish` runs). A fragment that does not refresh itself, so a click never races
    a redraw."""
    said = st.session_state.get("swap_said")
    if said:
        (st.success if said[0] == "ok" else st.error)(said[1])
    saved = registry.versions(cfg)
    if not saved:
        st.info("No saved model versions here: train one with `rtml model train`.")
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    version = left.selectbox("Saved version", saved[::-1], key="swap_version")
    if right.button("Publish and hot-swap", key="swap_publish"):
        try:
            update = registry.publish(cfg, version, timeout=PUBLISH_TIMEOUT_S)
        except RtmlError as exc:
            st.session_state["swap_said"] = ("error", str(exc))
        else:
            st.session_state["swap_said"] = (
                "ok",
                f"Published {update.name} {update.version} to model-updates: the service "
                "takes it at its next batch.",
            )
        st.rerun()


@st.fragment(run_every=3)
def stream() -> None:
    st.subheader("Score stream")
    try:
        recent = recent_predictions(cfg, seconds=SPAN_S, timeout=4)
    except RtmlError as exc:
        st.session_state["predictions_down"] = True
        st.error(str(exc))
        st.code(START, language="bash")
        return
    st.session_state["predictions_down"] = False
    rows = recent.rows
    if rows.empty:
        st.info(
            f"No predictions in the last {SPAN_S} s. `rtml services up` starts the feature "
            "app, the prediction service and the simulator; the service waits for a "
            "published model (`rtml model train --publish`)."
        )
        return
    fig = px.scatter(
        rows,
        x="predicted",
        y="score",
        color="decision",
        color_discrete_map=DECISION_COLOURS,
        category_orders={"decision": list(DECISION_COLOURS)},
        hover_data=["transaction_id", "model_version"],
        labels={"predicted": ""},
    )
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig, key="scores_chart")
    newest = rows.iloc[::-1].head(10)
    st.dataframe(newest[["transaction_id", "score", "decision", "model_version"]], hide_index=True)
    note = "" if recent.complete else " (the newest of them: the span held more)"
    st.caption(f"{len(rows):,} predictions in the last {SPAN_S} s{note} · refreshes every 3 s")
    latency(recent)


def latency(recent: RecentPredictions) -> None:
    st.subheader(f"Latency over the last {recent.seconds} s (ms)")
    snapshot = recent.latency.snapshot()
    summary = {s.measure: s for s in snapshot.summary()}
    for measure, title in SHOWN.items():
        s = summary[measure]
        left, right = st.columns([2, 3])
        left.markdown(f"**{title}** = {MEASURES[measure]}")
        values = [("p50", s.p50), ("p95", s.p95), ("p99", s.p99), ("max", s.max)]
        for row in (values[:2], values[2:]):
            for cell, (name, value) in zip(left.columns(2), row, strict=True):
                cell.metric(f"{title} {name}", _ms(value))
        right.plotly_chart(_histogram(snapshot, measure), key=f"latency_{measure}")
        if s.above:
            left.caption(
                f"{s.above:,} above {HIGHEST_US // 1_000_000} s, counted at that value: "
                "transactions replayed from history were appended long before."
            )


def _histogram(snapshot: LatencySnapshot, measure: str) -> go.Figure:
    """The measure's HDR buckets summed into about 40 bars: how many predictions took how
    many ms."""
    buckets = snapshot.histograms[measure].buckets()
    fig = px.histogram(
        buckets, x="value_ms", y="count", nbins=40, labels={"value_ms": "ms", "count": ""}
    )
    fig.update_layout(
        height=220, yaxis_title="predictions", margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
    return fig


@st.fragment(run_every=5)
def evaluation() -> None:
    st.subheader(f"Online precision and recall (last {WINDOW_MIN} min of event time)")
    if st.session_state.get("predictions_down"):
        st.caption("Waiting for the cluster (see above).")
        return
    follower = st.session_state.get("predictions_eval")
    try:
        if follower is None:
            follower = EvaluationFollower(
                cfg, since_s=WINDOW_MIN * 60, window_ms=WINDOW_MIN * 60_000
            )
            st.session_state["predictions_eval"] = follower
        result = follower.advance(budget_s=1.5)
    except RtmlError as exc:
        st.session_state.pop("predictions_eval", None)
        st.error(str(exc))
        return
    c = result.counts
    if result.window_start is None:
        st.info(
            f"No prediction has its label yet: in the lab a label comes {LIVE_LABEL_DELAY_S:g} s "
            "after its transaction."
        )
    else:
        m = result.metrics
        cells = st.columns(6)
        for cell, (name, value) in zip(
            cells,
            [
                ("Labelled predictions", f"{m.n:,}"),
                ("Frauds", f"{m.frauds:,}"),
                ("Flagged", f"{m.flagged:,}"),
                ("Precision", _ratio(m.precision)),
                ("Recall", _ratio(m.recall)),
                ("Average precision", _ratio(m.average_precision)),
            ],
            strict=True,
        ):
            cell.metric(name, value)
    backlog = "" if follower.caught_up else " Still reading the backlog."
    st.caption(
        f"Since {WINDOW_MIN} min before this page opened: {c.predictions:,} predictions and "
        f"{c.labels:,} labels read, {c.joined:,} joined; {c.pending_predictions:,} predictions "
        f"wait for their label, {c.expired_predictions:,} got none in time (replayed history: "
        f"its labels were written long ago). Flagged = REVIEW or DECLINE.{backlog}"
    )


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


in_service()
hot_swap()
stream()
evaluation()
