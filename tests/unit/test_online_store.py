"""The online store and the scoring endpoint without a broker: the late-record rule,
fingerprints, the request-time features and request validation."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier

from rtml.cli import main
from rtml.features.definitions import FEATURE_COLUMNS, MS_PER_DAY
from rtml.model.update import ModelUpdate, Scorer
from rtml.serve.http import check_bindable, create_app
from rtml.serve.request_features import request_features
from rtml.serve.store import OnlineStore, OnlineStoreError, record_columns

T0 = 1_530_000_000_000  # 2018-06-26 08:00 UTC, a Tuesday
MODEL_COLUMNS = ("tx_amount", "customer_nb_tx_1d", "terminal_risk_7d")


def record(tx: int, customer: int, terminal: int, ts: int, **values: float) -> dict:
    """A features record as WireDeserializer returns it (times as aware datetimes)."""
    out = dict.fromkeys(record_columns(), 0)
    out.update(
        transaction_id=tx,
        customer_id=customer,
        terminal_id=terminal,
        tx_datetime=dt.datetime.fromtimestamp(ts / 1000, dt.UTC),
        feature_time=dt.datetime.fromtimestamp((ts + 5) / 1000, dt.UTC),
        tx_amount=float(tx),
        is_weekend=False,
        is_night=False,
        terminal_distance=float(customer + terminal),
        **{c: float(tx) for c in FEATURE_COLUMNS if c.startswith(("customer_avg", "terminal_r"))},
    )
    out.update(values)
    return out


@pytest.fixture()
def store(tmp_path) -> OnlineStore:
    return OnlineStore(tmp_path / "store.db")


def test_a_late_record_never_overwrites_a_newer_one_and_is_counted(store):
    store.apply([record(1, 7, 70, T0 + 1000)], {0: 1})
    result = store.apply([record(2, 7, 71, T0), record(1, 7, 70, T0 + 1000)], {0: 3})
    assert (result.late, result.duplicates) == (1, 1)
    kept = store.customer(7)
    assert kept["transaction_id"] == 1 and kept["tx_datetime"] == T0 + 1000
    # An older record of a terminal the store has not seen still sets that terminal.
    assert store.terminal(71)["transaction_id"] == 2
    # Same event time: the larger transaction id is the later one.
    store.apply([record(3, 7, 70, T0 + 1000)], {0: 4})
    assert store.customer(7)["transaction_id"] == 3
    # Terminal 70 saw transaction 1 twice; that is the only stale terminal record.
    assert store.stats() == {
        "records": 4,
        "late": 1,
        "duplicates": 1,
        "terminal_stale": 1,
        "poison": 0,
    }
    assert store.offsets() == {0: 4}


def test_rows_and_offsets_commit_together_or_not_at_all(store):
    store.apply([record(1, 7, 70, T0)], {0: 1})
    before = store.fingerprint()
    broken = record(2, 8, 70, T0 + 1)
    broken["tx_amount"] = [1]  # SQLite cannot store it: fails after record 3 was written
    with pytest.raises(sqlite3.ProgrammingError):
        store.apply([record(3, 9, 70, T0 + 2), broken], {0: 3})
    assert store.fingerprint() == before
    assert store.offsets() == {0: 1}


def _history(seed: int) -> list[list[dict]]:
    """Per partition, records in each customer's order; terminals shared across partitions."""
    rng = random.Random(seed)
    parts: list[list[dict]] = [[] for _ in range(3)]
    for tx in range(300):
        customer = rng.randrange(20)
        ts = T0 + tx * 60_000 - rng.randrange(3) * 60_000  # some out of order
        parts[customer % 3].append(record(tx, customer, rng.randrange(8), ts))
    return parts


def _interleave(parts: list[list[dict]], seed: int, batch: int) -> list[list[dict]]:
    rng = random.Random(seed)
    queues = [list(p) for p in parts]
    merged = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        merged += [queue.pop(0) for _ in range(min(len(queue), rng.randrange(1, 9)))]
    return [merged[i : i + batch] for i in range(0, len(merged), batch)]


