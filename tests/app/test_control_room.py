"""The control room, rendered headless with Streamlit's AppTest against the live cluster."""

import base64
import contextlib
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
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic
from streamlit.testing.v1 import AppTest

from rtml import services
from rtml.cards.projection import default_db_path
from rtml.cards.readmodel import ReadModel
from rtml.clients import admin, create_missing_topics, durable_producer
from rtml.dlq import origin_headers
from rtml.features.windows import CUSTOMER_KINDS
from rtml.observe.throughput import end_offsets
from rtml.observe.trace import recent_transactions
from rtml.ops import replay
from rtml.poll import until

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
    at.switch_page("views/flow.py")

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
    at.switch_page("views/flow.py")
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
    at.switch_page("views/windows.py").run()
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
    at.switch_page("views/windows.py")
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
    at.switch_page("views/predictions.py")

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
    at.switch_page("views/predictions.py")
    started = time.monotonic()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "No broker answers at 127.0.0.1:1: check RTML_BOOTSTRAP_SERVERS and the security settings."
    ]
    assert "rtml services up" in at.code[0].value
    assert "Waiting for the cluster (see above)." in [c.value for c in at.caption]
    assert time.monotonic() - started < 15


# --- Events and Replay (week 4) ------------------------------------------------------------


def _read_model(settings) -> ReadModel:
    """The live read model, once the pipeline's flagged transactions have reached it."""
    path = default_db_path(settings)

    def flagged() -> bool:
        if not path.is_file():
            return False
        counts = ReadModel(path).counts()
        return counts.alerts + counts.blocked > 0

    until(flagged, 180, "an alert or a blocked card in the read model")
    return ReadModel(path)


def _shown_counts(counts) -> dict[str, str]:
    """The Events page's metrics for these read model counts."""
    return {
        "Cards": f"{counts.cards:,}",
        "Blocked cards": f"{counts.blocked:,}",
        "Alerts raised": f"{counts.alerts:,}",
        "Events": f"{sum(counts.events.values()):,}",
        "Commands rejected": f"{counts.events['CommandRejected']:,}",
    }


def test_events_page_shows_the_read_model_the_counters_and_a_transaction_traced(pipeline):
    model = _read_model(pipeline.settings)
    at = AppTest.from_file(HOME, default_timeout=60)
    at.switch_page("views/events.py")
    # The projection keeps writing: the page and the file agree between two events.
    at = _until(at, lambda a: _metrics(a) == _shown_counts(model.counts()))
    assert "What to notice (week 4, notebook week4_production_patterns)" in at.caption[0].value
    assert [s.value for s in at.subheader] == [
        "Read model",
        "Services: in == handled + dlq",
        "Trace one transaction",
        "Dead-letter queues",
        "Browse and redrive",
    ]
    assert not at.error

    stages = _table(at, "in == handled + dlq")
    assert {"decisions", "cards", "notifications", "projections"} <= set(stages["stage"])
    assert stages["in == handled + dlq"].all()
    assert (stages.set_index("stage").loc["decisions", "in"] > 0).all()
    summary = _table(at, "errors").set_index("stage")
    assert {"decisions", "cards", "projections", "notifications"} <= set(summary.index)

    # Trace the newest flagged transaction, picked from the list as a learner would. The
    # projection goes on writing, so the list is checked against the read model read after it.
    newest = at.selectbox(key="trace_pick").options[0]
    assert re.match(r"^tx-\d+ · ", newest), newest
    tx = int(newest.split(" · ")[0].removeprefix("tx-"))
    assert tx in set(recent_transactions(model, limit=100)["transaction_id"])
    at.selectbox(key="trace_pick").set_value(tx)
    # Its notification is written a moment after its event is projected.
    at = _until(at, lambda a: "notification" in set(_table(a, "hop")["hop"]))
    assert at.text_input(key="trace_tx").value == str(tx)
    hops = _table(at, "hop")
    events = model.trace(f"tx-{tx}")
    assert set(hops.loc[hops["hop"] == "event", "message id"]) == set(events["event_id"])
    assert set(hops["hop"]) == {"prediction", "command", "event", "notification"}
    assert list(hops["step"]) == list(range(1, len(hops) + 1))
    # Each hop comes after the hop that caused it, written no earlier than it.
    for i, row in hops.iterrows():
        if row["hop"] == "prediction":
            assert row["message id"] == f"pred-{tx}" and row["caused by"] == ""
            continue
        causes = hops.loc[: i - 1]
        assert row["caused by"] in set(causes["message id"]), row.to_dict()
        assert row["after (ms)"] >= 0
    commands = hops[hops["hop"] == "command"]
    assert all(
        m == f"{t}-{tx}" for m, t in zip(commands["message id"], commands["type"], strict=True)
    )
    assert set(hops["topic"]) == {"predictions", "card-commands", "card-events", "notifications"}
    assert not at.warning, [w.value for w in at.warning]

    # A typed id is checked before anything is read.
    at.text_input(key="trace_tx").set_value("12; DROP TABLE cards").run()
    assert not at.exception
    assert at.error[0].value.startswith("'12; DROP TABLE cards' is not a transaction id")


