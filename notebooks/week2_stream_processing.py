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
# # Week 2: Stream processing
#
# Week 1 put card payments into Kafka. This week turns each payment into the numbers a fraud
# model needs (its **features**) the moment it arrives, with a stream processor: the feature
# application in `rtml/features/`, written with Quix Streams. It keeps per-customer state,
# windows, joins with reference data, handles records that arrive late, and must compute
# exactly what the batch code that trains the model computes.
#
# You will:
# 1. map the vocabulary of Kafka Streams and Flink onto Quix Streams;
# 2. replay a small history onto empty topics;
# 3. decide how long to wait for late records, from measured delays (**exercise**);
# 4. run the feature app on that input, in a child process that is always stopped;
# 5. see the five window types on the same payments, in a plot;
# 6. aggregate windows, with a custom aggregator of your own (**exercise**);
# 7. look inside the state store's changelog;
# 8. join a stream with tables, and see why that needs co-partitioned topics;
# 9. see why the fraud labels are a *global* table;
# 10. count which late records the app kept and which it sent to `transactions.late`;
# 11. prove stream == batch, feature by feature: no training/serving skew.
#
# Exercises live in `labs/week2/`; with `impl = "labs"` below the feature app runs your
# code, and `make grade WEEK=2` grades it. The week's first exercise, `customer_window` in
# `labs/week2/windows.py` (the 1/7/30-day customer windows), runs inside the app too: the
# stream == batch check in section 11 is its real test.
#
# Read more: [windowing and late data](../docs/patterns/windowing-late-data.md),
# [joins](../docs/patterns/joins.md), [stateful processing](../docs/patterns/stateful-processing.md),
# [real-time feature engineering](../docs/writeups/real-time-feature-engineering.md).

# %% tags=["parameters"]
impl = "solutions"  # "labs" runs your own exercise code
# The replayed history: more than 30 days, so the 30-day windows fill.
n_customers = 100
n_terminals = 200
n_days = 40
seed = 2
# The late-data experiment: customers whose payments arrive out of order.
n_late_customers = 4
n_late_per_customer = 40
max_loss = 0.05  # share of records we accept to lose as late
timeout_s = 600.0  # at most this long for the feature app to catch up

# %%
import json
import os
import time

import numpy as np
import pandas as pd
import plotly.express as px

os.environ["RTML_IMPL"] = impl

from rtml.config import Settings  # noqa: E402
from rtml.impl import exercise  # noqa: E402

settings = Settings.from_env()
print("cluster:", settings.bootstrap)
print("implementation:", impl)

# %% [markdown]
# ## 1. The vocabulary: Kafka Streams, Flink and Quix Streams side by side
#
# Stream processors share a handful of ideas under different names. Kafka Streams (Java) is
# a library that runs inside your service and keeps its state in Kafka; Flink is a cluster
# with its own scheduler and checkpoints; Quix Streams is a Python library built like Kafka
# Streams: consumer groups for scaling, RocksDB for state, changelog topics for recovery.
#
# | idea | Kafka Streams | Flink | Quix Streams | where in rtml |
# |---|---|---|---|---|
# | an unbounded sequence of events | `KStream` | `DataStream` | `StreamingDataFrame` (`app.dataframe(topic)`) | `transactions` |
# | a table: the latest value per key, partitioned like the stream | `KTable` (from a compacted topic) | keyed state, versioned table (Table API) | `join_asof` with a dataframe of the table's topic (versions per key, in state) | `customers`, `terminals` |
# | a table every instance holds whole | `GlobalKTable` | broadcast state | none built in: one consumer of every partition per process | `LabelTable` (`rtml/features/labels.py`) |
# | state kept per key | state store (RocksDB) | keyed state backend (RocksDB) | `apply(..., stateful=True)` and `State`, RocksDB | customer history, every window |
# | state's backup in Kafka | changelog topic | checkpoints to object storage | changelog topic (`changelog__<group>--...`) | section 6 |
# | windows | `TimeWindows` (tumbling, hopping), `SlidingWindows`, `SessionWindows` | tumbling, sliding (= hopping), session, count and global window assigners | `tumbling_window`, `hopping_window`, `sliding_window`, `session_window`, `tumbling_count_window` | `rtml/features/windows.py` |
# | how far event time has got | stream time per partition | watermarks (generated from timestamps) | the latest timestamp per key or per partition | grace periods |
# | how long to wait for stragglers | grace period | allowed lateness | `grace_ms` | section 2 |
# | re-keying a stream | `selectKey` / `groupBy` (repartition topic) | `keyBy` (network shuffle) | `group_by` (repartition topic) | by terminal, by transaction |
# | records that fail or come too late | exception handlers | side outputs | `on_processing_error`, `on_late` callbacks | `features.dlq`, `transactions.late` |
#
# Two names trip people up: Flink's *sliding* window is everyone else's *hopping* window (a
# fixed size that advances by a fixed step); a *sliding* window in Kafka Streams and Quix
# is the window of a fixed size that ends at each record.