def test_fingerprint_is_the_same_whatever_the_partitions_interleaving(tmp_path):
    parts = _history(seed=3)
    prints = set()
    for run, batch in enumerate((1, 7, 1000)):
        store = OnlineStore(tmp_path / f"run{run}.db")
        for i, chunk in enumerate(_interleave(parts, seed=run, batch=batch)):
            store.apply(chunk, {0: i})
        prints.add(store.fingerprint())
        pairs = {(r["customer_id"], r["terminal_id"]) for part in parts for r in part}
        assert store.counts() == {"customers": 20, "terminals": 8, "distances": len(pairs)}
    assert len(prints) == 1
    # And it does see content: one changed value gives another digest.
    store.apply([record(999, 1, 1, T0 + 10**9, customer_nb_tx_1d=42)], {0: 99})
    assert store.fingerprint() not in prints


def test_every_table_holds_the_newest_by_event_time(tmp_path):
    store = OnlineStore(tmp_path / "s.db")
    for chunk in _interleave(_history(seed=5), seed=1, batch=10):
        store.apply(chunk, {})
    everything = [r for part in _history(seed=5) for r in part]
    for customer in range(20):
        mine = [r for r in everything if r["customer_id"] == customer]
        newest = max(mine, key=lambda r: (r["tx_datetime"], r["transaction_id"]))
        assert store.customer(customer)["transaction_id"] == newest["transaction_id"]
    for terminal in range(8):
        mine = [r for r in everything if r["terminal_id"] == terminal]
        newest = max(mine, key=lambda r: (r["tx_datetime"], r["transaction_id"]))
        assert store.terminal(terminal)["transaction_id"] == newest["transaction_id"]


def _stored(store: OnlineStore, customer: int = 7, terminal: int = 70):
    return store.customer(customer), store.terminal(terminal), store.distance(customer, terminal)