def _scratch_topics(settings, *names: str) -> None:
    assert create_missing_topics(settings, [NewTopic(n, 1, 3) for n in names]) == list(names)


def _delete(settings, topics: list[str], groups: list[str]) -> None:
    client = admin(settings, timeout=10)
    futures = list(client.delete_topics(topics, operation_timeout=30).values()) if topics else []
    futures += client.delete_consumer_groups(groups, request_timeout=30).values()
    for fut in futures:
        with contextlib.suppress(KafkaException):  # a failed test may not have made it
            fut.result(timeout=60)


def _all_records(settings, topic: str) -> list:
    """Every committed record of a one-partition topic now."""
    consumer = Consumer(
        settings.client_config(
            group_id=f"apptest-read-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            enable_partition_eof=True,
        )
    )
    got = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is None:
                got.append(msg)
            elif msg.error().code() == KafkaError._PARTITION_EOF:
                return got
        raise AssertionError(f"{topic} was not read to its end in time")
    finally:
        consumer.close()


def test_events_page_lists_a_dead_letter_and_redrives_it_once(lab_topics):
    settings = lab_topics
    stage = f"apptest-{uuid.uuid4().hex[:8]}"
    dlq, origin = f"{stage}.dlq", f"{stage}-origin"
    _scratch_topics(settings, dlq, origin)
    try:
        producer = durable_producer(settings)
        headers = origin_headers(
            topic=origin,
            partition=0,
            offset=17,
            timestamp=1_764_000_000_000,
            group="apptest",
            stage=stage,
            error="amount is negative",
        )
        producer.produce(dlq, b'{"amount": -1}', b"42", partition=0, headers=headers)
        assert producer.flush(30) == 0

        at = AppTest.from_file(HOME, default_timeout=60)
        at.switch_page("views/events.py").run()
        assert not at.exception
        assert stage in at.selectbox(key="dlq_stage").options
        at.selectbox(key="dlq_stage").set_value(stage).run()
        assert not at.exception
        records = _table(at, "error type")
        assert records.to_dict("records") == [
            {
                "record": "0:0",
                "time": records["time"][0],
                "error type": "Rejected",
                "error": "amount is negative",
                "attempts": "1",
                "origin": f"{origin} 0:17",
                "key": "42",
                "value": '(text) {"amount": -1}',
            }
        ]

        at.selectbox(key="dlq_record").set_value("0:0")
        at.button(key="dlq_redrive").click().run()
        assert not at.exception
        assert at.success[0].value == (
            f"Sent 1 record(s) of {dlq} back to {origin}, once: redriving again sends nothing."
        )
        assert _table(at, "action").to_dict("records") == [
            {"record": "0:0", "origin topic": origin, "action": "sent", "why": ""}
        ]
        (sent,) = _all_records(settings, origin)
        assert (sent.key(), sent.value()) == (b"42", b'{"amount": -1}')
        assert dict(sent.headers())["rtml.redriven_from"] == f"{dlq}:0:0".encode()
        assert sent.timestamp()[1] == 1_764_000_000_000  # the failed record's own time

        # Once only: a second click finds it redriven and sends nothing.
        at.button(key="dlq_redrive").click().run()
        assert not at.exception
        assert at.success[0].value.startswith("1 record(s) were redriven before, so not again")
        assert len(_all_records(settings, origin)) == 1
    finally:
        _delete(settings, [dlq, origin], [f"rtml-dlq-redrive-{stage}"])


def _replay_page() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=120)
    at.switch_page("views/replay.py").run()
    assert not at.exception
    return at


