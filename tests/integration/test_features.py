"""The feature app on the live cluster: stream == batch, crash recovery, poison input.

The app runs as `rtml features run` in a subprocess, as in the lab. This module starts
from empty input and output topics (deleted and created again), so the features topic holds
exactly what the app wrote here.
"""

from __future__ import annotations

import dataclasses
import io
import json
import signal
import struct
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_writer

from rtml.asa.compare import EXPLAINED, compare, late_in_repartition, quix_windows, summary
from rtml.asa.query import load_job
from rtml.clients import admin
from rtml.dlq import read_origin
from rtml.features.batch import batch_features
from rtml.features.definitions import FEATURE_COLUMNS
from rtml.features.labels import to_millis
from rtml.features.outputs import read_features, read_records
from rtml.features.runner import PIPELINE_TOPICS, FeatureRun, count_records, fresh_topics
from rtml.features.windows import GRACE, read_windows
from rtml.poll import until
from rtml.schemas import load_schema, register_all, registry_client
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.generator import make_labels
from rtml.simulate.producer import publish_reference, replay

pytestmark = pytest.mark.slow
INPUTS = ("transactions", "customers", "terminals", "labels")
H = 3_600_000
M = 60_000
COLUMNS = [*FEATURE_COLUMNS, "terminal_distance"]


def _assert_equal(stream: pd.DataFrame, batch: pd.DataFrame) -> None:
    stream = stream.set_index("transaction_id").sort_index()
    assert stream.index.equals(batch.index)
    for column in COLUMNS:
        left, right = stream[column].to_numpy(), batch[column].to_numpy()
        if right.dtype.kind == "f":
            np.testing.assert_allclose(
                left.astype(float), right, rtol=1e-9, atol=1e-9, err_msg=column
            )
        else:
            np.testing.assert_array_equal(left, right, err_msg=column)


def _with_edges(sim):
    """`sim` with one customer's hand-placed payments added (ids after the last), at the
    places where ASA's windows and Quix's differ: one on an hour boundary, one exactly an
    hour after it, and a chatty stretch (every 20 min for 5 h) longer than ASA's maximum
    session duration."""
    tx = sim.transactions
    customer = int(tx["customer_id"].value_counts().idxmax())
    template = tx[tx["customer_id"] == customer].iloc[0]
    # Day 3 at 04:00 (an hour boundary, and a multiple of 2 h, where ASA checks sessions).
    t0 = sim.params.start_ms + 2 * 86_400_000 + 4 * H
    stamps = [t0, t0 + H, t0 + 70 * M] + [t0 + 3 * H + 20 * M * i for i in range(16)]
    extra = pd.DataFrame([template] * len(stamps)).reset_index(drop=True)
    first = int(tx["transaction_id"].max()) + 1
    extra["transaction_id"] = range(first, first + len(stamps))
    extra["event_time_ms"] = stamps
    extra["tx_datetime"] = pd.to_datetime(stamps, unit="ms")
    extra["tx_amount"] = [20.0 + i for i in range(len(stamps))]
    extra["tx_fraud"] = 0
    extra["tx_fraud_scenario"] = 0
    both = pd.concat([tx, extra], ignore_index=True).sort_values("event_time_ms", kind="mergesort")
    both = both.reset_index(drop=True)
    labels = make_labels(both, sim.params.label_delay_days)
    return dataclasses.replace(sim, transactions=both, labels=labels), customer


@pytest.fixture(scope="module")
def history(cluster_settings):
    """A 45-day history (every window fills) replayed into fresh topics."""
    settings = cluster_settings
    fresh_topics(settings, PIPELINE_TOPICS)
    register_all(settings)
    sim, edge_customer = _with_edges(
        simulate(SimulationParams(n_customers=70, n_terminals=140, n_days=45, seed=21))
    )
    publish_reference(settings, sim)
    report = replay(settings, sim, progress=False)
    assert report.ok
    batch = batch_features(sim.transactions, sim.labels, sim.customers, sim.terminals)
    return settings, sim, batch, edge_customer


