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
# # Week 5 (bonus): beyond Kafka
#
# Four weeks built one system on Kafka. This bonus week sets parts of it beside other
# streaming tools, on the same data, and measures the difference instead of describing it:
#
# 1. **Kafka Streams**: one feature written in Kafka's own Java library, run beside Quix on
#    the same topic, equal for every transaction;
# 2. **Azure Stream Analytics**: the live windows as an ASA query, and where ASA's window
#    rules and Quix's differ (a model of ASA's documented rules: there is no Azure here);
# 3. **Kinesis**: the history, the features and the scores on Kinesis streams (a local moto
#    server), equal to the Kafka run; shards against partitions;
# 4. **EventBridge**: routing card events by rules, against Kafka consumers that filter;
# 5. **RabbitMQ**: a work queue against a consumer group: order, redelivery, replay.
#
# Each section starts what it needs and stops it before it ends. Run it against the lab
# cluster (`make lab`) or any cluster rtml reaches. There are no exercises this week.
#
# Read more: [Beyond Kafka](../docs/beyond/index.md).

# %% tags=["parameters"]
impl = "solutions"  # the exercise code rtml calls (the Kinesis path uses weeks 1 and 2's)
# kafka streams
# A small history: 14 days, so the 7-day window fills.
peer_customers = 30
peer_terminals = 60
peer_days = 14
peer_seed = 7
peer_timeout_s = 180.0  # at most this long for each app to catch up

# stream analytics
asa_customer = 1  # the key whose windows are drawn
asa_start = "2018-04-02 09:00"  # UTC; the hand-placed payments below are on this morning

# kinesis
kinesis_customers = 20  # a small history: about 200 transactions
kinesis_terminals = 40
kinesis_days = 14
shards = 2  # shards per Kinesis stream, partitions per Kafka topic
kinesis_model = None  # saved model version to score with; None: the newest, or train a small one

# eventbridge
n_events = 60  # card events to write, for n_cards new cards
n_cards = 5
bus_seed = 7

# rabbitmq
messages = 2000  # transactions through each system
kill_after = 200  # SIGKILL one RabbitMQ worker after it processed this many
work_ms = 1.0  # simulated work per message, so the kill lands mid-run

# %%
import os

os.environ["RTML_IMPL"] = impl

# %% [markdown]
# ## Kafka Streams beside Quix: one feature, two frameworks
#
# The feature app is written with Quix Streams (Python). Kafka's own stream processing
# library is Kafka Streams (Java). Here one feature, each customer's number of payments and
# their mean amount over the last 7 days (the current payment included), is written in Kafka
# Streams with its Processor API (`infra/streams/`), built by Maven once, and run beside a
# slim Quix app that computes the same feature, on the same input. Then both outputs are
# checked against the batch reference, transaction by transaction.
#
# Read more: [Kafka Streams beside Quix](../docs/beyond/kafka-streams.md).

# %%
import uuid

from rtml.clients import admin
from rtml.config import Settings
from rtml.features.batch import batch_features
from rtml.features.runner import count_records, fresh_topics, remove_group
from rtml.peers.compare import compare
from rtml.peers.quix import QuixPeerRun
from rtml.peers.streams import StreamsPeer, ensure_built, new_app_id, read_peer
from rtml.poll import until
from rtml.schemas import register_all
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.producer import replay

settings = Settings.from_env()

# %% [markdown]
# First the input: a fresh `transactions` topic with a replayed history. Then the Java
# build: Maven compiles the peer and copies its jars (Kafka Streams, Avro) into rtml's jar
# cache, in a folder named after a hash of the sources, so this runs Maven only the first
# time (about a minute) and never again until the Java code changes.

# %%
fresh_topics(settings, ["transactions"])
register_all(settings)
sim = simulate(SimulationParams(peer_customers, peer_terminals, peer_days, seed=peer_seed))
print(replay(settings, sim, progress=False).summary())
n = len(sim.transactions)
print("jar folder:", ensure_built(settings).name)

# %% [markdown]
# Both apps read `transactions` from the start, each in its own consumer group (Kafka
# Streams calls it the *application id*), each writing JSON to its own topic. The Java app
# runs as a process rtml owns (pid file, log) and stops cleanly on SIGTERM: it commits its
# offsets and flushes its state store first.

