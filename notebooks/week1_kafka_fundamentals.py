# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Week 1: Kafka fundamentals
#
# This week you meet the log that the whole fraud system stands on. Everything here runs
# against the real 3-node cluster that `make lab` started (or the throw-away one of
# `make test`): brokers, a KRaft controller, replicated partitions, a schema registry.
#
# You will:
# 1. look at the cluster's architecture live: brokers, the controller, partitions, ISR;
# 2. create the system's topics from a catalogue and see why each is keyed as it is;
# 3. register Avro schemas and evolve one without breaking consumers (**exercise**);
# 4. choose a record key and see the partition skew different keys cause (**exercise**);
# 5. measure what durability costs a producer, and tune one to be durable and fast
#    (**exercise**);
# 6. crash consumers to see at-most-once and at-least-once with your own eyes;
# 7. run the transaction simulator that feeds the whole course: replay a history in event
#    time, load the reference data, emit live at a fixed rate;
# 8. move data in and out of Kafka without writing a client: Kafka Connect;
# 9. answer "my consumers are lagging, how do I diagnose and fix it?" (**exercise**: the lag
#    of one partition).
#
# Exercises live in `labs/week1/`; run the system on your code with `impl = "labs"` below
# (or `RTML_IMPL=labs`), and grade them with `make grade WEEK=1`.
#
# Read more: [pub/sub and consumer groups](../docs/patterns/pub-sub-consumer-groups.md),
# [partitioning and ordering](../docs/patterns/partitioning-ordering.md),
# [schema evolution](../docs/patterns/schema-evolution.md),
# [consumer lag runbook](../docs/runbooks/consumer-lag.md),
# [Kafka architecture explained](../docs/writeups/kafka-architecture-explained.md).

# %% tags=["parameters"]
impl = "solutions"  # "labs" runs your own exercise code
n_records = 20_000  # records per producer measurement
record_bytes = 200  # payload size of the measurement records
# The simulated history (the handbook's dataset is 5,000 customers, 10,000 terminals, 183 days).
n_customers = 2000
n_terminals = 4000
n_days = 92
live_rate = 200  # transactions per second in the live-mode demo
live_seconds = 3.0
n_lag = 4000  # records in the lag diagnosis

# %%
import os
import time
import uuid

import pandas as pd
import plotly.express as px

os.environ["RTML_IMPL"] = impl

from rtml.cluster import get_status  # noqa: E402
from rtml.config import Settings  # noqa: E402

settings = Settings.from_env()
print("cluster:", settings.bootstrap)
print("registry:", settings.registry_url)
print("implementation:", impl)

# %% [markdown]
# ## 1. Architecture: brokers, controller, partitions, replicas
#
# A Kafka cluster is a set of **brokers** that store **partitions**: append-only logs. Each
# partition has one **leader** (which takes the writes) and followers that copy it. The
# replicas that are caught up form the **ISR** (in-sync replicas). One node is the active
# **controller** (in KRaft mode the controllers agree among themselves with Raft; there is
# no ZooKeeper): it decides leaders and tracks the ISR.
#
# Our cluster runs three nodes that are each broker and controller. Its defaults:
# replication factor 3, `min.insync.replicas=2`, no unclean leader election: a write with
# `acks=all` succeeds only if at least two replicas have it, and a replica that missed
# writes never becomes leader.

# %%
status = get_status(settings)
print(f"controller: node {status.controller}; brokers up: {status.brokers_up}/{len(status.brokers)}")
pd.DataFrame([vars(b) for b in status.brokers])

# %% [markdown]
# ## 2. Topic design: the catalogue
#
# Topics are designed, not discovered: their key decides ordering (only within a
# partition), their partition count caps parallelism, and their cleanup policy decides
# what "the data" means. `rtml topics apply` creates the catalogue's topics and reports
# drift instead of silently accepting a topic that differs.

# %%
from rtml import topics  # noqa: E402

checks = topics.apply(settings)
pd.DataFrame(
    [
        {
            "topic": t.name,
            "key": t.key,
            "partitions": t.partitions,
            "RF": t.replication_factor,
            "cleanup": t.configs.get("cleanup.policy", "delete"),
            "state": c.state,
        }
        for t, c in zip(topics.CATALOGUE, checks, strict=True)
    ]
)