def test_replay_page_plans_a_stopped_group_and_resets_it_only_when_confirmed(lab):
    group = f"replay-page-{uuid.uuid4().hex[:6]}"
    _commit_from_the_start(lab, group)
    try:
        at = _replay_page()
        assert "What to notice (week 4, notebook week4_production_patterns)" in at.caption[0].value
        groups = at.selectbox(key="replay_group").options
        assert groups[:4] == [
            "rtml-decisions (service decisions)",
            "rtml-cards (service cards)",
            "rtml-notifications (service notifications)",
            "rtml-projections (service projections)",
        ]
        assert group in groups
        at.selectbox(key="replay_group").set_value(group)
        at.radio(key="replay_kind").set_value("latest").run()
        assert not at.exception
        assert _metrics(at) == {"Group state": "empty", "Active members": "0"}
        planned = _table(at, "lag after")
        assert len(planned) == 6 and set(planned["topic"]) == {"transactions"}
        assert (planned["before"] == 0).all() and (planned["lag after"] == 0).all()
        assert (planned["after"] == planned["end"]).all() and planned["after"].sum() > 0
        assert f"**Plan: {group} to latest**" in [m.value for m in at.markdown]

        # The first click asks; nothing moves until the second.
        at.button(key="replay_apply").click().run()
        assert at.warning[0].value.startswith(f"Move the committed offsets of {group} to latest?")
        assert all(c.offset == 0 for c in replay.show(lab, group).offsets)
        at.button(key="replay_confirm_yes").click().run()
        assert not at.exception
        assert at.success[0].value.startswith(f"Group {group} was reset to latest; it skips ")
        committed = {c.partition: c.offset for c in replay.show(lab, group).offsets}
        assert all(
            committed[p] >= a for p, a in zip(planned["partition"], planned["after"], strict=True)
        )
        # The plan now starts where the reset left the group.
        again = _table(at, "lag after").set_index("partition")
        assert all(again.loc[p, "before"] == o for p, o in committed.items())
        assert not at.warning
    finally:
        _delete(lab, [], [group])


def test_replay_page_refuses_a_running_group_and_stops_its_service(pipeline):
    settings = pipeline.settings
    at = _replay_page()
    assert at.selectbox(key="replay_group").value == "rtml-decisions"
    refusal = at.warning[0].value
    assert re.fullmatch(
        r"Consumer group 'rtml-decisions' has 1 active member\(s\) \(state [a-z ]+\): stop its "
        r"consumers first \(`rtml services down` stops the lab services\), then reset\.",
        refusal,
    ), refusal
    assert _metrics(at)["Active members"] == "1"
    assert not at.error
    try:
        at.button(key="replay_stop").click().run()
        assert not at.exception
        assert at.success[0].value.startswith("Service decisions stopped.")
        assert not {s.name: s for s in services.status(settings)}["decisions"].alive
        # Its static member leaves the group when its session times out: then a plan.
        at = _until(at, lambda a: any("lag after" in d.value.columns for d in a.dataframe))
        planned = _table(at, "lag after")
        assert set(planned["topic"]) == {"predictions"}
        assert _metrics(at) == {"Group state": "empty", "Active members": "0"}
        at.button(key="replay_start").click().run()
        assert not at.exception
        assert at.success[0].value == (
            "Service decisions started: it resumes from the group's committed offsets."
        )
        assert {s.name: s for s in services.status(settings)}["decisions"].alive
    finally:
        services.up(settings, ["decisions"])


def test_replay_page_rebuilds_the_projection_with_the_same_hash(pipeline):
    model = _read_model(pipeline.settings)
    at = _replay_page()
    at.button(key="rebuild_run").click().run(timeout=600)
    assert not at.exception
    # The reset section above may warn about a running group; the rebuild's verdict is a
    # success when equal, a warning starting "Differs" when not.
    said = [s.value for s in at.success] + [
        w.value for w in at.warning if w.value.startswith("Differs")
    ]
    assert len(said) == 1 and said[0].startswith(
        "Equal: replaying card-events from offset 0 gave the same read model"
    ), said
    table = _table(at, "rebuilt").set_index("")
    assert table["same"].all()
    live_hash = table.loc["content hash", "live"]
    assert live_hash == table.loc["content hash", "rebuilt"]
    assert re.fullmatch(r"[0-9a-f]{64}", live_hash)
    assert [c.value for c in at.code][-2:] == [live_hash, live_hash]
    shown = int(table.loc["cards", "live"])
    assert 0 < shown <= model.counts().cards


def test_events_and_replay_pages_say_how_to_create_a_missing_read_model(
    lab_topics, monkeypatch, tmp_path
):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    missing = f"There is no card read model at {tmp_path}"
    at = AppTest.from_file(HOME, default_timeout=60)
    at.switch_page("views/events.py").run()
    assert not at.exception and not at.error
    info = [i.value for i in at.info]
    assert info[0].startswith(missing) and "start the card projection" in info[0]
    assert "No week-4 service has run yet: start them with `rtml services up`." in info
    assert any(i.startswith(missing) and "The trace starts from" in i for i in info)
    assert "rtml cards projections" in at.code[0].value

    at = _replay_page()
    assert not at.error
    assert any(i.value.startswith(missing) for i in at.info)
    assert any("rtml cards projections" in c.value for c in at.code)
    assert not [b for b in at.button if b.key == "rebuild_run"]