# %% [markdown]
# ## 2. The input: a small history on empty topics
#
# The feature app reads `transactions`, `customers`, `terminals` and `labels` and writes
# `features`, `windows`, `features.dlq` and `transactions.late`. To compare its output with
# the batch reference we want those topics to hold this notebook's data and nothing else,
# so `fresh_topics` deletes them and creates them again from the catalogue. It refuses while
# the lab's background services run (`rtml services down` stops them; `rtml services up`
# starts them again when you are done).
#
# Then the same steps as week 1: register the schemas, simulate a history, publish the
# customers and terminals, and replay the transactions and their labels in event-time order.

# %%
from rtml.features.runner import fresh_topics  # noqa: E402
from rtml.schemas import register_all  # noqa: E402
from rtml.simulate import SimulationParams, simulate  # noqa: E402
from rtml.simulate.producer import publish_reference, replay  # noqa: E402

fresh_topics(settings)
register_all(settings)
sim = simulate(
    SimulationParams(n_customers=n_customers, n_terminals=n_terminals, n_days=n_days, seed=seed)
)
print("reference data:", publish_reference(settings, sim))
print(replay(settings, sim, progress=False).summary())

# %% [markdown]
# ## 3. Late data: how long should the app wait?
#
# The app works in **event time**: a payment at 12:00 belongs in the windows of 12:00,
# whenever it reaches Kafka. Records do not always arrive in order: a terminal loses its
# connection and uploads an hour later, a producer retries. For each customer the app
# remembers the latest event time it has seen; a transaction whose event time lies more
# than the **grace period** behind it is *late*: it goes to `transactions.late` (with the
# headers of the dead-letter convention) and no window counts it. Within the grace period it
# is counted, in its place in the history.
#
# A longer grace loses fewer records, but windows close later (results are final later) and
# state is held longer. So measure first. Here some customers' payments arrive out of order:
# each is sent after a random delay, mostly seconds, and one in ten is a straggler held back
# for minutes. They come after the history in event time, so they change none of its
# features.

# %%
from rtml.clients import durable_producer  # noqa: E402
from rtml.features.lateness import arrival_delays, dropped  # noqa: E402
from rtml.schemas.wire import PreparedSerializer  # noqa: E402

rng = np.random.default_rng(seed)
start = int(sim.transactions["event_time_ms"].max()) + 3_600_000
rows = []
for customer in sim.customers["customer_id"].head(n_late_customers):
    for i in range(n_late_per_customer):
        event_ms = start + i * 60_000  # a payment a minute
        straggler = rng.random() < 0.1
        delay = rng.uniform(120_000, 900_000) if straggler else rng.exponential(15_000)
        rows.append(
            {
                "customer_id": int(customer),
                "terminal_id": int(rng.choice(sim.terminals["terminal_id"])),
                "tx_amount": round(float(rng.uniform(5, 100)), 2),
                "event_time_ms": event_ms,
                "sent_ms": event_ms + int(delay),
            }
        )
burst = pd.DataFrame(rows).sort_values("sent_ms", ignore_index=True)
burst["transaction_id"] = int(sim.transactions["transaction_id"].max()) + 1 + burst.index

encode = PreparedSerializer.for_topic(settings, "transactions")
key = exercise("partition_key")
producer = durable_producer(settings)
for tx in burst.to_dict("records"):
    value = {
        "transaction_id": tx["transaction_id"],
        "tx_datetime": tx["event_time_ms"],
        "customer_id": tx["customer_id"],
        "terminal_id": tx["terminal_id"],
        "tx_amount": tx["tx_amount"],
    }
    # The record timestamp is the event time, as in the replay: windows read it.
    producer.produce("transactions", encode(value), key(value), timestamp=tx["event_time_ms"])