@pytest.fixture()
def fresh_features(history) -> Iterator[None]:
    settings = history[0]
    fresh_topics(settings, [t for t in PIPELINE_TOPICS if t not in INPUTS])
    yield


@dataclasses.dataclass
class Uninterrupted:
    """What one uninterrupted run of the app wrote, read before later tests empty it."""

    group: str
    features: pd.DataFrame
    keys_match: bool
    changelog_rfs: list[int]
    expected_rf: int
    labelled: list[dict]
    windows: list
    repartition: str
    by_terminal: list


@pytest.fixture(scope="module")
def uninterrupted(history) -> Uninterrupted:
    settings, sim, _batch, _ = history
    fresh_topics(settings, [t for t in PIPELINE_TOPICS if t not in INPUTS])
    n = len(sim.transactions)
    with FeatureRun(settings) as app:
        app.wait_for("features", n, timeout=600)
        # The last week's labels come after the last transaction.
        app.wait_for("transactions.labelled", n, timeout=120)
        # Window results go out as the app processes; wait until the topic stops growing.
        seen = [-1]

        def settled() -> bool:
            now = count_records(settings, "windows")
            done = now == seen[0] and now > 0
            seen[0] = now
            return done

        until(settled, 120, "the windows topic to stop growing", interval=2.0)
    decode = WireDeserializer.for_topic(settings, "features")
    keys_match = all(
        msg.key() == str(decode(msg.value())["customer_id"]).encode()
        for msg in read_records(settings, "features")
    )
    meta = admin(settings, timeout=10).list_topics(timeout=10).topics
    changelogs = [t for name, t in meta.items() if name.startswith(f"changelog__{app.group}")]
    prefix = f"repartition__{app.group}"
    repartition = [name for name in meta if name.startswith(prefix) and "by-terminal" in name]
    assert len(repartition) == 1, sorted(meta)
    return Uninterrupted(
        group=app.group,
        features=read_features(settings),
        keys_match=keys_match,
        changelog_rfs=[len(t.partitions[0].replicas) for t in changelogs],
        expected_rf=min(3, len(meta["transactions"].partitions[0].replicas)),
        labelled=[json.loads(m.value()) for m in read_records(settings, "transactions.labelled")],
        windows=list(read_records(settings, "windows")),
        repartition=repartition[0],
        by_terminal=list(read_records(settings, repartition[0])),
    )


def test_stream_equals_batch_for_every_transaction_and_feature(history, uninterrupted) -> None:
    settings, sim, batch, _ = history
    n = len(sim.transactions)
    run = uninterrupted
    assert len(run.features) == n, "an uninterrupted run writes each transaction's features once"
    assert run.keys_match, "features are keyed by customer id"
    _assert_equal(run.features, batch)
    # State is backed by changelog topics replicated like the input (RF 3 on this cluster).
    assert run.changelog_rfs, "the customer windows and joins keep state in changelog topics"
    assert all(rf == run.expected_rf for rf in run.changelog_rfs)
    # The stream-stream join paired every transaction with its label, days later.
    truth = sim.transactions.set_index("transaction_id")["tx_fraud"]
    assert sorted(r["transaction_id"] for r in run.labelled) == sorted(truth.index)
    assert all(r["tx_fraud"] == bool(truth[r["transaction_id"]]) for r in run.labelled)
    assert {r["label_delay_ms"] for r in run.labelled} == {7 * 86_400_000}
    # The live windows ran on the same stream: a busy customer has closed windows of
    # every kind, each within its bounds.
    busiest = int(sim.transactions["customer_id"].value_counts().idxmax())
    windows = read_windows(settings, busiest)
    assert {w["kind"] for w in windows} == {"tumbling", "hopping", "sliding", "session", "count"}
    assert all(w["start"] < w["end"] for w in windows)