@pytest.mark.parametrize("page", ["events", "replay"])
def test_events_and_replay_pages_on_a_stopped_cluster_say_how_to_start_it(
    page, monkeypatch, tmp_path
):
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    at = AppTest.from_file(HOME, default_timeout=30)
    at.switch_page(f"views/{page}.py")
    started = time.monotonic()
    at.run()
    assert not at.exception
    # One error, not one per section, and no section waits out its own timeout.
    assert [e.value for e in at.error] == [
        "No broker answers at 127.0.0.1:1: check RTML_BOOTSTRAP_SERVERS and the security settings."
    ]
    assert any("rtml services up" in c.value for c in at.code)
    assert time.monotonic() - started < 15


# --- Chaos ------------------------------------------------------------------------------------


def test_chaos_page_on_a_stopped_cluster_says_how_to_start_it(monkeypatch, tmp_path, free_base):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    monkeypatch.setenv("RTML_KAFKA_PORT", str(free_base))  # nothing listens there
    at = AppTest.from_file(HOME, default_timeout=30)
    at.switch_page("views/chaos.py").run()
    assert not at.exception
    assert "What to notice" in at.caption[0].value
    assert len(at.error) == 1 and "rtml cluster up" in at.code[0].value
    assert not [b for b in at.button if b.key == "chaos_run"]
    assert "No scenario has run yet in this control room." in [c.value for c in at.caption]


def test_chaos_page_offers_nothing_against_an_external_cluster(monkeypatch, tmp_path):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    monkeypatch.setenv("RTML_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.switch_page("views/chaos.py").run()
    assert not at.exception and not at.error
    assert at.info[0].value.startswith("Scenarios kill processes of a local cluster rtml started")
    assert not [b for b in at.button if b.key == "chaos_run"]


def test_chaos_page_lists_every_scenario_with_its_default_size(lab_topics):
    from rtml.chaos.scenarios import SCENARIOS

    at = AppTest.from_file(HOME, default_timeout=60)
    at.switch_page("views/chaos.py").run()
    assert not at.exception and not at.error
    picker = at.selectbox(key="chaos_scenario")
    assert picker.options == [f"{s.name}: {s.summary}" for s in SCENARIOS]
    for s in [*SCENARIOS[1:], SCENARIOS[0]]:
        at.selectbox(key="chaos_scenario").set_value(s.name).run()
        assert not at.exception
        assert at.number_input(key="chaos_records").value == s.records
        assert at.number_input(key="chaos_rate").value == int(s.rate or 0)


def test_chaos_page_shows_a_pipeline_scenarios_verdict_sentence(monkeypatch, tmp_path, free_base):
    """A finished serve-kill run (a made-up result, put where the page finds the last run)
    shows its own sentence, the duplicates row allowed and the time to resume."""
    import sys

    from rtml.chaos import ChaosResult, Check, Event, Resume, Verdict
    from rtml.config import Settings

    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    monkeypatch.setenv("RTML_KAFKA_PORT", str(free_base))  # nothing listens there
    monkeypatch.syspath_prepend(str(Path(HOME).parent))
    resources = __import__("resources")
    said = (
        "3,000 features records, 3,000 with a prediction, 0 lost; 343 scored twice "
        "(at-least-once: allowed, each copy with the same score); predictions resumed 8.0 s "
        "after the SIGKILL."
    )
    result = ChaosResult(
        scenario="serve-kill",
        topic="chaos-serve-kill-x.features",
        rate=300.0,
        produced=3000,
        seconds=22.1,
        verdict=Verdict(3000, 3000, 0, 343, 0, 0, duplicates_allowed=True),
        checks=(Check("predictions resumed after the restart", True, "after 7.98 s"),),
        resumes=(Resume("SIGKILL the prediction service", 7.98),),
        timeline=(Event(13.3, "step", "SIGKILL the prediction service (pid 1)"),),
        said=said,
    )
    job = resources.chaos_job(Settings.from_env().cluster_dir.as_posix())
    monkeypatch.setattr(job, "scenario", "serve-kill")
    monkeypatch.setattr(job, "result", result)
    assert sys.modules["resources"] is resources
    at = AppTest.from_file(HOME, default_timeout=30)
    at.switch_page("views/chaos.py").run()
    assert not at.exception
    assert [s.value for s in at.success] == [f"Passed: {said}"]
    assert _metrics(at)["Duplicated"] == "343" and _metrics(at)["Time to resume"] == "7.98 s"
    verdict = _table(at, "records")
    assert ("duplicated (allowed, counted)", 343) in list(verdict.itertuples(index=False))
    assert ("duplicates that differ", 0) in list(verdict.itertuples(index=False))