def test_request_features_are_exact_where_the_store_allows(store):
    store.apply([record(1, 7, 70, T0, customer_nb_tx_1d=3, customer_avg_amount_1d=10.0)], {0: 1})
    customer, terminal, distance = _stored(store)
    # Same event time as the stored record: its window plus this transaction, exactly.
    same = request_features(2, T0, 30.0, customer, terminal, distance, now_ms=T0 + 50)
    assert same.values["customer_nb_tx_1d"] == 4
    assert same.values["customer_avg_amount_1d"] == pytest.approx(15.0)
    assert same.approximate == [] and same.unavailable == []
    assert same.customer_age_ms == 45 and same.values["terminal_distance"] == 77.0
    # Half a day later: the count is an upper bound (expired ones are unknowable).
    later = request_features(3, T0 + MS_PER_DAY // 2, 30.0, customer, terminal, None, T0)
    assert later.values["customer_nb_tx_1d"] == 4
    assert "customer_nb_tx_1d" in later.approximate and "terminal_risk_1d" in later.approximate
    assert later.unavailable == ["terminal_distance"]
    # Two days later: the 1-day window holds this transaction alone, exactly.
    gone = request_features(4, T0 + 2 * MS_PER_DAY, 30.0, customer, terminal, None, T0)
    assert (gone.values["customer_nb_tx_1d"], gone.values["customer_avg_amount_1d"]) == (1, 30.0)
    assert "customer_nb_tx_1d" not in gone.approximate
    assert "customer_nb_tx_7d" in gone.approximate
    # The stored transaction itself: its own streamed features.
    own = request_features(1, T0, 1.0, customer, terminal, distance, T0)
    assert own.values["customer_nb_tx_1d"] == 3 and own.approximate == []


def test_unknown_customer_and_terminal_are_flagged():
    out = request_features(1, T0, 12.5, None, None, None, now_ms=T0)
    assert not out.customer_known and not out.terminal_known
    assert out.values["customer_nb_tx_30d"] == 1
    assert out.values["customer_avg_amount_30d"] == 12.5
    assert out.values["terminal_nb_tx_7d"] == 0 and out.values["terminal_risk_7d"] == 0.0
    assert out.customer_age_ms is None and out.values["is_weekend"] is False


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    rng = np.random.default_rng(1)
    rows = rng.random((300, len(MODEL_COLUMNS)), dtype=np.float32) * [500, 10, 1]
    labels = (rows[:, 0] > 300).astype(int)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(rows, labels)
    graph = to_onnx(model, rows[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    return Scorer.load(
        ModelUpdate("fraud", "unit-1", MODEL_COLUMNS, 0.3, 0.7, graph.SerializeToString())
    )


class _Models:
    def __init__(self, scorer: Scorer | None) -> None:
        self.scorer = scorer
        self.error = None

    def current(self) -> Scorer | None:
        return self.scorer


GOOD = {
    "transaction_id": 10,
    "customer_id": 7,
    "terminal_id": 70,
    "tx_amount": 450.0,
    "tx_datetime": "2018-06-26T08:00:00Z",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tx_amount": -1}, "tx_amount"),
        ({"tx_amount": "nan"}, "tx_amount"),
        ({"customer_id": "seven"}, "customer_id"),
        ({"tx_datetime": "last tuesday"}, "tx_datetime"),
        ({"terminal_id": None}, "terminal_id"),
        ({"shoe_size": 42}, "shoe_size"),
    ],
)
def test_a_bad_request_gets_422_with_one_sentence(store, scorer, change, field):
    client = TestClient(create_app(store, _Models(scorer)))
    response = client.post("/score", json={**GOOD, **change})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("Invalid request: ") and field in detail and "\n" not in detail


def test_missing_fields_and_broken_json_are_422_too(store, scorer):
    client = TestClient(create_app(store, _Models(scorer)))
    missing = client.post("/score", json={"transaction_id": 1})
    assert missing.status_code == 422 and "tx_amount" in missing.json()["detail"]
    broken = client.post(
        "/score", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422


def test_score_uses_the_store_and_says_what_it_used(store, scorer):
    store.apply([record(1, 7, 70, T0, customer_nb_tx_1d=2, terminal_risk_7d=0.5)], {0: 1})
    client = TestClient(create_app(store, _Models(scorer)))
    body = client.post("/score", json=GOOD).json()
    assert body["model_version"] == "unit-1" and body["customer_known"] is True
    assert body["features"] == {
        "tx_amount": 450.0,
        "customer_nb_tx_1d": 3,
        "terminal_risk_7d": 0.5,
    }
    rows = np.array([[450.0, 3, 0.5]], dtype=np.float32)
    assert body["score"] == pytest.approx(float(scorer.score(rows)[0]))
    assert body["decision"] == scorer.update.decide(scorer.score(rows))[0]
    assert body["approximate"] == [] and body["latency_ms"] > 0
    unknown = client.post("/score", json={**GOOD, "customer_id": 8, "terminal_id": 80}).json()
    assert unknown["customer_known"] is False and unknown["terminal_known"] is False
    assert unknown["features"]["customer_nb_tx_1d"] == 1


def test_no_model_is_503_and_unknown_customer_404(store):
    client = TestClient(create_app(store, _Models(None)))
    response = client.post("/score", json=GOOD)
    assert response.status_code == 503 and "No version of model fraud" in response.json()["detail"]
    assert client.get("/features/12345").status_code == 404
    assert client.get("/features/abc").status_code == 422
    health = client.get("/health").json()
    assert health["ready"] is False and health["model"]["version"] is None


def test_only_loopback_is_served():
    with pytest.raises(OnlineStoreError, match=r"binds 127\.0\.0\.1 only"):
        check_bindable("0.0.0.0", 8600)


def test_cli_refuses_other_hosts_and_missing_stores(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    assert main(["online", "serve", "--host", "0.0.0.0"]) == 2
    assert "binds 127.0.0.1 only" in capsys.readouterr().err
    assert main(["online", "show", "7", "--name", "nothing"]) == 2
    assert "There is no online store nothing yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["online", "rebuild", "--from-timestamp", "last week"])
    assert "not an ISO 8601 time" in capsys.readouterr().err
