"""Replay page: reset a stopped consumer group to a point (plan first, then confirm), and
rebuild the card projection from card-events to compare it with the live read model."""

import streamlit as st
from resources import admin_client, settings

from rtml import services
from rtml.cards.compare import RebuildComparison, compare_rebuild, comparison_table
from rtml.cards.projection import default_db_path
from rtml.cards.readmodel import ReadModel
from rtml.errors import RtmlError
from rtml.observe.events import check_cluster
from rtml.observe.resets import (
    KIND_LABELS,
    NOTES,
    group_choices,
    group_tables,
    owning_service,
    plan_sentence,
    plan_table,
    target_of,
)
from rtml.ops.replay import KINDS, ReplayError, plan, reset, show

START = "make lab        # or: rtml cluster up && rtml services up"
PROJECTION = "rtml services up        # starts the card projection (alone: rtml cards projections)"
STOP_WAIT_S = 15  # a stopped service's member leaves its group by then (session timeout)

st.title("Replay")
st.caption(
    "What to notice (week 4, notebook week4_production_patterns): a consumer group is no "
    "more than a committed offset per partition, so replaying is moving it back (and "
    "skipping is moving it forward). Kafka refuses while the group has live members, who "
    "would commit their own position over the reset: stop the service first. Replaying is "
    "safe because every stage is idempotent: the same input gives the same ids, and "
    "readers drop duplicates. The read model is only a cache of card-events: rebuilt from "
    "offset 0, it has the same content hash."
)

cfg = settings()


def _said(key: str) -> None:
    """The outcome of the last action of a section, kept until the next one."""
    said = st.session_state.get(key)
    if said:
        (st.success if said[0] == "ok" else st.error)(said[1])


def _do(key: str, action, done: str) -> None:
    """Run one allow-listed action, then redraw with what it did (or its one sentence)."""
    try:
        action()
    except RtmlError as exc:
        st.session_state[key] = ("error", str(exc))
    else:
        st.session_state[key] = ("ok", done)
    st.rerun()


@st.fragment
def reset_group() -> None:
    """Plan and reset: these actions only, through rtml.ops.replay and rtml.services, on a
    group picked from a list. Does not refresh by itself, so a click never races a redraw."""
    st.subheader("Reset a consumer group")
    _said("replay_said")
    try:
        check_cluster(cfg, admin_client(cfg))
        groups = group_choices(cfg, admin_client(cfg))
    except RtmlError as exc:
        st.error(str(exc))
        st.code(START, language="bash")
        return
    left, right = st.columns([2, 3])
    group = left.selectbox(
        "Consumer group",
        groups,
        key="replay_group",
        format_func=lambda g: f"{g} (service {owning_service(g)})" if owning_service(g) else g,
    )
    kind = right.radio(
        "Move it to", KINDS, format_func=KIND_LABELS.get, horizontal=True, key="replay_kind"
    )
    offset = when = None
    if kind == "offset":
        offset = right.number_input("Offset", min_value=0, value=0, step=1, key="replay_offset")
    elif kind == "time":
        when = right.text_input(
            "Time (ISO 8601, UTC unless it says otherwise)",
            key="replay_time",
            placeholder="2026-11-25T05:00",
        )
    if group in NOTES:
        st.caption(NOTES[group])
    try:
        target = target_of(kind, None if offset is None else int(offset), when)
        view = show(cfg, group)
    except RtmlError as exc:
        st.info(str(exc))
        return
    members, offsets = group_tables(view)
    a, b = st.columns(2)
    a.metric("Group state", view.state)
    b.metric("Active members", len(view.members))
    if not members.empty:
        st.dataframe(members, hide_index=True, key="replay_members")
    service = owning_service(group)
    try:
        reset_plan = plan(cfg, group, target, view=view)
    except ReplayError as exc:
        st.warning(str(exc))  # a refusal, not a failure: the sentence says what to do
        _offer_stop(service, bool(view.members))
        if not offsets.empty:
            st.markdown("**Committed offsets now**")
            st.dataframe(offsets, hide_index=True, key="replay_offsets")
        return
    except RtmlError as exc:
        st.error(str(exc))
        return
    st.markdown(f"**Plan: {group} to {target}**")
    st.dataframe(plan_table(reset_plan), hide_index=True, key="replay_plan")
    st.write(plan_sentence(reset_plan))
    _confirm(group, target)
    _offer_start(service)


