"""Chaos page: run a scripted failure under load and watch the recovery, then the verdict."""

import plotly.express as px
import streamlit as st
from resources import admin_client, chaos_job, settings

from rtml.chaos.job import checks_frame, timeline_frame, verdict_frame
from rtml.chaos.scenarios import SCENARIOS, ChaosError, scenario
from rtml.errors import RtmlError
from rtml.observe.events import check_cluster

START = "make lab        # or: rtml cluster up"
BY_NAME = {s.name: s for s in SCENARIOS}

st.title("Chaos")
st.caption(
    "What to notice (week 1, durability; week 4 notebook week4_production_patterns): a "
    "scenario writes numbered records with acks=all and an idempotent producer, breaks the "
    "cluster on purpose, repairs it, and an independent reader counts by id what was "
    "acknowledged, lost and duplicated. Watch the timeline: the broker goes down, its "
    "partitions elect new leaders and their ISR shrinks to 2 (min.insync.replicas=2, so "
    "writes go on). With two brokers down nothing can be committed: writes wait (two-down), "
    "or, with a short message timeout, fail (two-down-timeout), which is also where a "
    "timed-out write can end up stored twice. The verdict is the proof: lost 0. The numbers "
    "of full runs are in docs/reliability.md. The serve-kill scenarios kill the prediction "
    "service instead, on topics of their own: every features record must still get a "
    "prediction; under at-least-once some are scored twice (counted, same score), under "
    "exactly-once none."
)

cfg = settings()


job = chaos_job(cfg.cluster_dir.as_posix())  # one run at a time per cluster


def _sizes_of_scenario() -> None:
    """A newly picked scenario starts from its own default size and rate."""
    chosen = scenario(st.session_state.get("chaos_scenario", SCENARIOS[0].name))
    st.session_state["chaos_records"] = chosen.records
    st.session_state["chaos_rate"] = int(chosen.rate or 0)


@st.fragment
def launcher() -> None:
    """Pick a scenario and start it: only these names, only through rtml.chaos."""
    st.subheader("Run a scenario")
    if not cfg.local:
        st.info(
            "Scenarios kill processes of a local cluster rtml started; this control room "
            f"points at the external cluster {cfg.bootstrap}, so they are not offered."
        )
        return
    try:
        check_cluster(cfg, admin_client(cfg))
    except RtmlError as exc:
        st.error(str(exc))
        st.code(START, language="bash")
        return
    name = st.selectbox(
        "Scenario",
        list(BY_NAME),
        key="chaos_scenario",
        format_func=lambda n: f"{n}: {BY_NAME[n].summary}",
        on_change=_sizes_of_scenario,
    )
    if "chaos_records" not in st.session_state:
        _sizes_of_scenario()
    left, right = st.columns(2)
    records = left.number_input(
        "Records", min_value=1_000, max_value=1_000_000, step=1_000, key="chaos_records"
    )
    rate = right.number_input(
        "Rate (records/s; 0 = as fast as it goes)",
        min_value=0,
        max_value=200_000,
        step=500,
        key="chaos_rate",
    )
    if st.button("Run it", key="chaos_run", type="primary", disabled=job.running):
        try:
            job.start(name, cfg, records=int(records), rate=float(rate))
        except ChaosError as exc:
            st.error(str(exc))
        else:
            st.rerun()


@st.fragment(run_every=1)
def progress() -> None:
    """The running (or last) scenario's timeline, redrawn every second, then its verdict."""
    if job.scenario is None:
        st.caption("No scenario has run yet in this control room.")
        return
    if job.running:
        st.subheader(f"Running: {job.scenario}")
        st.caption("The timeline grows as the cluster changes; the verdict comes at the end.")
    else:
        st.subheader(f"Last run: {job.scenario}")
    events = timeline_frame(job.events)
    if not events.empty:
        fig = px.scatter(
            events,
            x="second",
            y="kind",
            color="kind",
            hover_data={"what happened": True, "kind": False},
            labels={"second": "seconds since the start", "kind": ""},
        )
        fig.update_traces(marker={"size": 11})
        fig.update_layout(height=300, showlegend=False, margin={"l": 10, "r": 10, "t": 10})
        st.plotly_chart(fig, key="chaos_timeline_chart")
        st.dataframe(events, hide_index=True, key="chaos_timeline")
    if job.running:
        return
    if job.error:
        st.error(job.error)
        return
    result = job.result
    if result is None:
        return
    # The scenario's own sentence (serve-kill: predicted, scored twice, resumed after).
    (st.success if result.passed else st.error)(result.sentence())
    a, b, c, d = st.columns(4)
    a.metric("Acknowledged", f"{result.verdict.acknowledged:,}")
    b.metric("Lost", f"{result.verdict.lost:,}")
    c.metric("Duplicated", f"{result.verdict.duplicated:,}")
    resume = result.time_to_resume
    d.metric("Time to resume", "-" if resume is None else f"{resume:.2f} s")
    left, right = st.columns(2)
    left.dataframe(verdict_frame(result), hide_index=True, key="chaos_verdict")
    right.dataframe(checks_frame(result), hide_index=True, key="chaos_checks")


launcher()
progress()