@pytest.fixture(scope="module")
def asa(history, uninterrupted):
    """ASA's windows (modelled from the job in infra/asa) against the windows the run wrote."""
    _settings, sim, _batch, _ = history
    job = load_job()
    grace = int(GRACE.total_seconds() * 1000)
    # The terminal windows read the by-terminal repartition topic: what they skipped as late.
    spec = job.window("terminals")
    late = late_in_repartition(uninterrupted.by_terminal, spec.key, spec.size_ms, grace)
    quix = quix_windows(uninterrupted.windows)
    result = compare(job, sim.transactions, quix, grace, {"terminals": late})
    print("\n" + summary(result).to_string())
    return result


def test_asa_windows_match_quix_or_differ_for_a_named_reason(asa) -> None:
    unexplained = asa[~asa["status"].isin(EXPLAINED | {"open at end"})]
    assert unexplained.empty, unexplained.to_string()
    same = asa[asa["status"] == "same"].groupby("kind").size()
    for kind in ("tumbling", "hopping", "sliding", "session", "terminals"):
        assert same.get(kind, 0) > 0, f"no {kind} window agrees: the comparison is not matching"


def test_asa_and_quix_differ_on_the_hand_placed_payments(history, asa) -> None:
    customer = history[3]
    mine = asa[asa["key"] == customer]
    statuses = set(zip(mine["kind"], mine["status"], strict=True))
    # The payment on the hour boundary ends ASA's window and starts Quix's.
    assert ("tumbling", "ASA only: boundary") in statuses or (
        "tumbling",
        "differs: boundary",
    ) in statuses
    # The payment exactly an hour later: Quix's sliding window [t - 1 h, t] holds both.
    assert ("sliding", "differs: boundary") in statuses
    assert ("sliding", "ASA only: exit") in statuses
    # Five chatty hours: ASA cuts the session at a 2 h check, Quix keeps one session.
    assert ("session", "differs: max duration") in statuses


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_crash_mid_run_loses_nothing_and_changes_nothing(
    history, fresh_features, guarantee
) -> None:
    """SIGKILL mid-window, restart: deduplicated by transaction id, the output is exactly
    the uninterrupted one (which the test above proves equals the batch features). Under
    exactly-once, a read_committed reader sees no duplicate at all."""
    settings, sim, batch, _ = history
    n = len(sim.transactions)
    group = f"crash-{uuid.uuid4().hex[:6]}"
    with FeatureRun(settings, group=group, guarantee=guarantee) as first:
        first.wait_for("features", n // 3, timeout=600)
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=30) == -signal.SIGKILL
    # Offsets, not records: under exactly-once they include aborted writes and markers.
    killed_at = count_records(settings, "features")
    assert len(read_features(settings)) < n, "the crash should come before the end of the history"
    with FeatureRun(settings, group=group, guarantee=guarantee) as second:
        recovery = second.wait_for("features", killed_at + 1, timeout=300)
        # From the restart to the first new feature: start-up, state restored from the
        # changelog, labels re-read. Shown with -s; docs/architecture.md quotes it.
        print(f"\nfeature app recovery: {recovery:.1f} s to the first new record")
        # Every transaction id must arrive; replays after the crash may add duplicates.
        until(
            lambda: read_features(settings)["transaction_id"].nunique() == n or not second.running,
            600,
            "every transaction's features",
            interval=1.0,
        )
        assert second.running, second.output()
    stream = read_features(settings)
    duplicates = stream[stream.duplicated("transaction_id", keep=False)]
    if guarantee == "exactly-once":
        assert duplicates.empty, "aborted transactions must stay invisible to read_committed"
    # Reprocessed records give the same features as their first run (state was restored).
    for _, same in duplicates.groupby("transaction_id"):
        assert (same[COLUMNS].nunique(dropna=False) == 1).all()
    _assert_equal(stream.drop_duplicates("transaction_id"), batch)