def _offer_stop(service: str | None, active: bool) -> None:
    """A refused reset: offer to stop the lab service that owns the group, by its name."""
    if service is None or not active:
        return
    left, right = st.columns(2)
    if not _running(service):
        left.caption(
            f"The lab's {service} service is not running: the members are consumers started "
            "elsewhere (a terminal, a notebook). Stop them there."
        )
    elif left.button(f"Stop the {service} service", key="replay_stop"):
        _do(
            "replay_said",
            lambda: services.down(cfg, [service], log=lambda line: None),
            f"Service {service} stopped. Its member leaves the group when its session "
            f"times out (up to {STOP_WAIT_S} s: the lab's services are static members); "
            "then the plan shows here (Check again).",
        )
    if right.button("Check again", key="replay_check"):
        st.session_state.pop("replay_said", None)
        st.rerun()


def _running(service: str) -> bool:
    return {s.name: s for s in services.status(cfg)}[service].alive


def _offer_start(service: str | None) -> None:
    """Once a lab group is stopped: start its service again, to watch it replay."""
    if service is None:
        return
    if _running(service):
        return
    if st.button(f"Start the {service} service again", key="replay_start"):
        with st.spinner(f"Starting {service}; waiting until it works"):
            _do(
                "replay_said",
                lambda: services.up(cfg, [service], log=lambda line: None),
                f"Service {service} started: it resumes from the group's committed offsets.",
            )


def _confirm(group: str, target) -> None:
    """Apply only after a second click: the plan is computed again and applied at once."""
    pending = st.session_state.get("replay_confirm")
    if st.button(f"Reset {group} to {target}", key="replay_apply"):
        pending = st.session_state["replay_confirm"] = (group, str(target))
    if pending != (group, str(target)):
        return
    st.warning(
        f"Move the committed offsets of {group} to {target}? The plan above is computed "
        "again and applied; the group reads from there when it starts again."
    )
    yes, no = st.columns(2)
    if yes.button("Confirm reset", key="replay_confirm_yes", type="primary"):
        st.session_state.pop("replay_confirm", None)
        try:
            done = reset(cfg, group, target)
        except RtmlError as exc:
            st.session_state["replay_said"] = ("error", str(exc))
        else:
            st.session_state["replay_said"] = ("ok", plan_sentence(done))
        st.rerun()
    if no.button("Cancel", key="replay_cancel"):
        st.session_state.pop("replay_confirm", None)
        st.rerun()


@st.fragment
def rebuild_projection() -> None:
    """Rebuild into a temporary file and compare: one action, through rtml.cards.compare."""
    st.subheader("Rebuild the projection")
    st.caption(
        "Replays card-events from offset 0 into a new SQLite file with the projection's own "
        "code, then compares it with the live read model at the same position of the log "
        "(the live one keeps reading meanwhile). The live file is only read; the rebuild is "
        "deleted afterwards."
    )
    try:
        ReadModel(default_db_path(cfg))
    except RtmlError as exc:
        st.info(str(exc))
        st.code(PROJECTION, language="bash")
        return
    if st.button("Rebuild and compare", key="rebuild_run"):
        with st.spinner("Replaying card-events from offset 0"):
            try:
                result = compare_rebuild(cfg)
            except RtmlError as exc:
                st.session_state["rebuild_said"] = ("error", str(exc))
            else:
                st.session_state["rebuild_said"] = ("ok", result)
    said = st.session_state.get("rebuild_said")
    if not said:
        return
    if said[0] == "error":
        st.error(said[1])
        return
    result: RebuildComparison = said[1]
    (st.success if result.equal else st.warning)(result.sentence())
    for cell, name, state in zip(
        st.columns(2), ("Live", "Rebuilt"), (result.live, result.rebuilt), strict=True
    ):
        a, b = cell.columns(2)
        a.metric(f"{name}: events", f"{state.events:,}")
        b.metric(f"{name}: cards", f"{state.counts.cards:,}")
        cell.code(state.content_hash, language=None)
    st.dataframe(comparison_table(result), hide_index=True, key="rebuild_table")
    st.caption(f"Rebuilt and compared in {result.seconds:.1f} s.")


reset_group()
rebuild_projection()