# %%
run_id = uuid.uuid4().hex[:6]
peer = StreamsPeer(settings, app_id=new_app_id(), output=f"peer-{run_id}.streams")
quix = QuixPeerRun(settings, group=f"peer-{run_id}-quix", output=f"peer-{run_id}.quix")
try:
    quix.start()
    peer.start()
    for topic in (peer.output, quix.output_topic):
        until(lambda t=topic: count_records(settings, t) >= n, peer_timeout_s, f"{n} records in {topic}")
finally:
    peer.stop()
    quix.stop()
print(peer.log_tail(300))

# %% [markdown]
# Now the check that matters: for every transaction, the same count and a mean within
# 1e-9 of the batch reference (`rtml.features.batch`, pandas), for both apps.

# %%
reference = batch_features(sim.transactions, sim.labels)
streams_out = read_peer(settings, peer.output)
quix_out = read_peer(settings, quix.output_topic)
print("Kafka Streams:", compare(streams_out, reference, who="the Kafka Streams peer").line())
print("Quix:         ", compare(quix_out, reference, who="the slim Quix app").line())

# %% [markdown]
# Side by side, for the busiest customer's last payments: the same numbers, computed by
# two frameworks in two languages.

# %%
busiest = int(sim.transactions["customer_id"].value_counts().idxmax())
columns = ["transaction_id", "tx_datetime", "customer_nb_tx_7d", "customer_avg_amount_7d"]
side = streams_out[streams_out["customer_id"] == busiest][columns].merge(
    quix_out[columns], on=["transaction_id", "tx_datetime"], suffixes=(" (streams)", " (quix)")
)
side.sort_values("tx_datetime").tail(8)

# %%
# Clean up: the consumer groups, changelog topics, local state and output topics of both runs.
peer.remove()
remove_group(settings, quix.group)
client = admin(settings, timeout=10)  # kept in a name: a collected client cancels its futures
for future in client.delete_topics([peer.output, quix.output_topic]).values():
    future.result()

# %% [markdown]
# ## The same windows in Azure Stream Analytics
#
# `infra/asa/features.asaql` writes the live windows as an ASA query. There is no Azure
# here: `rtml.asa` evaluates the query's window clauses by ASA's documented rules (a model,
# not ASA), and we set them beside Quix's windows on the same payments.

# %%
import pandas as pd

from rtml.asa.query import load_job

job = load_job()
pd.DataFrame(
    [
        {
            "ASA": "TumblingWindow(hour, 1)",
            "bounds": "(start, end]",
            "Quix": "tumbling_window(1 h)",
            "Quix bounds": "[start, end)",
        },
        {
            "ASA": "HoppingWindow(minute, 60, 15)",
            "bounds": "(start, end]",
            "Quix": "hopping_window(1 h, 15 min)",
            "Quix bounds": "[start, end)",
        },
        {
            "ASA": "SlidingWindow(hour, 1)",
            "bounds": "(t - 1 h, t], on entry and exit",
            "Quix": "sliding_window(1 h)",
            "Quix bounds": "[t - 1 h, t], at events",
        },
        {
            "ASA": "SessionWindow(minute, 30, 120)",
            "bounds": "to last + 30 min, cut at 2 h checks",
            "Quix": "session_window(30 min)",
            "Quix bounds": "[first, last + 1 ms), no maximum",
        },
        {
            "ASA": "(none)",
            "bounds": "",
            "Quix": "tumbling_count_window(5)",
            "Quix bounds": "every 5 events",
        },
    ]
)

# %% [markdown]
# Hand-placed payments: one on the hour, one exactly an hour later, one 10 minutes after
# that. Quix's windows are computed with its own rules by `quix_reference` below, the same
# rules the app's windows follow ([start, end) for time windows, [t - 1 h, t] for sliding).

# %%
t0 = int(pd.Timestamp(asa_start, tz="UTC").timestamp() * 1000)
H, M = 3_600_000, 60_000
tx = pd.DataFrame(
    {
        "customer_id": asa_customer,
        "terminal_id": [1, 2, 3],
        "tx_amount": [10.0, 20.0, 30.0],
        "event_time_ms": [t0, t0 + H, t0 + 70 * M],
    }
)

from rtml.asa.semantics import evaluate


