"""The control room, rendered headless with Streamlit's AppTest against the live cluster."""

import base64
import json
import math
import os
import re
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from streamlit.testing.v1 import AppTest

from rtml import services
from rtml.features.windows import CUSTOMER_KINDS
from rtml.observe.throughput import end_offsets

HOME = str(Path(__file__).resolve().parents[2] / "lab_app" / "Home.py")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _table(at: AppTest, column: str) -> pd.DataFrame:
    """The one dataframe on the page that has `column`."""
    (frame,) = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def test_cluster_page_shows_three_brokers_and_the_controller(cluster_settings):
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception
    metrics = _metrics(at)
    assert metrics["Brokers up"] == "3 / 3"
    assert metrics["Controller"].startswith("node ")
    assert metrics["Under-replicated partitions"] == "0"
    brokers = _table(at, "leads")
    assert list(brokers["state"]) == ["UP", "UP", "UP"]
    partitions = _table(at, "isr")
    assert "rtml-probe" in set(partitions["topic"])


def test_a_stopped_cluster_shows_how_to_start_it(monkeypatch):
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception
    assert "No broker answers at 127.0.0.1:1" in at.error[0].value
    assert "rtml cluster up" in at.code[0].value


@pytest.mark.skipif(os.environ.get("RTML_BOOTSTRAP_SERVERS") is not None, reason="local only")
def test_a_bad_setting_is_one_sentence(monkeypatch):
    monkeypatch.setenv("RTML_KAFKA_PORT", "abc")
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception
    assert "RTML_KAFKA_PORT='abc'" in at.error[0].value


def _until(at: AppTest, check, timeout: float = 60.0) -> AppTest:
    """Rerun the page until `check(at)` holds: each run takes a fresh sample of the cluster."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception
        if check(at):
            return at
        assert time.monotonic() < deadline, "the page did not show it in time"


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def _transactions(settings) -> int:
    return end_offsets(settings, ["transactions"])["transactions"]


def _simulator(settings) -> services.ServiceStatus:
    return {s.name: s for s in services.status(settings)}["simulator"]


def test_cluster_page_shows_live_transactions_and_the_simulator(lab):
    at = AppTest.from_file(HOME, default_timeout=30).run()
    first = _count(_metrics(at)["Transactions in the topic"])
    at = _until(at, lambda a: _metrics(a)["Transactions/s"] not in ("-", "0.0"))
    metrics = _metrics(at)
    assert 0 < float(metrics["Transactions/s"]) < 3 * lab.live_rate
    assert _count(metrics["Transactions in the topic"]) > first
    assert metrics["Live simulator"] == "running"
    table = _table(at, "service").set_index("service")
    assert table.loc["simulator", "state"] == "running"
    assert table.loc["simulator", "pid"] == _simulator(lab).pid


def test_the_simulator_is_killed_and_restarted_from_the_cluster_page(lab):
    at = AppTest.from_file(HOME, default_timeout=120).run()
    old_pid = _simulator(lab).pid
    at.button(key="kill-service-simulator").click().run()
    assert not at.exception
    assert at.success[0].value == "Service simulator killed (SIGKILL)."
    assert _table(at, "service").set_index("service").loc["simulator", "state"] == "exited"
    assert _metrics(at)["Live simulator"] == "exited"
    assert not _simulator(lab).alive

    at.button(key="restart-service-simulator").click().run()
    assert not at.exception
    assert at.success[0].value.startswith("Service simulator up in")
    now = _simulator(lab)
    assert now.alive and now.pid != old_pid
    start = _transactions(lab)
    deadline = time.monotonic() + 30
    while _transactions(lab) <= start:
        assert time.monotonic() < deadline, "the restarted simulator produced nothing"
        time.sleep(0.2)


def _commit_from_the_start(settings, group: str) -> None:
    """A consumer group that committed offset 0 everywhere and left: lag, and no owner."""
    consumer = Consumer(settings.client_config(group_id=group, enable_auto_commit=False))
    try:
        partitions = consumer.list_topics("transactions", timeout=10).topics["transactions"]
        offsets = [TopicPartition("transactions", p, 0) for p in partitions.partitions]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def _chart_traces(at: AppTest) -> dict[str, list[float]]:
    charts = at.get("plotly_chart")
    if not charts:
        return {}
    spec = json.loads(charts[0].proto.spec)
    return {trace["name"]: _values(trace["y"]) for trace in spec["data"]}


def _values(y) -> list[float]:
    """A trace's values: plotly 6 sends numeric arrays as base64 with a dtype."""
    if isinstance(y, dict):
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
    return list(y)


