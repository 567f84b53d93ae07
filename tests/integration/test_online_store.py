"""The online store and the scoring endpoint on the live cluster.

Feature records are written straight to a fresh `features` topic (no feature app), so the
test knows exactly which record is the newest of each customer and terminal. The HTTP
server runs as `rtml online serve` in a child process, as a learner starts it.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier

from rtml.clients import durable_producer
from rtml.cluster.ports import free_base_port
from rtml.config import Settings
from rtml.dlq import dlq_topic, read_origin
from rtml.features.definitions import FEATURE_COLUMNS, MS_PER_DAY
from rtml.features.outputs import read_records
from rtml.features.runner import fresh_topics
from rtml.model.update import MODEL_NAME, ModelUpdate
from rtml.poll import until
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer
from rtml.serve.http import measure
from rtml.serve.store import OnlineStore, OnlineStoreError, following, rebuild

pytestmark = pytest.mark.slow
T0 = 1_525_132_800_000  # 2018-05-01 00:00 UTC
CUT = T0 + 5 * MS_PER_DAY
MODEL_COLUMNS = ("tx_amount", "customer_nb_tx_1d", "terminal_risk_7d")


def _record(tx: int, customer: int, terminal: int, ts: int) -> dict:
    out = {c: 0.0 for c in FEATURE_COLUMNS}
    out.update(
        transaction_id=tx,
        tx_datetime=ts,
        customer_id=customer,
        terminal_id=terminal,
        tx_amount=10.0 + tx % 97,
        is_weekend=False,
        is_night=False,
        terminal_distance=float(abs(customer - terminal)),
        feature_time=int(time.time() * 1000),
        **{f"customer_nb_tx_{d}d": tx % 5 + 1 for d in (1, 7, 30)},
        **{f"terminal_nb_tx_{d}d": tx % 3 for d in (1, 7, 30)},
    )
    return out


def _produce(settings: Settings, items: list[tuple[bytes, bytes, int]]) -> None:
    producer = durable_producer(settings)
    for key, value, ts in items:
        producer.produce("features", value, key, timestamp=ts)
    assert producer.flush(60) == 0


@pytest.fixture(scope="module")
def history(cluster_settings) -> tuple[Settings, list[dict]]:
    """30 customers with a transaction a day for 8 days (customers 0-9 only the first 4),
    then a late record (older event time) and a poison record."""
    settings = cluster_settings
    fresh_topics(settings, ["features", "model-updates", dlq_topic("serve")])
    register_all(settings)
    serialize = PreparedSerializer.for_topic(settings, "features")
    records, tx = [], 0
    for day in range(8):
        for customer in range(30):
            if customer < 10 and day >= 4:
                continue
            records.append(_record(tx, customer, customer % 12, T0 + day * MS_PER_DAY + tx))
            tx += 1
    late = _record(tx, 11, 5, T0 + 3600_000)  # older than customer 11's newest
    items = [(str(r["customer_id"]).encode(), serialize(r), r["tx_datetime"]) for r in records]
    items.append((b"11", serialize(late), late["tx_datetime"]))
    items.append((b"3", b"not avro at all", T0))
    _produce(settings, items)
    return settings, [*records, late]


def _newest(records: list[dict], key: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for r in records:
        best = out.get(r[key])
        if best is None or (r["tx_datetime"], r["transaction_id"]) > (
            best["tx_datetime"],
            best["transaction_id"],
        ):
            out[r[key]] = r
    return out


@pytest.fixture(scope="module")
def first_build(history) -> OnlineStore:
    """The store built by the follower (the way `rtml online serve` builds it)."""
    settings, _ = history
    with following(settings, "first") as follower:
        until(
            lambda: follower.caught_up.is_set() or follower.error,
            90,
            "the online store to catch up with the features topic",
        )
        assert follower.error is None
    return OnlineStore.open(settings, "first")


def test_the_store_holds_the_newest_record_of_each_customer_and_terminal(history, first_build):
    settings, records = history
    store = first_build
    for customer, expected in _newest(records, "customer_id").items():
        row = store.customer(customer)
        assert row["transaction_id"] == expected["transaction_id"], customer
        assert row["customer_nb_tx_7d"] == expected["customer_nb_tx_7d"]
    for terminal, expected in _newest(records, "terminal_id").items():
        assert store.terminal(terminal)["transaction_id"] == expected["transaction_id"]
    assert store.counts()["customers"] == 30 and store.counts()["terminals"] == 12
    stats = store.stats()
    assert (stats["records"], stats["late"], stats["poison"]) == (len(records), 1, 1)
    # The late record was applied nowhere: customer 11 keeps its newest transaction.
    assert store.customer(11)["tx_datetime"] > T0 + 3600_000
    # The poison record went to serve.dlq, with where it came from.
    dead = read_records(settings, dlq_topic("serve"), timeout=30)
    assert len(dead) == 1 and dead[0].value() == b"not avro at all"
    origin = read_origin(dead[0].headers())
    assert origin["topic"] == "features" and origin["stage"] == "serve"
    # The offsets stored with the rows are the end of every partition.
    assert sum(store.offsets().values()) == len(records) + 1


def test_rebuild_from_offset_zero_is_identical(history, first_build):
    settings, _ = history
    again = rebuild(settings, "again")
    assert again.fingerprint() == first_build.fingerprint()
    assert again.offsets() == first_build.offsets()
    assert again.stats()["late"] == 1 and again.stats()["poison"] == 1
    # A second rebuild of the same name starts from an empty file, not on top of the first.
    assert rebuild(settings, "again").fingerprint() == first_build.fingerprint()


def test_rebuild_from_a_timestamp_holds_only_the_later_rows(history, first_build):
    settings, records = history
    later = rebuild(settings, "later", from_timestamp=CUT)
    assert later.counts()["customers"] == 20  # customers 0-9 stopped before the cut
    for customer in range(30):
        row = later.customer(customer)
        if customer < 10:
            assert row is None
        else:
            assert row == first_build.customer(customer)
            assert row["tx_datetime"] >= CUT
    read = later.stats()["records"]
    assert read == sum(r["tx_datetime"] >= CUT for r in records) + 1  # + the late one
    assert later.fingerprint() != first_build.fingerprint()


def test_a_restarted_follower_resumes_where_its_commits_left_it(history, first_build):
    settings, _ = history
    serialize = PreparedSerializer.for_topic(settings, "features")
    before = first_build.stats()["records"]
    fresh = [_record(10_000 + i, 20 + i, 3, T0 + 9 * MS_PER_DAY + i) for i in range(5)]
    _produce(settings, [(str(r["customer_id"]).encode(), serialize(r), T0) for r in fresh])
    with following(settings, "first") as follower:
        until(lambda: follower.applied >= 5 and follower.caught_up.is_set(), 90, "5 new records")
        assert follower.error is None
    store = OnlineStore.open(settings, "first")
    assert store.stats()["records"] == before + 5  # nothing read twice, nothing skipped
    assert store.customer(22)["transaction_id"] == 10_002


def test_a_second_writer_of_the_same_store_is_refused(history):
    settings, _ = history
    with following(settings, "locked"), pytest.raises(OnlineStoreError, match="written by another"):
        rebuild(settings, "locked")


def _model(version: str, threshold: float) -> ModelUpdate:
    rng = np.random.default_rng(3)
    rows = (rng.random((300, 3)) * [120, 6, 1]).astype(np.float32)
    labels = (rows[:, 0] > 90).astype(int)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(rows, labels)
    graph = to_onnx(forest, rows[:1], options={id(forest): {"zipmap": False}})
    return ModelUpdate(
        MODEL_NAME, version, MODEL_COLUMNS, threshold, 0.9, graph.SerializeToString()
    )


def _publish(settings: Settings, update: ModelUpdate) -> None:
    serialize = PreparedSerializer.for_topic(settings, "model-updates")
    producer = durable_producer(settings, message_max_bytes=17 * 1024 * 1024)
    producer.produce("model-updates", serialize(update.to_record()), MODEL_NAME.encode())
    assert producer.flush(60) == 0


@pytest.fixture()
def server(history) -> Iterator[str]:
    """`rtml online serve` on a free port below 32768, stopped (and checked) afterwards."""
    settings, _ = history
    _publish(settings, _model("it-1", 0.5))
    port = free_base_port(1)
    log = settings.cluster_dir / "online-store" / "serve-test.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtml",
                "online",
                "serve",
                "--port",
                str(port),
                "--name",
                "http",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **settings.to_env()},
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()["ready"]
        except httpx.HTTPError:
            return False

    try:
        until(ready, 90, "the scoring endpoint to be ready")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


def test_score_over_http_with_the_published_model(history, server):
    settings, records = history
    newest = _newest(records, "customer_id")[15]
    tx = {
        "transaction_id": 99_999,
        "customer_id": 15,
        "terminal_id": newest["terminal_id"],
        "tx_amount": 115.0,
        "tx_datetime": dt.datetime.fromtimestamp(newest["tx_datetime"] / 1000, dt.UTC).isoformat(),
    }
    body = httpx.post(f"{server}/score", json=tx, timeout=10).json()
    assert body["model_version"] == "it-1" and body["customer_known"] is True
    # Same event time as the stored record: the windows are exact, this transaction added.
    assert body["features"]["customer_nb_tx_1d"] == newest["customer_nb_tx_1d"] + 1
    # The terminal's windows are exact only if its newest record is at this same time.
    terminal = _newest(records, "terminal_id")[newest["terminal_id"]]
    same_time = terminal["tx_datetime"] == newest["tx_datetime"]
    assert body["approximate"] == ([] if same_time else ["terminal_risk_7d"])
    assert body["decision"] in ("APPROVE", "REVIEW", "DECLINE")
    assert 0.0 <= body["score"] <= 1.0
    bad = httpx.post(f"{server}/score", json={**tx, "tx_amount": -5}, timeout=10)
    assert bad.status_code == 422 and "tx_amount" in bad.json()["detail"]
    shown = httpx.get(f"{server}/features/15", timeout=10).json()
    assert shown["transaction_id"] == newest["transaction_id"]
    health = httpx.get(f"{server}/health", timeout=10).json()
    assert health["store"]["lag_total"] == 0 and health["model"]["version"] == "it-1"

    # A new version is picked up while the server runs.
    _publish(settings, _model("it-2", 0.2))
    until(
        lambda: httpx.get(f"{server}/health", timeout=5).json()["model"]["version"] == "it-2",
        60,
        "the server to load version it-2",
    )
    assert httpx.post(f"{server}/score", json=tx, timeout=10).json()["model_version"] == "it-2"

    # Request/response latency over one keep-alive connection, on this busy machine.
    payloads = [
        {**tx, "transaction_id": 200_000 + i, "customer_id": 10 + i % 20, "tx_amount": i % 300}
        for i in range(1000)
    ]
    latency = measure(f"{server}/score", payloads)
    print(f"\nPOST /score, {latency.line()}")
    assert latency.n == 1000 and latency.server_p50 <= latency.p50 < 50