assert producer.flush(30) == 0
print(f"{len(burst)} out-of-order transactions of {n_late_customers} customers sent")

# %% [markdown]
# Each record's **delay** is how far its event time lies behind the latest event time of its
# customer sent before it (0 if it is not behind): `arrival_delays` measures it from the
# records in the order they were sent, which is the order their partition delivers them. A
# grace period g drops exactly the records with delay > g.

# %%
burst["delay_ms"] = arrival_delays(burst["customer_id"].tolist(), burst["event_time_ms"].tolist())
px.histogram(
    burst,
    x=burst["delay_ms"] / 1000,
    nbins=40,
    log_y=True,
    title="How far behind its customer's latest payment each record arrived (log scale)",
    labels={"x": "delay (s)"},
)

# %% [markdown]
# ### Exercise: choose the grace period
#
# Implement `choose_grace` in `labs/week2/lateness.py`: the smallest grace period that loses
# at most `max_loss` of the records. The app then runs with your grace period; section 10
# checks that it sent exactly the records your choice predicts to `transactions.late`.

# %%
delays = burst["delay_ms"].tolist()
grace_ms = exercise("choose_grace")(delays, max_loss)
default_grace_ms = 60_000  # the app's default (`rtml features run --grace 60`)
print(f"your grace period: {grace_ms / 1000:.1f} s for at most {max_loss:.0%} loss")
pd.DataFrame(
    [
        {"grace (s)": g / 1000, "late records": dropped(delays, g)}
        for g in (0, default_grace_ms, grace_ms, max(delays))
    ]
).assign(share=lambda t: t["late records"] / len(delays))

# %%
curve = pd.DataFrame({"grace_s": np.linspace(0, max(delays) / 1000, 200)})
curve["share late"] = [dropped(delays, g * 1000) / len(delays) for g in curve["grace_s"]]
fig = px.line(curve, x="grace_s", y="share late", title="Share of records lost by grace period")
fig.add_hline(y=max_loss, line_dash="dot", annotation_text="max_loss")
fig.add_vline(x=grace_ms / 1000, line_dash="dot", annotation_text="your grace")
fig

# %% [markdown]
# ## 4. Run the feature app
#
# `FeatureRun` starts `rtml features run` in a child process, exactly as you would in a
# terminal, in a consumer group of its own (so it reads every topic from the start), and
# stops it when the `with` block ends, even if a cell fails. The app writes one features
# record per transaction it keeps; we wait until `features` and `transactions.late` hold
# what the history and the experiment should give. Meanwhile the app's output (progress
# lines: records in, features out, dead-lettered, late) goes to a log file.

# %%
from rtml.features.runner import FeatureRun  # noqa: E402

expected_late = dropped(delays, grace_ms)
expected_features = len(sim.transactions) + len(burst) - expected_late
started = time.monotonic()
with FeatureRun(settings, grace_ms=grace_ms) as run:
    run.wait_for("features", expected_features, timeout_s)
    run.wait_for("transactions.late", expected_late, 60)
took = time.monotonic() - started
print(f"{expected_features:,} features in {took:.0f} s, start-up included")
# The app's own progress lines: records in, features out, dead-lettered, late.
progress = [line for line in run.output().splitlines() if line.startswith(("Feature app", "in "))]
print("\n".join(progress))
print("exit status:", run.proc.returncode)

# %% [markdown]
# ## 5. Windows: five ways to cut the same payments
#
# Beside the features, the app runs a short window of every type Quix has on the same
# stream, per customer, and writes each closed window to the `windows` topic
# (`rtml/features/windows.py`):
#
# * **tumbling**, 1 h: back to back, no overlap; each payment is in exactly one;
# * **hopping**, 1 h every 15 min: overlapping, so each payment is in four;
# * **sliding**, 1 h: the hour ending at each payment ("the last hour", always current);
# * **session**, 30 min gap: a burst of activity, as long as it lasts; closes after 30
#   minutes without a payment;
# * **count**, 5 payments: sized by records, not time.
#
# A window is written once it **closes** (`final()`): when the customer's event time has
# passed its end plus a 1-minute grace. Below, one day of the busiest customer:
# `read_windows` reads their windows from the one partition that holds their key.

# %%
from rtml.features.windows import read_windows  # noqa: E402