# %%
status = get_status(settings)
pd.DataFrame(
    [
        {"partition": p.partition, "leader": p.leader, "replicas": p.replicas, "isr": p.isr}
        for p in status.partitions
        if p.topic == "transactions"
    ]
)

# %% [markdown]
# Every partition of `transactions` has three replicas and a leader; leadership is spread
# over the brokers so each takes a share of the writes. Try `rtml cluster kill 2` in a
# terminal and run the cell again: node 2's partitions get new leaders and their ISR
# shrinks to two. `rtml cluster restart 2` brings it back into every ISR.

# %% [markdown]
# ## 3. Schemas and the schema registry
#
# Producers and consumers are deployed separately, so the format of a record is a contract
# between teams. The registry (Apicurio, with a Confluent-compatible API) stores each
# topic's schema versions and refuses a new version that would break readers. Records
# carry only a 5-byte header (magic byte + schema id) before the Avro body.

# %%
from rtml.schemas import SchemaError, load_schema, register, register_all  # noqa: E402

ids = register_all(settings)
pd.Series(ids, name="schema id").to_frame()

# %% [markdown]
# ### Exercise: evolve a schema compatibly
#
# Open `labs/week1/evolution.py` and implement `add_optional_field`. The cell registers
# your new version of the transaction schema under a scratch subject: the registry accepts
# it only if it is BACKWARD compatible. Then it shows a change the registry refuses.

# %%
import json  # noqa: E402

from rtml.impl import exercise  # noqa: E402

scratch = f"evolution-{uuid.uuid4().hex[:6]}"
v1 = json.loads(load_schema("transaction"))
register(settings, scratch, json.dumps(v1))
v2 = exercise("add_optional_field")(v1, "channel")
print("your version 2 registered with id", register(settings, scratch, json.dumps(v2)))

breaking = {**v1, "fields": [*v1["fields"], {"name": "merchant", "type": "string"}]}
try:
    register(settings, scratch, json.dumps(breaking))
except SchemaError as exc:
    print("refused, as it should be:\n ", exc)

# %% [markdown]
# ## 4. Partitioning: keys and skew
#
# The producer hashes the record key (murmur2) to pick a partition, so equal keys land in
# the same partition, in order. Fraud features are per customer, so a customer's
# transactions must stay in order: they must share a key.
#
# ### Exercise: choose the key
# Implement `partition_key` in `labs/week1/partitioning.py`. The cell sends the same
# records keyed three ways and counts where they land: with your key, with one hot key
# (every record the same key), and with no key (spread by the producer).

# %%
from rtml.clients import create_missing_topics  # noqa: E402
from rtml.patterns.producer import measure, skew  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