def test_two_instances_share_the_partitions_and_the_work(history, fresh_features) -> None:
    """One group, two processes: each owns some of the 6 partitions, together they write
    every transaction's features once more than a rebalance may repeat, equal to the batch."""
    settings, sim, batch, _ = history
    n = len(sim.transactions)
    group = f"pair-{uuid.uuid4().hex[:6]}"
    client = admin(settings, timeout=10)

    def split() -> dict[str, int] | None:
        """Partitions of `transactions` per member, once both members own some."""
        members = client.describe_consumer_groups([group])[group].result().members
        owned = {
            m.group_instance_id: sum(
                1 for tp in m.assignment.topic_partitions if tp.topic == "transactions"
            )
            for m in members
        }
        return owned if len(owned) == 2 and all(owned.values()) else None

    with (
        FeatureRun(settings, group=group, instance="0") as first,
        FeatureRun(settings, group=group, instance="1") as second,
    ):
        owned = until(split, 300, "both instances to own partitions of transactions", 1.0)
        assert sorted(owned.values()) == [3, 3]
        until(
            lambda: (
                read_features(settings).get("transaction_id", pd.Series()).nunique() == n
                or not (first.running and second.running)
            ),
            600,
            "every transaction's features",
            interval=1.0,
        )
        assert first.running and second.running, first.output() + second.output()
    stream = read_features(settings)
    for _, same in stream[stream.duplicated("transaction_id", keep=False)].groupby(
        "transaction_id"
    ):
        assert (same[COLUMNS].nunique(dropna=False) == 1).all()
    _assert_equal(stream.drop_duplicates("transaction_id"), batch)