def _group_rows(at: AppTest, group: str) -> pd.DataFrame:
    frames = [d.value for d in at.dataframe if "group status" in d.value.columns]
    return frames[0].query("group == @group") if frames else pd.DataFrame()


def test_flow_page_shows_rates_lag_verdicts_and_a_decoded_tail(lab):
    group = f"flow-page-{uuid.uuid4().hex[:6]}"
    _commit_from_the_start(lab, group)
    at = AppTest.from_file(HOME, default_timeout=60)
    at.switch_page("pages/flow.py")

    def ready(a: AppTest) -> bool:
        rows = _group_rows(a, group)
        return (
            "transactions" in _chart_traces(a)
            and not rows.empty
            and set(rows["status"]) == {"STOP"}
        )

    at = _until(at, ready)
    assert [s.value for s in at.subheader] == ["Messages per second", "Consumer lag", "Live tail"]
    assert "What to notice (week 1" in at.caption[0].value
    rates = _chart_traces(at)["transactions"]
    assert rates[-1] > 0
    assert float(_metrics(at)["transactions /s"]) > 0

    # Nobody owns the group's partitions and its offsets never move: STOP, lag = end - 0.
    rows = _group_rows(at, group)
    assert len(rows) == 6
    assert (rows["committed"] == 0).all()
    assert (rows["lag"] == rows["end"]).all() and rows["lag"].sum() > 0
    assert set(rows["group status"]) == {"STOP"}
    summary = _table(at, "advice").set_index("group")
    assert summary.loc[group, "status"] == "STOP"
    assert summary.loc[group, "members"] == 0

    records = _table(at, "tx_amount")
    assert len(records) == 20
    assert list(records["key"]) == [str(c) for c in records["customer_id"]]
    assert set(records["partition"]) <= set(range(6))
    stamps = pd.to_datetime(records["timestamp"], utc=True)
    assert stamps.is_monotonic_increasing
    assert pd.Timestamp.now(tz="UTC") - stamps.max() < pd.Timedelta(minutes=2)


def test_flow_page_on_a_stopped_cluster_says_how_to_start_it(monkeypatch):
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.switch_page("pages/flow.py")
    started = time.monotonic()
    at.run()
    assert not at.exception
    # One error, not one per section, and no section waits out its own timeout.
    assert [e.value for e in at.error] == [
        "No broker answers at 127.0.0.1:1: check RTML_BOOTSTRAP_SERVERS and the security settings."
    ]
    assert "rtml services up" in at.code[0].value
    assert [c.value for c in at.caption].count("Waiting for the cluster (see above).") == 2
    assert time.monotonic() - started < 15


def _trace_names(at: AppTest) -> list[str]:
    """The names of the traces of the page's first chart."""
    return [trace["name"] for trace in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]]


