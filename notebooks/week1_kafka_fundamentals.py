# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# 6. crash consumers to see at-most-once and at-least-once with your own eyes.
#
# Exercises live in `labs/week1/`; run the system on your code with `impl = "labs"` below
# (or `RTML_IMPL=labs`), and grade them with `make grade WEEK=1`.

# %% tags=["parameters"]
impl = "solutions"  # "labs" runs your own exercise code
n_records = 20_000  # records per producer measurement
record_bytes = 200  # payload size of the measurement records

# %%
import os
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
# ## Your grade
# The same checks `make grade WEEK=1` runs.

# %%
from rtml.grade import grade  # noqa: E402

print(grade("week1", impl=impl).render())