def _without_amount() -> dict:
    """The transaction schema minus tx_amount: records written with it cannot be read."""
    schema = json.loads(load_schema("transaction"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "tx_amount"]
    return schema


def test_poison_and_late_records_are_routed_and_counted(history, fresh_features) -> None:
    """in == out + dlq + late, and each rejected record says where it came from."""
    settings, sim, _, _ = history
    encode = PreparedSerializer.for_topic(settings, "transactions")
    last = sim.transactions.sort_values("event_time_ms").groupby("customer_id").last()
    customer = int(last.index[0])
    t_last = int(last.loc[customer, "event_time_ms"])
    next_id = int(sim.transactions["transaction_id"].max()) + 1
    now = int(time.time() * 1000)

    def tx(i: int, **change) -> dict:
        base = {
            "transaction_id": next_id + i,
            "tx_datetime": t_last + 1000 * (i + 1),
            "customer_id": customer,
            "terminal_id": int(last.loc[customer, "terminal_id"]),
            "tx_amount": 10.0,
        }
        return {**base, **change}

    schema = _without_amount()
    missing_id = registry_client(settings).register_schema(
        "rtml-test-poison-value", Schema(json.dumps(schema), "AVRO")
    )
    no_amount = parse_schema(schema)
    body = io.BytesIO()
    schemaless_writer(body, no_amount, {k: v for k, v in tx(9).items() if k != "tx_amount"})
    poison = {
        "garbage": b"\x13not avro at all",
        "unknown schema id": b"\x00" + struct.pack(">I", 987654) + b"\x02",
        "missing field": b"\x00" + struct.pack(">I", missing_id) + body.getvalue(),
        "negative amount": encode(tx(1, tx_amount=-5.0)),
        "nan amount": encode(tx(2, tx_amount=float("nan"))),
        "far future": encode(tx(3, tx_datetime=now + 3 * 86_400_000)),
    }
    valid = [encode(tx(i)) for i in range(4, 9)]
    late = [encode(tx(10, tx_datetime=t_last - 2 * 86_400_000))]
    # murmur2, like every rtml producer: the customer's records share its partition.
    producer = Producer(
        settings.client_config(acks="all", enable_idempotence=True, partitioner="murmur2_random")
    )
    key = str(customer).encode()
    for value in [*poison.values(), *valid, *late]:
        producer.produce("transactions", value, key)
    assert producer.flush(30) == 0

    total_in = len(sim.transactions) + len(poison) + len(valid) + len(late)
    with FeatureRun(settings, group=f"poison-{uuid.uuid4().hex[:6]}") as app:
        app.wait_for("features", len(sim.transactions) + len(valid), timeout=600)
        app.wait_for("features.dlq", len(poison), timeout=60)
        app.wait_for("transactions.late", len(late), timeout=60)
    # Records, not offsets: a topic's offsets may include markers no consumer sees.
    out = len(read_records(settings, "features"))
    dlq = read_records(settings, "features.dlq")
    late_records = read_records(settings, "transactions.late")
    assert total_in == out + len(dlq) + len(late_records)
    assert sorted(m.value() for m in dlq) == sorted(poison.values())
    for msg in dlq:
        origin = read_origin(msg.headers())
        assert origin["topic"] == "transactions"
        assert origin["stage"] == "features"
        assert int(origin["offset"]) >= 0 and origin["group"].startswith("poison-")
        assert origin["error"], "the DLQ record says why it was rejected"
        assert msg.key() == key
    assert late_records[0].value() == late[0]
    assert read_origin(late_records[0].headers())["error"].startswith("late by")


def test_a_group_started_at_latest_joins_whole_tables_with_fresh_features(
    history, fresh_features
) -> None:
    """`--start latest`: only transactions from now on, joined with the whole customer and
    terminal tables, and each transaction's features out well within a second.

    Two past faults this guards against: the group's "latest" applied to the tables too,
    which left them empty and stalled the app; and each hop waiting out Quix's 1 s poll
    timeout, which made features seconds old at lab rates.
    """
    settings, sim, _, _ = history
    encode = PreparedSerializer.for_topic(settings, "transactions")
    decode = WireDeserializer.for_topic(settings, "features")
    client = admin(settings, timeout=10)
    first_id = int(sim.transactions["transaction_id"].max()) + 1_000
    rows = sim.transactions.sample(41, random_state=3).reset_index(drop=True)
    producer = Producer(
        settings.client_config(acks="all", linger_ms=0, partitioner="murmur2_random")
    )

    def send(i: int) -> None:
        row = rows.iloc[i]
        value = {
            "transaction_id": first_id + i,
            "tx_datetime": int(time.time() * 1000),
            "customer_id": int(row["customer_id"]),
            "terminal_id": int(row["terminal_id"]),
            "tx_amount": float(row["tx_amount"]),
        }
        producer.produce("transactions", encode(value), str(value["customer_id"]).encode())
        assert producer.flush(10) == 0

    group = f"latest-{uuid.uuid4().hex[:6]}"
    with FeatureRun(settings, group=group, start="latest") as app:

        def placed() -> bool:
            offsets = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[
                group
            ]
            offsets = offsets.result()
            mine = [tp for tp in offsets.topic_partitions if tp.topic == "transactions"]
            return len(mine) == 6 and all(tp.offset >= 0 for tp in mine)

        until(lambda: placed() or not app.running, 120, "the group's start at the end")
        assert app.running, app.output()
        send(0)  # the first one waits for the group to form; the rest are timed
        app.wait_for("features", 1, timeout=120)
        for i in range(1, len(rows)):
            send(i)
            time.sleep(0.1)  # a live trickle, 10 transactions/s
        app.wait_for("features", len(rows), timeout=60)
    records = read_records(settings, "features")
    values = [decode(m.value()) for m in records]
    assert sorted(v["transaction_id"] for v in values) == [first_id + i for i in range(len(rows))]
    assert all(v["terminal_distance"] is not None for v in values), "tables read whole"
    ages = sorted(
        to_millis(v["feature_time"]) - m.timestamp()[1]
        for m, v in zip(records, values, strict=True)
        if v["transaction_id"] != first_id
    )
    median = ages[len(ages) // 2]
    print(f"\nfeature freshness at 10 tx/s: median {median} ms, max {ages[-1]} ms")
    assert median < 1000, f"features took {median} ms (median) at 10 tx/s"