def _in_window(frame: pd.DataFrame, column: str, key: int, row: pd.Series) -> pd.DataFrame:
    """The replayed transactions of `key` (in `column`) inside the window of `row`."""
    start, end = (int(t.value // 1_000_000) for t in (row["start"], row["end"]))
    times = frame["event_time_ms"]
    return frame[(frame[column] == key) & (times >= start) & (times < end)]


def test_windows_page_shows_every_window_kind_of_the_busiest_customer(pipeline):
    txs = pipeline.sim.transactions
    at = AppTest.from_file(HOME, default_timeout=60)
    at.switch_page("pages/windows.py").run()
    assert not at.exception
    assert "What to notice (week 2" in at.caption[0].value
    match = re.fullmatch(r"Customer (\d+) \(the busiest customer .*\)", at.subheader[0].value)
    assert match, at.subheader[0].value
    customer = int(match.group(1))
    latest = _table(at, "kind").set_index("kind")
    assert list(latest.index) == list(CUSTOMER_KINDS)
    # The feature app's aggregates are those of the replayed payments in each window.
    tumbling = latest.loc["tumbling"]
    paid = _in_window(txs, "customer_id", customer, tumbling)
    assert tumbling["count"] == len(paid) > 0
    assert tumbling["sum"] == pytest.approx(paid["tx_amount"].sum())
    assert set(_trace_names(at)) == set(CUSTOMER_KINDS)

    # A terminal: the one kind of window keyed by terminal, distinct customers included.
    at.radio(key="windows_of").set_value("terminal").run()
    assert not at.exception
    terminal = int(re.match(r"Terminal (\d+) ", at.subheader[0].value).group(1))
    row = _table(at, "kind").set_index("kind").loc["terminals"]
    paid = _in_window(txs, "terminal_id", terminal, row)
    assert row["count"] == len(paid) > 0
    assert row["customers"] == paid["customer_id"].nunique()

    # A customer typed in: the one with the most replayed payments.
    at.radio(key="windows_of").set_value("customer")
    at.number_input(key="windows_id").set_value(pipeline.busiest).run()
    assert not at.exception
    assert at.subheader[0].value == f"Customer {pipeline.busiest}"
    assert set(_table(at, "kind")["kind"]) == set(CUSTOMER_KINDS)


def test_windows_page_on_a_stopped_cluster_says_how_to_start_it(monkeypatch):
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.switch_page("pages/windows.py")
    started = time.monotonic()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "No broker answers at 127.0.0.1:1: check RTML_BOOTSTRAP_SERVERS and the security settings."
    ]
    assert "rtml services up" in at.code[0].value
    assert time.monotonic() - started < 15


def _ms(metrics: dict[str, str], name: str) -> float:
    """A latency metric in ms; NaN while it shows "-" (or is not there yet)."""
    text = metrics.get(name, "-")
    return math.nan if text == "-" else float(text.replace(",", ""))


def test_predictions_page_shows_scores_latency_quality_and_swaps_the_model(pipeline):
    first, second = pipeline.versions
    at = AppTest.from_file(HOME, default_timeout=60)
    at.switch_page("pages/predictions.py")

    def ready(a: AppTest) -> bool:
        metrics = _metrics(a)
        return (
            metrics.get("Model in service") == first
            # Only live predictions in the span: replayed ones are clamped to 60 s.
            and _ms(metrics, "event-to-prediction p99") < 60_000
            and metrics.get("Labelled predictions", "0") != "0"
        )

    at = _until(at, ready, timeout=90)
    assert "What to notice (week 3" in at.caption[0].value
    metrics = _metrics(at)
    assert metrics["Service"] == "serving"
    scores = _table(at, "score")
    assert set(scores["model_version"]) == {first}
    assert set(scores["decision"]) <= {"APPROVE", "REVIEW", "DECLINE"}
    assert scores["score"].between(0, 1).all()
    for measure in ("event-to-prediction", "feature freshness"):
        p50, p95, p99, top = (_ms(metrics, f"{measure} {p}") for p in ("p50", "p95", "p99", "max"))
        assert 0 <= p50 <= p95 <= p99 <= top
    assert _ms(metrics, "event-to-prediction p99") < 60_000
    assert _count(metrics["Labelled predictions"]) > 0

    # Hot swap: publish the other saved version; the service takes it at a batch boundary.
    at.selectbox(key="swap_version").set_value(second)
    at.button(key="swap_publish").click().run()
    assert not at.exception
    assert at.success[0].value.startswith(f"Published fraud {second} to model-updates")
    at = _until(at, lambda a: _metrics(a).get("Model in service") == second)
    assert int(_metrics(at)["Swaps"]) >= 1
    at = _until(at, lambda a: second in set(_table(a, "score")["model_version"]))


def test_predictions_page_on_a_stopped_cluster_says_how_to_start_it(monkeypatch):
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.switch_page("pages/predictions.py")
    started = time.monotonic()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "No broker answers at 127.0.0.1:1: check RTML_BOOTSTRAP_SERVERS and the security settings."
    ]
    assert "rtml services up" in at.code[0].value
    assert "Waiting for the cluster (see above)." in [c.value for c in at.caption]
    assert time.monotonic() - started < 15
