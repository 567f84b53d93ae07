"""Windows page: every window kind of one customer (or terminal) on one time axis."""

import pandas as pd
import plotly.express as px
import streamlit as st
from resources import settings

from rtml.errors import RtmlError
from rtml.features.window_view import (
    KINDS,
    busiest_key,
    focus,
    key_windows,
    latest,
    recent_windows,
    timeline,
)
from rtml.features.windows import CUSTOMER_KINDS, GRACE, TERMINAL_KINDS

START = "make lab        # or: rtml cluster up && rtml services up"
REFRESH_S = 10
WHO = {"customer": CUSTOMER_KINDS, "terminal": TERMINAL_KINDS}

st.title("Windows")
st.caption(
    "What to notice (week 2, notebook week2_stream_processing): the same payments cut five "
    "ways. Tumbling windows sit back to back; hopping ones overlap, so each payment is in "
    "four; a sliding window ends at each payment; a session lasts until 30 minutes without "
    "one; a count window closes every 5 payments, however long that takes. A window is "
    f"written once it closes: when the key's event time passes its end plus the "
    f"{GRACE.seconds // 60}-minute grace. A record later than that is late: skipped for "
    "that window and counted by the feature app."
)

cfg = settings()


@st.fragment(run_every=REFRESH_S)
def windows() -> None:
    left, right = st.columns([1, 2])
    who = left.radio("Windows of", list(WHO), horizontal=True, key="windows_of")
    typed = right.number_input(
        f"{who.capitalize()} id",
        min_value=0,
        value=None,
        step=1,
        placeholder="empty: the busiest",
        key="windows_id",
    )
    kinds = WHO[who]
    try:
        key = typed if typed is not None else busiest_key(recent_windows(cfg, timeout=4), kinds)
        if key is None:
            st.info(
                f"No closed {who} windows yet. With live data an hour-long window closes an "
                "hour after it opened; replay a history (the week 2 notebook) to see them at "
                "once."
            )
            return
        records = key_windows(cfg, int(key), kinds)
    except RtmlError as exc:
        st.error(str(exc))
        st.code(START, language="bash")
        return
    how = "" if typed is not None else f" (the busiest {who} in the newest window records)"
    st.subheader(f"{who.capitalize()} {int(key)}{how}")
    if not records:
        st.info(f"No closed windows of {who} {int(key)} in the newest window records.")
        return
    chart(timeline(records), focus(records))
    st.subheader("The latest window of each kind")
    st.dataframe(latest(records), hide_index=True)
    st.caption(
        f"{len(records):,} closed windows of {who} {int(key)} in the topic's newest records "
        f"· refreshes every {REFRESH_S} s"
    )


def chart(frame: pd.DataFrame, span: tuple[pd.Timestamp, pd.Timestamp]) -> None:
    """A bar per window from its start to its end, a row per kind (and lane), one axis
    opening on `span`."""
    fig = px.timeline(
        frame,
        x_start="from",
        x_end="to",
        y="lane",
        color="kind",
        category_orders={"kind": list(KINDS), "lane": list(dict.fromkeys(frame["lane"]))},
        hover_data={"details": True, "lane": False, "from": True, "to": False},
        labels={"lane": "", "from": "start"},
    )
    fig.update_xaxes(range=list(span))
    fig.update_layout(height=120 + 28 * frame["lane"].nunique(), margin={"t": 10, "b": 10})
    st.plotly_chart(fig, key="windows_chart")
    st.caption(
        "Opens on the last 24 hours of event time before the newest window (double-click "
        "the chart for all of them); hover a bar for its aggregates. Zero-length windows (a "
        "session or count window of one payment) are drawn 4 minutes wide."
    )


windows()
