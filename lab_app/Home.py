"""The rtml control room: one Streamlit app, one module per page, all data through rtml."""

import streamlit as st

st.set_page_config(page_title="rtml control room", page_icon=":material/hub:", layout="wide")

pages = [
    st.Page("pages/cluster.py", title="Cluster", icon=":material/dns:", default=True),
    st.Page("pages/flow.py", title="Flow", icon=":material/timeline:"),
    st.Page("pages/windows.py", title="Windows", icon=":material/view_timeline:"),
    st.Page("pages/predictions.py", title="Predictions", icon=":material/online_prediction:"),
    st.Page("pages/events.py", title="Events", icon=":material/receipt_long:"),
    st.Page("pages/replay.py", title="Replay", icon=":material/replay:"),
    st.Page("pages/chaos.py", title="Chaos", icon=":material/bolt:"),
]
st.navigation(pages).run()
