"""Cluster page: brokers, the active controller, and every partition's leader and ISR."""

import pandas as pd
import streamlit as st
from resources import admin_client, settings

from rtml.cluster import get_status
from rtml.errors import RtmlError

st.title("Cluster")
st.caption(
    "What to notice (week 1): each partition has one leader and a replica on every broker. "
    "Kill a broker (`rtml cluster kill 2`) and watch its partitions get new leaders and "
    "their ISR shrink to 2; restart it and watch the ISR fill again."
)

try:
    cfg = settings()
except RtmlError as exc:
    st.error(str(exc))
    st.stop()


@st.fragment(run_every=3)
def live_status() -> None:
    status = get_status(cfg, timeout=3, admin=admin_client(cfg))
    if not status.reachable:
        st.error(status.message)
        st.code("make lab        # or: rtml cluster up", language="bash")
        return
    a, b, c, d = st.columns(4)
    a.metric("Brokers up", f"{status.brokers_up} / {len(status.brokers)}")
    b.metric("Controller", f"node {status.controller}" if status.controller else "electing")
    c.metric("Under-replicated partitions", status.under_replicated)
    d.metric("Offline partitions", status.offline)

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

    st.subheader(f"Partitions ({len(status.partitions)} in {len(status.topics)} topics)")
    if status.partitions:
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
    else:
        st.info("No topics yet.")
    st.caption(f"bootstrap {status.bootstrap} · refreshes every 3 s")


live_status()
