"""The rtml control room: one Streamlit app, one module per page, all data through rtml.

The pages live in views/, not pages/: Streamlit routes a URL straight to a file in pages/
on a fresh server, before this navigation (and its page config) has run.
"""

import streamlit as st

st.set_page_config(page_title="rtml control room", page_icon=":material/hub:", layout="wide")

pages = [
    st.Page("views/cluster.py", title="Cluster", icon=":material/dns:", default=True),
    st.Page("views/flow.py", title="Flow", icon=":material/timeline:"),
    st.Page("views/windows.py", title="Windows", icon=":material/view_timeline:"),
    st.Page("views/predictions.py", title="Predictions", icon=":material/online_prediction:"),
    st.Page("views/events.py", title="Events", icon=":material/receipt_long:"),
    st.Page("views/replay.py", title="Replay", icon=":material/replay:"),
    st.Page("views/chaos.py", title="Chaos", icon=":material/bolt:"),
]
st.navigation(pages).run()