demo = f"week1-demo-{uuid.uuid4().hex[:6]}"
create_missing_topics(settings, [NewTopic(demo, 6, 3)])
key = exercise("partition_key")
customers = [i % 500 for i in range(n_records // 4)]
payload = b"x" * record_bytes
spreads = {
    "your key": measure(settings, demo, ((key({"customer_id": c}), payload) for c in customers)),
    "one hot key": measure(settings, demo, ((b"hot", payload) for _ in customers)),
    "no key": measure(settings, demo, ((None, payload) for _ in customers)),
}
rows = [
    {"keying": name, "partition": p, "records": run.partitions.get(p, 0)}
    for name, run in spreads.items()
    for p in range(6)
]
print({name: round(skew(run.partitions, 6), 2) for name, run in spreads.items()}, "(1.0 = even)")
px.bar(pd.DataFrame(rows), x="partition", y="records", color="keying", barmode="group",
       title="Where the records land (6 partitions)")

# %% [markdown]
# A hot key puts all load on one partition (skew 6.0 with 6 partitions): one broker and one
# consumer do all the work. Customer ids spread well because there are many customers with
# similar activity. No key spreads evenly but gives up ordering.

# %% [markdown]
# ## 5. Producers: what durability costs, and how batching buys it back
#
# * **fire-and-forget** (`acks=0`): the producer does not wait for the broker at all.
# * **durable** (`acks=all`, idempotent): every in-sync replica has the record before it
#   is acknowledged; retries cannot duplicate.
# * **durable-batched**: durable, plus `linger.ms=20`, 256 KB batches, lz4.
#
# ### Exercise: a producer that is durable and fast
# Implement `durable_fast_config` in `labs/week1/producer.py`; it is measured as "yours".

# %%
records = [(str(i % 1000).encode(), payload) for i in range(n_records)]
runs = [measure(settings, demo, records, p) for p in ("fire-and-forget", "durable", "durable-batched")]
runs.append(measure(settings, demo, records, "durable", extra=exercise("durable_fast_config")()))
runs[-1].profile = "yours"
results = pd.DataFrame([r.summary() for r in runs])
results

# %%
px.bar(results, x="profile", y="msgs/s", title=f"Throughput, {n_records} records of {record_bytes} B")

# %% [markdown]
# Waiting for replicas costs a round trip per request; batching amortises it over many
# records, so a durable producer can be as fast as a careless one. The p99 delivery latency
# grows with `linger.ms`: that is the trade-off you tune.

# %% [markdown]
# ## 6. Consumers: when you commit decides what a crash does
#
# A consumer group shares a topic's partitions among its members and stores each
# partition's position (the committed offset). After a crash, the group resumes from the
# last commit.
#
# * commit **after** processing: a crash re-delivers the last records (at-least-once);
# * commit **before** processing: a crash loses them (at-most-once).
#
# The cell crashes a consumer after 50 records with each policy and restarts it.

# %%
from rtml.patterns.consumer import AT_LEAST_ONCE, AT_MOST_ONCE, consume  # noqa: E402

crash_topic = f"week1-crash-{uuid.uuid4().hex[:6]}"
create_missing_topics(settings, [NewTopic(crash_topic, 1, 3)])
measure(settings, crash_topic, ((None, str(i).encode()) for i in range(200)))
outcome = []
for guarantee in (AT_MOST_ONCE, AT_LEAST_ONCE):
    seen: list[int] = []
    group = f"week1-{guarantee}-{uuid.uuid4().hex[:4]}"
    consume(settings, crash_topic, group, lambda m: seen.append(int(m.value())), guarantee, crash_after=50)
    consume(settings, crash_topic, group, lambda m: seen.append(int(m.value())), guarantee)
    outcome.append(
        {
            "guarantee": guarantee,
            "processed": len(seen),
            "lost": len(set(range(200)) - set(seen)),
            "duplicated": len(seen) - len(set(seen)),
        }
    )
pd.DataFrame(outcome)

# %% [markdown]
# At-least-once plus an idempotent consumer (one that recognises a record it has already
# processed, for example by its transaction id) is the usual choice; week 4 adds Kafka
# transactions for exactly-once.

# %% [markdown]
# ## 7. The transaction simulator: the data of the whole course
#
# The fraud system needs card payments, and real ones are private. The simulator follows
# the Fraud Detection Handbook's generator (Le Borgne et al.), so our results can be checked
# against that literature:
#
# * **customers** live on a 100 x 100 grid, each with a spending habit (mean and spread of
#   amounts) and a frequency (mean transactions per day);
# * **terminals** have a location; a customer pays only at terminals within radius 5 of home;
# * **transactions** are drawn per customer and day: times around noon, amounts around the
#   customer's mean;
# * **frauds** come from three scenarios: (1) any amount above 220; (2) each day 2 terminals
#   are compromised for 28 days, every payment on them is fraud; (3) each day 3 cards are
#   compromised for 14 days, a third of their payments are multiplied by 5 and fraudulent;
# * **labels** (fraud or not) arrive 7 days after the payment, as chargebacks do.
#
# It is seeded: the same parameters always give the same data. Nothing here touches Kafka yet.

# %%
from rtml.simulate import SimulationParams, simulate  # noqa: E402

sim = simulate(
    SimulationParams(n_customers=n_customers, n_terminals=n_terminals, n_days=n_days, seed=0)
)
print(
    f"{len(sim.transactions):,} transactions of {len(sim.customers):,} customers at "
    f"{len(sim.terminals):,} terminals over {n_days} days; fraud rate {sim.fraud_rate:.2%}"
)
sim.customers.head()

# %%
sim.terminals.head()

# %%
sim.transactions.head()

# %%
per_day = sim.transactions.resample("D", on="tx_datetime").agg(
    all=("transaction_id", "size"), fraud=("tx_fraud", "sum")
)
px.bar(
    per_day,
    barmode="overlay",
    title="Transactions per day",
    labels={"value": "transactions", "tx_datetime": "day", "variable": ""},
)

# %%
scenarios = {1: "1: amount > 220", 2: "2: compromised terminal", 3: "3: compromised card"}
frauds = sim.transactions[sim.transactions["tx_fraud"] == 1]
by_scenario = frauds["tx_fraud_scenario"].map(scenarios).value_counts().sort_index()
px.bar(
    x=by_scenario.index,
    y=by_scenario.values / len(sim.transactions),
    title="Share of all transactions that are fraud, by scenario",
    labels={"x": "scenario", "y": "share of transactions"},
)

# %% [markdown]
# Fraud is rare, as it is in reality (the handbook's full-size dataset has about 0.8%);
# with fewer terminals each compromised one is a larger share, so small simulations have
# more. Scenario 1 is easy to learn, scenario 2 needs features per terminal, scenario 3
# features per customer: that is what week 2 builds.
#
# ### Replay: history in event-time order, event times kept
#
# `replay` first checks that the topics exist and the schemas are registered, then writes
# every transaction in event-time order, keyed by your `partition_key` (section 4), with
# the **event time as the Kafka record timestamp**. Each label is written once event time
# has passed its label time, so a consumer sees a fraud confirmed only 7 days after it
# happened. It goes as fast as the cluster takes it: batched, compressed, `acks=all`. A long
# run shows a progress bar with the rate.
#
# First the reference data: customers and terminals go to **compacted** topics keyed by id.
# Compaction keeps the latest record of each key, so the topic is a table: a consumer that
# reads it from the start gets every profile's current version, however often it changed.

# %%
from rtml.patterns.consumer import end_offsets, read_from  # noqa: E402
from rtml.simulate.producer import live, publish_reference, replay  # noqa: E402

print("reference data:", publish_reference(settings, sim))
before = end_offsets(settings, "transactions")
report = replay(settings, sim)
print(report.summary())

# %% [markdown]
# Read back the first records the replay wrote to each partition. The record timestamp
# (set by the producer: "create time") is the payment's time in the simulated past, not
# the moment it was written: a stream processor's windows, a time-based replay
# (`seek_to_time`) and retention all see event time. That is also why `transactions` keeps
# records forever (`retention.ms=-1`): with the default retention of 7 days, the broker
# would soon delete records stamped in 2018.

# %%
back = read_from(settings, "transactions", before, per_partition=2)
pd.DataFrame(
    [
        {
            "partition": r.partition,
            "offset": r.offset,
            "key": r.key.decode(),
            "record timestamp": pd.Timestamp(r.timestamp_ms, unit="ms", tz="UTC"),
            "timestamp type": r.timestamp_type,
            **r.value,
        }
        for r in back
    ]
)

# %% [markdown]
# ### Live: a fixed rate, now-time
#
# The running system needs a steady stream, not a burst: `live` emits transactions at a
# fixed rate with the current time, looping over the simulated history. A **token bucket**
# paces it: tokens accrue at `rate` per second and each record takes one. The bucket holds
# at most 100 ms of tokens, so after a hiccup the records that are due go out at once and
# the average rate holds, but no long burst can build up. In the lab it runs in a terminal
# beside the control room: `rtml simulate live --rate 200` (Ctrl-C stops it; each label
# follows 10 s later). Here, a few seconds of it:

# %%
live_report = live(settings, sim, rate=live_rate, duration=live_seconds, labels=False)
print(live_report.summary())
sent = live_report.topics["transactions"]
print(f"{sent} transactions in {live_seconds:g} s: {sent / live_seconds:.0f} per second")

# %% [markdown]
# ## 8. Kafka Connect: data in and out without writing a client
#
# Many systems only need to move data between Kafka and something else: a file, a database,
# a search index. Kafka Connect does that with configuration instead of code: a **source
# connector** reads from outside into a topic, a **sink connector** writes a topic out.
#
# * **Distributed mode.** The worker keeps connector configs, source offsets (how far a
#   source has read) and statuses in Kafka topics (`rtml-connect-*`), not on its disk. A
#   restarted worker carries on where it stopped, and a second worker joining the group
#   `rtml-connect` would share the connectors and their tasks. We run one worker, from the same
#   Maven Central jars as the brokers, managed over its REST API on 127.0.0.1.
# * **Converters** turn Kafka bytes into Connect's typed records and back. Ours use
#   Apicurio's `AvroConverter` with the registered schemas, so connectors read and write
#   exactly the Confluent wire format our Python clients use.
# * **Transforms** (single message transforms) reshape each record on the way. Kafka's file
#   source emits a line of text without a key; a compacted topic needs a key. A chain of
#   transforms parses each JSON line into a struct and makes its id the key
#   (`rtml/connect/connectors.py` explains each step). The sink turns timestamps into
#   readable ISO text.
#
# Only the connectors defined in `rtml/connect/connectors.py` can be created
# (`rtml connect list`): a worker runs arbitrary plugins, so the system allows a known few.
#
# Start the worker (in a terminal: `rtml connect up`):

# %%
from rtml.connect import (  # noqa: E402
    Worker,
    audit_file,
    audit_lines,
    create_connector,
    reload_source,
    write_reference_files,
)

worker = Worker(settings)
worker.up()
client = worker.client
worker.status()

# %% [markdown]
# ### A source: reference data from a file
#
# Write the customers and terminals as JSON lines, one profile per line, where the
# `customers-source` connector reads them. A file source remembers how far it has read (a
# byte position, stored in Kafka), so `reload_source` resets that position and the file is
# read from its first line, however often you run this cell.

# %%
paths = write_reference_files(settings, sim.customers, sim.terminals)
print(paths["customers"].read_text().splitlines()[0])

# %%
from rtml.poll import until  # noqa: E402

start = end_offsets(settings, "customers")


def customers_loaded() -> int:
    """Records the connector has added to `customers` since `start`."""
    return sum(end_offsets(settings, "customers").values()) - sum(start.values())


reload_source(settings, "customers-source", client)
until(lambda: customers_loaded() >= len(sim.customers), 120, "the connector to load the customers")
print(f"{customers_loaded():,} customer records loaded by the connector")
pd.DataFrame(
    [
        {"partition": r.partition, "key": r.key.decode(), **r.value}
        for r in read_from(settings, "customers", start, per_partition=1)
    ]
)

# %% [markdown]
# Each record is keyed by its customer id and holds the registered Avro schema's fields: a
# consumer cannot tell it from the records `publish_reference` wrote. The `customers` topic
# now holds every profile at least twice; compaction will keep only the latest record of
# each key.
#
# ### A sink: an audit file of every transaction
#
# `transactions-audit` writes each record of `transactions` as a line of text. A sink is a
# consumer group (`connect-transactions-audit`) like any other, so we watch it with the
# same lag tool as in section 9: note where `transactions` ends now, create the connector,
# and follow the group until it has committed past that point while the file grows.
#
# A record the sink cannot decode (not Avro, or a schema id the registry does not know)
# would, by Connect's default, fail the task for good: the sink stops and its lag grows
# until someone restarts it. Our sinks set `errors.tolerance=all` with a dead-letter topic
# instead: such a record goes to `connect.dlq` unchanged, with `__connect.errors.*`
# headers naming its topic, partition, offset and the exception, and the sink goes on.

# %%
from rtml.observe.lag import LagMonitor, list_groups  # noqa: E402

sink_group = "connect-transactions-audit"
mark = end_offsets(settings, "transactions")
create_connector(settings, "transactions-audit", client)
until(lambda: sink_group in list_groups(settings), 120, "the sink's consumer group")
t0 = time.monotonic()
growth = []


def audited(snapshot) -> bool:
    """Note the audit file's size at each sample; done once the sink is past `mark`."""
    growth.append(
        {
            "seconds": round(time.monotonic() - t0, 1),
            "audit lines": audit_lines(settings, "transactions"),
            "sink lag": snapshot.total_lag,
        }
    )
    return snapshot.reached("transactions", mark)


LagMonitor(settings, sink_group, interval=0.5).follow(audited, timeout=300)
with audit_file(settings, "transactions").open() as audit:
    print(audit.readline())
pd.DataFrame(growth)

# %% [markdown]
# The REST API is how you operate Connect: every connector's state and its tasks'
# (`rtml connect status` prints the same). A task that fails shows `FAILED` with the Java
# stack trace; the connector can be paused, resumed, stopped and restarted over REST.

# %%
pd.DataFrame(
    [
        {
            "connector": name,
            "type": status["type"],
            "state": status["connector"]["state"],
            "tasks": ", ".join(f"{t['id']}: {t['state']}" for t in status["tasks"]),
        }
        for name in client.connectors()
        for status in [client.status(name)]
    ]
)

# %% [markdown]
# Stop the worker (`rtml connect down`). Its connectors, their offsets and statuses stay in
# Kafka: the next `rtml connect up` resumes both connectors where they stopped.

# %%
Worker(settings).down()

# %% [markdown]
# ## 9. "My consumers are lagging": diagnose and fix
#
# **Lag** is how many records a consumer group has not processed yet, per partition: from
# its committed offset to the log end offset. A number alone says little: 10,000 records
# behind is fine for a group that is catching up and alarming for one that stopped an hour
# ago. So rtml (like LinkedIn's Burrow) samples each partition several times and judges how
# the offsets move, with no threshold to tune:
#
# * **OK**: the lag reached zero in the window, or it is shrinking;
# * **WARN**: offsets move forward, but the lag only grows: consumers are slower than
#   producers;
# * **STALL**: a live member owns the partition, but its offset does not move: a stuck loop
#   or a record it fails on again and again;
# * **STOP**: no live member owns the partition: nobody reads it;
# * **REWIND**: the committed offset went back: someone reset the group;
# * **UNKNOWN**: one sample with lag is not a trend.
#
# ### Exercise: the lag of one partition
# Implement `partition_lag` in `labs/week1/lag.py` (mind a group that never committed, and
# records that retention deleted). With `impl = "labs"`, every lag number below, in the
# control room and in `rtml lag`, is computed by your function.
#
# The rules are a pure function of the samples, so we can try them on made-up windows
# first: three samples of (committed offset, log end offset) each.

# %%
from rtml.observe.lag import ADVICE, Sample, evaluate  # noqa: E402

windows = {
    "caught up once": ([90, 100, 100], [100, 100, 110], True),
    "moving, lag shrinking": ([10, 50, 90], [100, 105, 110], True),
    "moving, lag growing": ([10, 20, 30], [100, 130, 160], True),
    "frozen, member alive": ([10, 10, 10], [100, 120, 140], True),
    "frozen, nobody owns it": ([10, 10, 10], [100, 120, 140], False),
    "offset went back": ([50, 10, 20], [100, 100, 100], True),
}
rules = []
for name, (committed, ends, owned) in windows.items():
    points = zip(committed, ends, strict=True)
    samples = [Sample(float(t), c, e, e - c) for t, (c, e) in enumerate(points)]
    status = evaluate(samples, owned=owned)
    rules.append(
        {
            "window": name,
            "lag": [s.lag for s in samples],
            "status": status,
            "advice": ADVICE[status],
        }
    )
pd.DataFrame(rules)

# %% [markdown]
# ### Make a group lag on purpose
#
# A topic with 6 partitions gets `n_lag` transactions keyed by customer. A consumer of the
# group reads a quarter of them, commits, and then hangs: it stays in the group but no
# longer polls. Sample the group three times, one second apart: this is what
# `rtml lag GROUP` prints.

# %%
from collections import Counter  # noqa: E402

from rtml.observe.cli import render_report  # noqa: E402
from rtml.observe.lag import sample_lag  # noqa: E402
from rtml.patterns.consumer import group_consumer, read_and_commit  # noqa: E402

lag_topic = f"week1-lag-{uuid.uuid4().hex[:6]}"
lag_group = f"week1-features-{uuid.uuid4().hex[:4]}"
create_missing_topics(settings, [NewTopic(lag_topic, 6, 3)])
customer_ids = sim.transactions["customer_id"].head(n_lag).tolist()
measure(settings, lag_topic, ((key({"customer_id": c}), payload) for c in customer_ids))

stuck = group_consumer(settings, lag_group)
stuck.subscribe([lag_topic])
print("read and committed:", read_and_commit(stuck, n_lag // 4))
stalled = LagMonitor(settings, lag_group, samples=3, interval=1.0).run()
print(render_report(stalled))
spread = Counter({p.lag.partition: p.lag.end - p.lag.start for p in stalled.partitions})
print(f"records per partition {dict(spread)}: skew {skew(spread, 6):.2f} (1.0 = even)")

# %% [markdown]
# STALL: the member is alive and owns the partitions, yet their offsets do not move. Our
# consumer commits right after reading, so a one-second window is enough to see it; for
# consumers that auto-commit every 5 s, sample over a longer window (the note above), or
# a healthy consumer looks frozen. The records are spread evenly over the partitions (skew
# near 1): no hot key here.
#
# Now the consumer dies (here it leaves the group; a killed process is evicted after its
# session timeout). Nobody owns the partitions any more: STOP.

# %%
stuck.close()
until(lambda: sample_lag(settings, lag_group).state == "empty", 60, "the group to be empty")
print(render_report(LagMonitor(settings, lag_group, samples=3, interval=1.0).run()))

# %% [markdown]
# ### Fix it: consumers, up to the partition count
#
# Start three members of the group (each gets two of the six partitions; a seventh member
# would sit idle, as a partition is read by one member of a group at a time) and follow
# the lag until it reaches zero. Each member is the at-least-once consumer of section 6: it
# commits synchronously after every record, a round trip to the group coordinator per
# record, which is its processing cost here.

# %%
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from rtml.patterns.consumer import RebalanceLog  # noqa: E402

members = 3
caught_up = threading.Event()
logs = [RebalanceLog() for _ in range(members)]
monitor = LagMonitor(settings, lag_group, samples=3, interval=0.5)
with ThreadPoolExecutor(members) as pool:
    runs = [
        pool.submit(
            consume,
            settings,
            lag_topic,
            lag_group,
            lambda m: None,
            AT_LEAST_ONCE,
            rebalances=log,
            stop=caught_up.is_set,
        )
        for log in logs
    ]
    drain = monitor.follow(lambda snapshot: snapshot.total_lag == 0, timeout=300)
    caught_up.set()  # every member stops and leaves the group
print("records processed by each member:", [r.result() for r in runs])
print(f"{drain[0].total_lag:,} records drained in {drain[-1].timestamp - drain[0].timestamp:.1f} s")
print(render_report(monitor.report()))

# %%
px.line(
    pd.DataFrame(
        [
            {
                "seconds": s.timestamp - drain[0].timestamp,
                "partition": str(p.partition),
                "lag": p.lag,
            }
            for s in drain
            for p in s.partitions
        ]
    ),
    x="seconds",
    y="lag",
    color="partition",
    markers=True,
    title="Lag per partition while three consumers catch up",
)

# %% [markdown]
# Each partition drains at the pace of the one member that owns it. The members did not
# start at the same instant: the first to join the group gets every partition, and each
# later one triggers a **rebalance** that shares them out again (section 6). The members'
# rebalance logs show when each got or gave up which partitions:

# %%
pd.DataFrame(
    [
        {
            "seconds": round(t - drain[0].timestamp, 1),
            "member": i + 1,
            "event": kind,
            "partitions": parts,
        }
        for i, log in enumerate(logs)
        for t, kind, parts in log.events
    ]
).sort_values("seconds", ignore_index=True)

# %% [markdown]
# ### The checklist
#
# When consumers lag, ask in this order (the details are in
# [the consumer lag runbook](../docs/runbooks/consumer-lag.md)):
#
# 1. **Is the group alive?** `rtml lag GROUP`: STOP means no member owns the partitions;
#    start the consumers, or find out why they crashed or left.
# 2. **Is it moving?** STALL means alive but stuck: look for a poll loop blocked on a slow
#    call, or a poison record that fails on every retry (send it to a dead-letter queue).
# 3. **Is lag growing?** WARN means consumers work but are slower than producers.
# 4. **Is one partition hot?** If one partition lags and the others do not, the key is
#    skewed (section 4): more consumers will not help, because one partition is read by
#    one member; change the key or split the hot entity's work.
# 5. **Slow processing or too few consumers?** If every partition lags evenly, add members
#    up to the partition count (beyond it they sit idle); if there are already as many
#    members as partitions, make processing cheaper (batch, cache, fewer calls out) or add
#    partitions, which changes where keys land.
#
# Then confirm the fix the same way: the status must reach OK.

# %% [markdown]
# ## Your grade
# The same checks `make grade WEEK=1` runs.

# %%
from rtml.grade import grade  # noqa: E402

print(grade("week1", impl=impl).render())
