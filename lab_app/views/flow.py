"""Flow page: messages per second per topic, consumer lag with a verdict, a live topic tail."""

import plotly.express as px
import streamlit as st
from resources import admin_client, settings

from rtml.errors import RtmlError
from rtml.observe.lagboard import LagBoard, group_table, lag_table
from rtml.observe.tail import tail
from rtml.observe.throughput import ThroughputTracker
from rtml.topics import CATALOGUE

START = "make lab        # or: rtml cluster up && rtml services up"

st.title("Flow")
st.caption(
    "What to notice (week 1, sections 4-6 of the notebook): the transactions line holds at "
    "the simulator's rate and labels follow it 10 s later; each record lands in the "
    "partition its key hashes to (the tail's partition column). Start a consumer and watch "
    "its group's lag: OK while it keeps up, WARN when it falls behind, STOP when it dies. "
    "Kill a broker on the Cluster page: the rate dips while leaders move, then recovers."
)

cfg = settings()


def _unreachable(exc: RtmlError) -> None:
    st.error(str(exc))
    st.code(START, language="bash")


def _cluster_down() -> bool:
    """True while the throughput sample (every 2 s) finds no broker: the other sections then
    wait for it instead of each timing out against a stopped cluster."""
    if st.session_state.get("flow_down"):
        st.caption("Waiting for the cluster (see above).")
        return True
    return False


@st.fragment(run_every=2)
def throughput() -> None:
    st.subheader("Messages per second")
    tracker = st.session_state.setdefault("flow_throughput", ThroughputTracker())
    try:
        tracker.sample(cfg, client=admin_client(cfg))
    except RtmlError as exc:
        st.session_state["flow_down"] = True
        _unreachable(exc)
        return
    st.session_state["flow_down"] = False
    history = tracker.history()
    if history.empty:
        st.info(
            "Nothing written yet in this window (a rate needs two samples, 2 s apart). "
            "Start the live simulator with `rtml services up`."
        )
    else:
        fig = px.line(
            history,
            x="time",
            y="rate",
            color="topic",
            labels={"rate": "messages/s", "time": ""},
        )
        fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10})
        st.plotly_chart(fig, key="throughput_chart")
    latest, totals = tracker.latest(), tracker.totals()
    active = sorted(set(history["topic"])) if not history.empty else []
    for column, topic in zip(st.columns(max(1, len(active))), active, strict=False):
        column.metric(
            f"{topic} /s", f"{latest.get(topic, 0):.1f}", help=f"{totals.get(topic, 0):,} in total"
        )


@st.fragment(run_every=5)
def lag() -> None:
    st.subheader("Consumer lag")
    if _cluster_down():
        return
    board = st.session_state.setdefault("flow_lag", LagBoard(cfg, samples=5, interval=5))
    try:
        reports = board.refresh()
    except RtmlError as exc:
        _unreachable(exc)
        return
    if not reports:
        st.info("No consumer groups yet: a group appears when a consumer joins it or commits.")
        return
    st.dataframe(group_table(reports), hide_index=True)
    st.dataframe(lag_table(reports), hide_index=True)
    st.caption(
        f"Verdicts over the last {board.samples} samples, {board.interval:g} s apart (rules like "
        "Burrow's; `rtml lag GROUP` explains them)."
    )


@st.fragment(run_every=5)
def live_tail() -> None:
    st.subheader("Live tail")
    names = [t.name for t in CATALOGUE]
    left, right = st.columns([3, 1])
    topic = left.selectbox("Topic", names, index=names.index("transactions"), key="tail_topic")
    n = right.number_input("Records", min_value=1, max_value=200, value=20, key="tail_n")
    if _cluster_down():
        return
    try:
        records = tail(cfg, topic, int(n), timeout=4)
    except RtmlError as exc:
        _unreachable(exc)
        return
    if records.empty:
        st.info(f"{topic} is empty.")
    else:
        st.dataframe(records, hide_index=True)
    st.caption(
        "The newest records across all partitions, values decoded through the schema registry."
    )


throughput()
lag()
live_tail()
