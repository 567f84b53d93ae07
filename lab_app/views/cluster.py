"""Cluster page: brokers, the controller, partitions and ISR, live traffic, kill and restart."""

from collections.abc import Callable

import pandas as pd
import streamlit as st
from resources import admin_client, settings

from rtml import services
from rtml.cluster import ClusterStatus, LocalCluster, get_status
from rtml.errors import RtmlError
from rtml.observe.throughput import ThroughputTracker

# A broker is back when it is in every ISR again: seconds on an idle laptop, minutes on a
# machine busy with other clusters.
RESTART_S = 300
KILL_HELP = "SIGKILL, as a crash would: no clean shutdown, no flush"
START_HELP = "Stop it if it runs, start it, and wait until it works"

st.title("Cluster")
st.caption(
    "What to notice (week 1): each partition has one leader and a replica on every broker. "
    "Kill a broker (below, or `rtml cluster kill 2`) and watch its partitions get new leaders "
    "and their ISR shrink to 2 while transactions keep flowing (min.insync.replicas=2); "
    "restart it and watch the ISR fill again."
)

cfg = settings()


@st.fragment
def controls() -> None:
    """Kill and restart buttons: only these node ids and service names, only through rtml.

    A fragment of its own that does not refresh by itself, so a click never races a redraw.
    """
    st.subheader("Crash and recover")
    # The outcome of the last kill or restart stays until the next one.
    said = st.session_state.get("control_said")
    if said:
        (st.success if said[0] == "ok" else st.error)(said[1])
    lines: list[str] = []
    width = max(3, len(cfg.node_ids), len(services.NAMES))
    if cfg.local:
        cluster = LocalCluster(cfg, log=lines.append)
        for node_id, column in zip(cfg.node_ids, st.columns(width), strict=False):
            kill, restart = column.columns(2)
            if kill.button(f"Kill broker {node_id}", key=f"kill-node-{node_id}", help=KILL_HELP):
                _run(lambda n=node_id: cluster.kill(n), lines)
            if restart.button(f"Restart broker {node_id}", key=f"restart-node-{node_id}"):
                with st.spinner(f"Restarting broker {node_id}; waiting until it is in every ISR"):
                    _run(lambda n=node_id: cluster.restart(n, timeout=RESTART_S), lines)
    else:
        st.caption("The brokers of an external cluster are not rtml's to kill.")
    for name, column in zip(services.NAMES, st.columns(width), strict=False):
        kill, restart = column.columns(2)
        if kill.button(f"Kill {name}", key=f"kill-service-{name}", help=KILL_HELP):
            _run(lambda n=name: services.kill(cfg, n, log=lines.append), lines)
        if restart.button(f"Restart {name}", key=f"restart-service-{name}", help=START_HELP):
            with st.spinner(f"Starting {name}; waiting until it works"):
                _run(lambda n=name: services.restart(cfg, n, log=lines.append), lines)


@st.fragment(run_every=3)
def live_status() -> None:
    status = get_status(cfg, timeout=3, admin=admin_client(cfg))
    if not status.reachable:
        st.error(status.message)
        st.code("make lab        # or: rtml cluster up", language="bash")
        service_table()
        return
    a, b, c, d = st.columns(4)
    a.metric("Brokers up", f"{status.brokers_up} / {len(status.brokers)}")
    b.metric("Controller", f"node {status.controller}" if status.controller else "electing")
    c.metric("Under-replicated partitions", status.under_replicated)
    d.metric("Offline partitions", status.offline)
    traffic()
    broker_table(status)
    service_table()
    partition_table(status)
    st.caption(f"bootstrap {status.bootstrap} · refreshes every 3 s")


def traffic() -> None:
    """Transactions per second and in total, so the live simulator visibly shows here."""
    tracker = st.session_state.setdefault("cluster_traffic", ThroughputTracker(maxlen=10))
    a, b, c = st.columns(3)
    try:
        tracker.sample(cfg, ["transactions"], client=admin_client(cfg))
    except RtmlError as exc:
        a.warning(str(exc))
        return
    rate = tracker.latest().get("transactions")
    total = tracker.totals().get("transactions")
    a.metric("Transactions/s", "-" if rate is None else f"{rate:.1f}")
    b.metric("Transactions in the topic", "-" if total is None else f"{total:,}")
    simulator = {s.name: s for s in services.status(cfg)}["simulator"]
    c.metric("Live simulator", simulator.state)


def broker_table(status: ClusterStatus) -> None:
    st.subheader("Brokers")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "node": b.node_id,
                    "address": b.address,
                    "state": "UP" if b.up else "DOWN",
                    "controller": "yes" if b.node_id == status.controller else "",
                    "leads": len(status.led_by(b.node_id)),
                }
                for b in status.brokers
            ]
        ),
        hide_index=True,
    )


def service_table() -> None:
    st.subheader("Services")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "service": s.name,
                    "state": s.state,
                    "pid": s.pid,
                    "uptime (s)": None if s.uptime is None else round(s.uptime),
                    "what": s.description,
                }
                for s in services.status(cfg)
            ]
        ),
        hide_index=True,
    )


def partition_table(status: ClusterStatus) -> None:
    st.subheader(f"Partitions ({len(status.partitions)} in {len(status.topics)} topics)")
    if not status.partitions:
        st.info("No topics yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "leader": p.leader,
                    "replicas": ",".join(map(str, p.replicas)),
                    "isr": ",".join(map(str, p.isr)),
                    "state": "OFFLINE"
                    if p.offline
                    else ("UNDER-REPLICATED" if p.under_replicated else "ok"),
                }
                for p in status.partitions
            ]
        ),
        hide_index=True,
    )


def _run(action: Callable[[], None], lines: list[str]) -> None:
    """Run one allow-listed action, then redraw with what it said (or its one-sentence error)."""
    try:
        action()
    except RtmlError as exc:
        st.session_state["control_said"] = ("error", str(exc))
    else:
        st.session_state["control_said"] = ("ok", lines[-1] if lines else "Done.")
    st.rerun()


controls()
live_status()