DAY_MS = 86_400_000
busiest = int(sim.transactions["customer_id"].value_counts().idxmax())
theirs = sim.transactions[sim.transactions["customer_id"] == busiest]
# Their busiest day, away from the end of the history, where every window has closed.
days = (theirs["event_time_ms"] // DAY_MS).value_counts()
day = int(days[days.index < days.index.max() - 1].idxmax()) * DAY_MS
paid = theirs[(theirs["event_time_ms"] >= day) & (theirs["event_time_ms"] < day + DAY_MS)]

windows = pd.DataFrame(read_windows(settings, busiest))
shown = windows[(windows["end"] > day) & (windows["start"] < day + DAY_MS)].sort_values("start")


def lanes(frame: pd.DataFrame) -> list[int]:
    """A row for each window (sorted by start) so that windows on a row never overlap."""
    ends: list[int] = []
    out = []
    for start_ms, end_ms in zip(frame["start"], frame["end"], strict=True):
        free = [i for i, end in enumerate(ends) if end <= start_ms]
        if free:
            ends[free[0]] = end_ms
        else:
            ends.append(end_ms)
        out.append(free[0] if free else len(ends) - 1)
    return out


for kind, group in shown.groupby("kind"):
    shown.loc[group.index, "row"] = [f"{kind} {lane + 1}" for lane in lanes(group)]
kinds = ["tumbling", "hopping", "sliding", "session", "count"]
rows = ["payments", *sorted(shown["row"].unique(), key=lambda r: (kinds.index(r.split()[0]), r))]
shown["from"] = pd.to_datetime(shown["start"], unit="ms")
# A session or count window of one payment lasts 0-1 ms: draw it 4 minutes wide.
shown["to"] = pd.to_datetime(np.maximum(shown["end"], shown["start"] + 240_000), unit="ms")
fig = px.timeline(
    shown,
    x_start="from",
    x_end="to",
    y="row",
    color="kind",
    hover_data=["count", "sum", "mean", "max"],
    title=f"Customer {busiest}: every closed window of one day, and the payments",
)
fig.add_scatter(
    x=pd.to_datetime(paid["event_time_ms"], unit="ms"),
    y=["payments"] * len(paid),
    mode="markers",
    marker={"size": 10, "color": "black"},
    name="payments",
)
first, last = paid["event_time_ms"].min(), paid["event_time_ms"].max()
fig.update_xaxes(range=pd.to_datetime([first - 7_200_000, last + 7_200_000], unit="ms"))
fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1])
fig

# %% [markdown]
# Read the plot from the payments up: each payment falls in one tumbling window and in four
# hopping ones; every sliding window ends at a payment; a session stretches over payments
# less than 30 minutes apart; a count window spans five payments, however long that takes.
#
# ## 6. Aggregations, and a custom aggregator
#
# A window does not keep its records: it keeps one small **state** per aggregation and
# updates it as records arrive (a count, a running sum, a running mean as sum and count).
# The tumbling windows compute count, sum, mean, min and max; sessions `collect` the
# terminal ids (this one does keep the values). They agree with pandas on the same payments:

# %%
tumbling = windows[windows["kind"] == "tumbling"].set_index("start")
hours = theirs.groupby(theirs["event_time_ms"] // 3_600_000 * 3_600_000)["tx_amount"]
by_pandas = hours.agg(["count", "sum", "mean", "min", "max"]).loc[tumbling.index]
check = tumbling[["count", "sum", "mean", "min", "max"]]
gap = float((check - by_pandas).abs().max().max())
print(f"{len(tumbling)} closed tumbling windows; largest difference from pandas: {gap}")
sessions = windows[windows["kind"] == "session"].sort_values("count").tail(3)
sessions.assign(
    start=pd.to_datetime(sessions["start"], unit="ms"),
    end=pd.to_datetime(sessions["end"], unit="ms"),
)[["start", "end", "count", "sum", "terminals"]]

# %% [markdown]
# ### Exercise: a custom aggregator, "how many different values"
#
# A terminal that suddenly serves many different cards in an hour is suspicious. Quix has no
# "count distinct", so `DistinctValues` in `rtml/features/windows.py` is a custom
# aggregator, run on the stream re-keyed by terminal (1-hour tumbling windows, written with
# kind `terminals`). It calls four functions that you write in `labs/week2/aggregators.py`:
# `distinct_initialize`, `distinct_agg`, `distinct_merge` and `distinct_result`.
#
# `merge` is what session windows need: a late payment can fall into the gap between two
# sessions and join them, and then their two states must become one. Merging must give the
# same answer as one window that saw every record:

# %%
init, agg = exercise("distinct_initialize"), exercise("distinct_agg")
merge, result = exercise("distinct_merge"), exercise("distinct_result")


def aggregate(values: list) -> list:
    state = init()
    for value in values:
        state = agg(state, value)
    return state


morning, evening = [7, 3, 7, None], [3, 11]
print("morning:", aggregate(morning), " evening:", aggregate(evening))
merged = merge(aggregate(morning), aggregate(evening))
print("merged:", merged, " one window:", aggregate(morning + evening), " result:", result(merged))

# %% [markdown]
# And live: the terminals' windows the app computed with your functions, against pandas'
# `nunique` for the same terminal and hours.

# %%
from rtml.features.windows import TERMINAL_KINDS  # noqa: E402

terminal = int(sim.transactions["terminal_id"].value_counts().idxmax())
at_terminal = sim.transactions[sim.transactions["terminal_id"] == terminal]
hourly = at_terminal.groupby(at_terminal["event_time_ms"] // 3_600_000 * 3_600_000)
live = pd.DataFrame(read_windows(settings, terminal, TERMINAL_KINDS)).set_index("start")
live["payments"] = hourly.size().reindex(live.index)
live["pandas nunique"] = hourly["customer_id"].nunique().reindex(live.index)
complete = live[live["count"] == live["payments"]]
agree = int((complete["customers"] == complete["pandas nunique"]).sum())
print(f"terminal {terminal}: {len(live)} closed hourly windows")
print(f"  {len(complete)} saw every payment of their hour; {agree} of them agree with pandas")
print(f"  {len(live) - len(complete)} missed payments that reached them after they had closed")
assert agree == len(complete)
complete.sort_values("customers").tail(3)

# %% [markdown]
# Why do some windows miss payments? This window runs on the stream re-keyed by terminal
# (section 8): a terminal's payments come from all six partitions of `transactions`, each
# processed at its own pace, so for one terminal event time no longer arrives in order. A
# payment that reaches its window after the window closed (end + 1 minute of grace) is late
# for it: Quix skips it for that window (the app counts these). The customer windows never
# see this here: a customer's payments sit in one partition, in order. Order in Kafka holds
# per partition only, and a repartition mixes partitions: that is when grace periods matter.
#
# ## 7. State, and what its changelog holds
#
# The customer windows of the features (1, 7 and 30 days) need each customer's recent
# payments, so the app keeps them as **state**: per customer, two sorted lists, event times
# (`"t"`) and amounts (`"a"`), trimmed to the last 30 days (`_customer_windows` in
# `rtml/features/app.py`). The state lives in RocksDB on local disk, and every change is also
# written to a **changelog topic**. If the process dies, a new one rebuilds the state from
# the changelog before it processes anything (the integration tests kill it with SIGKILL
# and check that nothing changes).
#
# Quix creates one changelog per state store, named after the consumer group, plus the
# repartition topics of each `group_by`:

# %%
from rtml.features.runner import count_records, internal_topics  # noqa: E402

pd.DataFrame(
    [
        {
            "kind": t.split("__", 1)[0],
            "topic (after the group)": t.split("--", 1)[1],
            "records": count_records(settings, t),
        }
        for t in internal_topics(settings, run.group)
    ]
)

# %% [markdown]
# The changelog has as many partitions as the input topic, and the state of a key sits in
# the same partition number as the key's records: restoring partition 3's state reads only
# changelog partition 3. Its keys are `<message key>|<state key>`; its values are JSON.
# Here is what it holds for the busiest customer:

# %%
from rtml.features.outputs import read_records  # noqa: E402
from rtml.partitioner import partition_for  # noqa: E402

store = next(t for t in internal_topics(settings, run.group) if t.endswith("transactions--default"))
customer_key = str(busiest).encode()
changelog = [
    m
    for m in read_records(settings, store, [partition_for(customer_key, 6)])
    if m.key().startswith(customer_key + b"|")
]
latest = {m.key(): m.value() for m in changelog}  # what compaction keeps: the last per key
times = json.loads(latest[customer_key + b'|"t"'])
last_ms = int(theirs["event_time_ms"].max())
in_30_days = int((theirs["event_time_ms"] > last_ms - 30 * DAY_MS).sum())
print(f"{len(theirs)} payments of customer {busiest}, {len(changelog)} changelog records")
print(f"latest 't' holds {len(times)} times; they made {in_30_days} payments in the last 30 days")
pd.DataFrame(
    [
        {"offset": m.offset(), "key": m.key().decode(), "value": m.value().decode()[:70] + "..."}
        for m in changelog[-4:]
    ]
)

# %% [markdown]
# Far fewer changelog records than payments: within a checkpoint the app changes a key's
# state many times, and Quix writes only the value it has when it commits (every second
# here), together with the input offsets that value covers (the header
# `__processed_tp_offsets__`). That is all a restore needs: processing resumes from the
# offsets committed with the state. And only the latest value of each key matters, so
# changelog topics are **compacted**: the log cleaner drops older values of a key, and the
# topic stays about as large as the state, not as large as its history.
#
# ## 8. Joins, and why they need co-partitioning
#
# The app enriches each payment with the customer's home and the terminal's place (their
# distance is a feature, `terminal_distance`). Both come from compacted topics, which are
# tables: the latest profile per id. `join_asof` is a **stream-table join**: for a payment
# at time t it looks up the table's version of that key valid at t, in the app's own state.
#
# That lookup is **local**: the instance that processes partition 3 of `transactions` holds
# only partition 3 of `customers`. It works only if every key sits in the same partition
# number on both sides, that is, the topics are **co-partitioned**: the same key, the same
# number of partitions and the same partitioner (murmur2, week 1). `partition_for` is that
# partitioner in Python; compare it with where the records really are:

# %%
from rtml.clients import admin  # noqa: E402


def where(topic: str) -> dict[bytes, set[int]]:
    """Key -> the partitions of `topic` its records are in."""
    found: dict[bytes, set[int]] = {}
    for m in read_records(settings, topic):
        found.setdefault(m.key(), set()).add(m.partition())
    return found


counts = {t: len(m.partitions) for t, m in admin(settings).list_topics(timeout=10).topics.items()}
in_tx, in_customers = where("transactions"), where("customers")
pd.DataFrame(
    [
        {
            "customer key": k.decode(),
            "partition_for(key, 6)": partition_for(k, counts["transactions"]),
            "in transactions": sorted(in_tx[k]),
            "in customers": sorted(in_customers[k]),
            "partition_for(key, 4)": partition_for(k, 4),
        }
        for k in sorted(in_tx.keys() & in_customers.keys(), key=int)[:8]
    ]
)

# %% [markdown]
# Every key is in the same partition number in both topics, the one `partition_for` names.
# The last column is why partition counts must match: with 4 partitions most keys would land
# elsewhere, and the join would look for profiles in the wrong place and silently find none.
# `check_topics` in the app refuses to start if the counts differ.
#
# The terminal join needs the stream keyed by **terminal**, not customer. `group_by` writes
# each payment, re-keyed, to a **repartition topic** (Kafka Streams does the same for
# `selectKey`; Flink shuffles over the network), produced with the same murmur2 partitioner
# as the `terminals` topic, so the join is local again:

# %%
by_terminal = next(t for t in internal_topics(settings, run.group) if t.endswith("--by-terminal"))
in_repartition, in_terminals = where(by_terminal), where("terminals")
pd.DataFrame(
    [
        {
            "terminal key": k.decode(),
            "partition_for(key, 6)": partition_for(k, counts["terminals"]),
            "in the repartition topic": sorted(in_repartition[k]),
            "in terminals": sorted(in_terminals[k]),
        }
        for k in sorted(in_repartition.keys() & in_terminals.keys(), key=int)[:8]
    ]
)

# %% [markdown]
# A third join pairs each payment with its fraud label, which arrives a week later: a
# **stream-stream** join on the transaction id (both sides are streams of events; the app
# keeps each side in state for a bounded time), written to `transactions.labelled`.
#
# ## 9. Why the labels are a global table
#
# The terminal features count the fraud labels *known at the payment's time* for the
# payment's terminal. Labels are keyed by transaction id, so one terminal's labels are
# spread over every partition of `labels`:

# %%
labels_of = sim.labels[sim.labels["terminal_id"] == terminal]
spread = pd.Series(
    [partition_for(str(t).encode(), counts["labels"]) for t in labels_of["transaction_id"]]
).value_counts().sort_index()
pd.DataFrame({f"labels of terminal {terminal}": spread}).rename_axis("labels partition")

# %% [markdown]
# A keyed join would first re-key the labels by terminal, through a repartition topic fed
# from all six label partitions, each read at its own pace. Whether a label stamped just
# before a payment was read before that payment would then depend on which partition
# happened to be fetched first: the feature would change from run to run, and would not
# equal the batch definition.
#
# So `LabelTable` (`rtml/features/labels.py`) is a **global table**, Kafka Streams'
# `GlobalKTable`: every process reads all label partitions itself, and before computing the
# features of a payment at time t it reads labels until every label partition is past t.
# Same answer on every run. The topic is its changelog (it is rebuilt from `labels` at
# start-up); the cost is memory: every process holds a month of labels.
#
# ## 10. Late data: what the app did
#
# The app ran with your grace period. Which of the out-of-order payments did it keep, and
# which did it send to `transactions.late`?

# %%
from rtml.dlq import read_origin  # noqa: E402
from rtml.schemas.wire import WireDeserializer  # noqa: E402

decode = WireDeserializer.for_topic(settings, "transactions")
late_records = read_records(settings, "transactions.late")
late_ids = {decode(m.value())["transaction_id"] for m in late_records}
burst["outcome"] = np.where(burst["transaction_id"].isin(late_ids), "late", "kept")
burst["predicted"] = np.where(burst["delay_ms"] > grace_ms, "late", "kept")
differ = int((burst["outcome"] != burst["predicted"]).sum())
print(
    f"grace {grace_ms / 1000:.1f} s: {len(late_ids)} of {len(burst)} records late "
    f"({len(late_ids) / len(burst):.1%}); predicted {expected_late}; "
    f"records where the prediction and the app differ: {differ}"
)
assert differ == 0, burst[burst["outcome"] != burst["predicted"]]
print("why, in the late record's headers:", read_origin(late_records[0].headers())["error"])
pd.crosstab(burst["customer_id"], burst["outcome"])

# %%
burst["order sent"] = burst.index
burst["event time"] = pd.to_datetime(burst["event_time_ms"], unit="ms")
px.scatter(
    burst,
    x="order sent",
    y="event time",
    color="outcome",
    facet_row="customer_id",
    category_orders={"customer_id": sorted(burst["customer_id"].unique())},
    title="Out-of-order payments in the order they were sent: kept or late",
    height=180 * n_late_customers,
)

# %% [markdown]
# A late record is not lost: it sits in `transactions.late` with its original bytes and
# where it came from, so it can be inspected, counted in monitoring, or fed to a batch
# correction. What a grace period buys is a bound on how long results stay open.
#
# ## 11. Stream == batch: no training/serving skew
#
# The model is trained on features computed in bulk from history (`batch_features`,
# pandas) and served features computed one event at a time by the app. If the two disagree,
# even slightly (a window edge that is open on one side and closed on the other, a label
# counted before it was known), the model meets numbers in production it never saw in
# training: **training/serving skew**, a quiet and common way for a good model to do
# badly. The cure is one definition (`rtml/features/definitions.py`) computed by both paths,
# and this check: every feature of every transaction of the history, stream against batch.

# %%
from rtml.features.batch import batch_features  # noqa: E402
from rtml.features.definitions import FEATURE_COLUMNS  # noqa: E402
from rtml.features.outputs import differences, read_features  # noqa: E402

stream = read_features(settings)
history = stream[stream["transaction_id"].isin(sim.transactions["transaction_id"])]
batch = batch_features(sim.transactions, sim.labels, sim.customers, sim.terminals)
print(f"{len(history):,} features records for {len(batch):,} transactions of the history")
gaps = differences(history, batch, [*FEATURE_COLUMNS, "terminal_distance"])
assert len(history) == len(batch) and gaps.max() < 1e-9, gaps
gaps.to_frame()

# %% [markdown]
# Counts agree exactly; means and risks differ by at most a rounding error (0 or about
# 1e-12), because the stream adds amounts one at a time and pandas in bulk. With
# `impl = "labs"`, the customer columns are computed by your `customer_window`.
#
# ## Clean up
#
# The app is stopped (its `with` block ended). Its consumer group, state folder and the
# internal topics Quix created for it are no longer needed:

# %%
from rtml.features.runner import remove_group  # noqa: E402

print(f"removed {len(remove_group(settings, run.group))} internal topics of group {run.group}")

# %% [markdown]
# ## Your grade
# The same checks `make grade WEEK=2` runs.

# %%
from rtml.grade import grade  # noqa: E402

print(grade("week2", impl=impl).render())