def quix_reference(kind: str) -> pd.DataFrame:
    """Quix's windows for these payments: tumbling [s, s + 1 h), sliding [t - 1 h, t]."""
    ts = tx["event_time_ms"]
    rows = []
    if kind == "tumbling":
        for s in sorted({t // H * H for t in ts}):
            inside = tx[(ts >= s) & (ts < s + H)]
            rows.append({"start": s, "end": s + H, "count": len(inside)})
    else:
        for t in ts:
            inside = tx[(ts >= t - H) & (ts <= t)]
            rows.append({"start": t - H, "end": t, "count": len(inside)})
    return pd.DataFrame(rows)


frames = []
for kind in ("tumbling", "sliding"):
    asa = evaluate(job.window(kind), tx)[["start", "end", "count"]].assign(engine="ASA", kind=kind)
    quix = quix_reference(kind).assign(engine="Quix", kind=kind)
    frames += [asa, quix]
side = pd.concat(frames, ignore_index=True)
side

# %%
import plotly.express as px

side["lane"] = side["kind"] + " · " + side["engine"]
side["from"] = pd.to_datetime(side["start"], unit="ms", utc=True)
side["to"] = pd.to_datetime(side["end"], unit="ms", utc=True)
fig = px.timeline(side, x_start="from", x_end="to", y="lane", color="engine", text="count")
for t in tx["event_time_ms"]:
    fig.add_vline(x=pd.Timestamp(t, unit="ms", tz="UTC"), line_dash="dot")
fig.update_layout(height=350, title="The same payments, ASA's windows beside Quix's")
fig

# %% [markdown]
# The payment on the hour closes ASA's 08:00-09:00 window and opens Quix's 09:00-10:00 one.
# The payment exactly an hour later: Quix's sliding window [t - 1 h, t] still holds the first,
# ASA's (t - 1 h, t] does not, and ASA emits extra windows when payments leave (exits).
# `tests/integration/test_features.py` makes the same comparison against the live app's output.

# %% [markdown]
# ## Kinesis as an alternative stream
#
# The simulator's history, rtml's feature code and its scoring code, run on Amazon Kinesis
# streams instead of Kafka topics: locally, against a moto server (AWS's APIs emulated in
# one process) that this section starts and stops. One stream abstraction
# (`rtml.aws.streams`) has a Kafka and a Kinesis implementation; the same pipeline runs on
# both and must give the same prediction for every transaction.
# Read more: [Kinesis as an alternative stream](../docs/beyond/kinesis.md).

# %%
import atexit
import datetime as dt
import uuid

import pandas as pd

from rtml.aws.pipeline import Pipeline, stream_names
from rtml.aws.server import MotoServer, client
from rtml.aws.streams import KafkaStream, KinesisStream
from rtml.clients import admin
from rtml.config import Settings
from rtml.model import registry
from rtml.model.update import Scorer
from rtml.partitioner import partition_for
from rtml.schemas import register_all
from rtml.simulate import SimulationParams, simulate

settings = Settings.from_env()
register_all(settings)
server = MotoServer(settings)
endpoint = server.up()
atexit.register(server.down)  # stopped even if a cell below fails; the last cell stops it too
print(f"moto on {endpoint}")

if kinesis_model is None and registry.versions(settings):
    kinesis_model = registry.versions(settings)[-1]
if kinesis_model is None:  # no saved model yet: a small logistic regression, as `rtml model train` does
    from rtml.model.build import build
    from rtml.model.dataset import training_set
    from rtml.model.train import KINDS

    train = training_set(simulate(SimulationParams(60, 120, 21, seed=4)))
    trained = build(train, {"kind": "simulation"}, kinds=(KINDS[0],))
    kinesis_model = registry.save(settings, trained, plot=False)
scorer = Scorer.load(registry.load(settings, kinesis_model))
sim = simulate(SimulationParams(kinesis_customers, kinesis_terminals, kinesis_days, seed=11))
print(f"{len(sim.transactions)} transactions, model {kinesis_model}")

# %% [markdown]
# Run the whole path on Kinesis: history in (partition key: customer id), customer windows,
# a second stream keyed by terminal (the Kinesis analogue of the Quix app's repartition
# topic), terminal windows, features, predictions. No Kafka topic is involved.

# %%
kinesis = client(endpoint, "kinesis")
prefix = f"nb{uuid.uuid4().hex[:6]}"
streams = {role: KinesisStream(kinesis, name) for role, name in stream_names(prefix).items()}
on_kinesis = Pipeline(settings, streams)
print(on_kinesis.run(sim, scorer, units=shards).sentence())

# %% [markdown]
# **Shards against partitions.** Kinesis hashes the partition key with MD5 into a 128-bit
# number and puts the record in the shard whose hash-key range holds it; Kafka takes
# murmur2 of the key modulo the partition count. Either way, one customer, one place, one
# order.

# %%
ranges = kinesis.list_shards(StreamName=streams["transactions"].name)["Shards"]
for shard in ranges:
    r = shard["HashKeyRange"]
    first, last = int(r["StartingHashKey"]), int(r["EndingHashKey"])
    print(shard["ShardId"], f"hash keys {first:.3e} .. {last:.3e}")
shards_now = streams["transactions"].read()
placed = {rec.key.decode(): shard for shard, recs in shards_now.items() for rec in recs}
customers = sorted(placed, key=int)[:8]
pd.DataFrame(
    {
        "customer": customers,
        "Kinesis shard": [placed[c] for c in customers],
        f"Kafka partition (of {shards})": [partition_for(c.encode(), shards) for c in customers],
    }
)

# %% [markdown]
# **Replay.** Kafka seeks to an offset, or to a time through `offsets_for_times`; Kinesis
# starts a shard iterator: `TRIM_HORIZON` (the oldest record kept: 24 hours by default, up
# to 365 days), `AT_SEQUENCE_NUMBER`, `AT_TIMESTAMP` or `LATEST`. An iterator expires after
# 5 minutes; an offset stays valid as long as its record is kept.

# %%
preds = streams["predictions"]
shard = preds.shards()[0]
records = preds.read()[shard]
middle = records[len(records) // 2]


def count_from(kind: str, **where) -> int:
    """Records of the shard read with a `kind` iterator, up to the tip."""
    it = kinesis.get_shard_iterator(
        StreamName=preds.name, ShardId=shard, ShardIteratorType=kind, **where
    )["ShardIterator"]
    return len(kinesis.get_records(ShardIterator=it, Limit=10_000)["Records"])


pd.Series(
    {
        "TRIM_HORIZON": count_from("TRIM_HORIZON"),
        "AT_SEQUENCE_NUMBER (the middle record)": count_from(
            "AT_SEQUENCE_NUMBER", StartingSequenceNumber=middle.position
        ),
        "AT_TIMESTAMP (now)": count_from("AT_TIMESTAMP", Timestamp=dt.datetime.now(dt.UTC)),
        "LATEST": count_from("LATEST"),
    },
    name=f"records read from {shard}",
)

# %% [markdown]
# The same pipeline on Kafka topics, then the two sets of predictions side by side. The
# test `tests/integration/test_kinesis.py` also compares them with the lab's own path (the
# Quix feature app and the prediction service's scoring of `features`).

# %%
topics = {role: KafkaStream(settings, name) for role, name in stream_names(prefix).items()}
on_kafka = Pipeline(settings, topics)
on_kafka.run(sim, scorer, units=shards)
both = on_kinesis.predictions().merge(
    on_kafka.predictions(), on="transaction_id", suffixes=("_kinesis", "_kafka")
)
same = (both.decision_kinesis == both.decision_kafka).all()
gap = (both.score_kinesis - both.score_kafka).abs().max()
print(f"{len(both)} transactions in both; same decision: {same}; largest score gap: {gap:.1e}")
both.head()

# %% [markdown]
# Stop moto (its streams are in memory and go with it) and delete the Kafka topics.

# %%
admin(settings, timeout=10).delete_topics([t.name for t in topics.values()])
stopped = server.down()

# %% [markdown]
# ## EventBridge routing beside Kafka consumers
#
# Kafka: every consumer reads all of `card-events` and keeps what it wants. EventBridge:
# events go on a bus, and rules with event patterns push each matching event to a target,
# here SQS queues. This section writes card events to `card-events` with rtml's serializer,
# routes them through EventBridge rules on a moto server it starts and stops, and compares
# with a Kafka consumer that filters the topic with the same patterns.
# Read more: [EventBridge routing beside Kafka consumers](../docs/beyond/eventbridge.md).

# %%
import atexit
import json
import random
import uuid
from datetime import UTC, datetime

import pandas as pd

from rtml.aws.eventbridge import RULES, Router, card_events, kafka_matches
from rtml.aws.server import MotoServer
from rtml.cards.service import EVENTS
from rtml.cards.state import card_key
from rtml.clients import durable_producer
from rtml.config import Settings
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer

settings = Settings.from_env()
register_all(settings)
server = MotoServer(settings)
endpoint = server.up()
atexit.register(server.down)  # stopped even if a cell below fails; the last cell stops it too
print(f"moto on {endpoint}")
for name, pattern in RULES.items():
    print(f"rule {name}: {json.dumps(pattern)}")

# %% [markdown]
# Card events as the card service writes them: blocks, alerts, declines, with the score in
# the reason text (the bridge turns it into a number a rule can compare).

# %%
rng = random.Random(bus_seed)
run = uuid.uuid4().hex[:6]
cards = [rng.randrange(10**9, 2 * 10**9) for _ in range(n_cards)]
kinds = ["CardBlocked", "AlertRaised", "TransactionDeclined", "CommandRejected", "CardUnblocked"]
sent = [
    {
        "event_id": f"{run}-{i}",
        "card_id": cards[i % n_cards],
        "version": i + 1,
        "type": kinds[i % len(kinds)],
        "transaction_id": i,
        "reason": f"REVIEW: score {rng.uniform(0.5, 1.0):.3f} by model v1",
        "command_id": f"{run}-c{i}",
        "occurred_at": datetime.now(UTC),
    }
    for i in range(n_events)
]
encode = PreparedSerializer.for_topic(settings, EVENTS)
producer = durable_producer(settings, partitioner="murmur2_random")
for event in sent:
    producer.produce(EVENTS, key=card_key(event["card_id"]), value=encode(event))
assert producer.flush(30) == 0
events = [e for e in card_events(settings) if e["event_id"].startswith(f"{run}-")]
print(f"{len(events)} events read back from {EVENTS}")

# %% [markdown]
# Push: put them on a bus whose rules route to queues. Pull: filter the topic's events with
# the same patterns. Same event ids?

# %%
router = Router(endpoint, f"nb-{run}")
results = router.route(events)
pd.DataFrame(
    [(r.rule, len(r.routed), len(r.filtered), r.same) for r in results],
    columns=["rule", "EventBridge routed", "Kafka filter kept", "same ids"],
)

# %% [markdown]
# **No replay without an archive.** A rule added now routes only what comes from now on;
# a new Kafka consumer group reads the whole topic from offset 0.

# %%
late_rule = {"source": ["rtml.cards"], "detail-type": ["TransactionDeclined"]}
url = router.sqs.create_queue(QueueName=f"nb-{run}-declines")["QueueUrl"]
attributes = router.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
arn = attributes["Attributes"]["QueueArn"]
bus = router.bus
router.events.put_rule(Name="declines", EventBusName=bus, EventPattern=json.dumps(late_rule))
router.events.put_targets(Rule="declines", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
waiting = router.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
# The same pattern, applied by a new consumer that reads the topic from offset 0:
kept = kafka_matches(events, late_rule)
print(f"the new rule's queue: {len(waiting)} events; a new Kafka consumer: {len(kept)}")

# %% [markdown]
# Stop moto: its buses and queues are in memory and go with it.

# %%
stopped = server.down()

# %% [markdown]
# ## RabbitMQ beside Kafka
#
# The same transactions through a RabbitMQ work queue (two competing workers, one killed
# mid-run) and through a Kafka consumer group. Watch per-key order, redelivery, replay and
# throughput. RabbitMQ is Debian's package (`make rabbitmq`); rtml starts its own broker.

# %%
from rtml.compare.rabbit import compare, table
from rtml.config import Settings
from rtml.rabbit import RabbitServer

settings = Settings.from_env()
server = RabbitServer(settings)
port = server.up()
print(f"RabbitMQ on amqp://127.0.0.1:{port}")

# %%
try:
    rabbit, kafka = compare(settings, port, messages, kill_after=kill_after, work_ms=work_ms)
finally:
    server.down(wipe=True)

# %% [markdown]
# Read the table: RabbitMQ's two workers share each customer's transactions, so some are
# processed out of order; the killed worker's unacknowledged messages come again, flagged
# `redelivered`. Kafka keeps each customer on one partition and one consumer. After
# processing, Kafka reads everything again from offset 0; RabbitMQ's queue is empty.

# %%
from IPython.display import Markdown

Markdown(table(rabbit, kafka))
