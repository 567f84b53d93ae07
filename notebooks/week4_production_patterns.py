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
# # Week 4: Event-driven architecture and production patterns
#
# Week 3 ended with a prediction for every payment. This week the predictions start to *do*
# something: cards get blocked, alerts raised, card holders told. That is the job of four
# small services that talk only through Kafka topics, and of the patterns that keep them
# correct when processes crash, records are bad, a downstream is slow, or history has to be
# processed again.
#
# You will:
# 1. map the services and their messages, and follow one payment by its trace headers;
# 2. run the card service: commands in, events out, state as a fold of events
#    (**exercise**), a read model built from the events (CQRS), rebuilt identically;
# 3. SIGKILL the card service mid-stream, exactly-once against at-least-once, and remove
#    the duplicates with an idempotent consumer (**exercise**);
# 4. retry what may pass, dead-letter what never will (**exercise**), and redrive a record
#    from the dead-letter queue once its cause is fixed;
# 5. watch backpressure turn a slow downstream into consumer lag instead of memory;
# 6. replay: reset a stopped consumer group and get the same output again;
# 7. monitor it all: per-service counters, consumer lag, and one payment's path.
#
# Exercises live in `labs/week4/`; with `impl = "labs"` below, every service this notebook
# starts runs your code (so finish them first: a service whose fold raises
# `NotImplementedError` cannot start), and `rtml grade week4` (or `make grade WEEK=4`)
# grades them.
#
# The notebook starts its own service instances, in consumer groups of its own, and stops
# each one before the section ends. The lab's background services would handle the same
# commands a second time, so stop them first: `rtml services down` (`rtml services up`
# starts them again afterwards).
#
# Read more: [event sourcing](../docs/patterns/event-sourcing.md), [CQRS](../docs/patterns/cqrs.md),
# [exactly-once](../docs/patterns/exactly-once.md),
# [idempotent consumers](../docs/patterns/idempotent-consumers.md),
# [retries and DLQs](../docs/patterns/retries-dlq.md), [backpressure](../docs/patterns/backpressure.md),
# [request-reply vs events](../docs/patterns/request-reply.md), [replay](../docs/patterns/replay.md),
# [lessons from production streaming](../docs/writeups/lessons-from-production-streaming.md).

# %% tags=["parameters"]
impl = "solutions"  # "labs" runs your own exercise code
# Section 3: commands sent while the card service is killed and restarted.
crash_cards = 20
crash_commands = 1000  # per guarantee
crash_rate = 100.0  # commands per second
kills = 2  # SIGKILLs per guarantee
# Section 5: a producer at `bp_rate` records/s, a gateway taking (ms per record, seconds).
bp_rate = 400.0
bp_phases = [[0.0, 3.0], [10.0, 8.0], [0.0, 3.0]]
timeout_s = 180.0  # at most this long for anything to happen

# %%
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from IPython.display import display
from plotly.subplots import make_subplots

os.environ["RTML_IMPL"] = impl

from rtml.config import Settings  # noqa: E402
from rtml.impl import exercise  # noqa: E402
from rtml.poll import until  # noqa: E402
from rtml.schemas import register_all  # noqa: E402
from rtml.services.lifecycle import status as service_status  # noqa: E402
from rtml.topics import apply  # noqa: E402

settings = Settings.from_env()
print("cluster:", settings.bootstrap)
print("implementation:", impl)

running_services = [s.name for s in service_status(settings) if s.alive]
if running_services:
    raise RuntimeError(
        f"The lab's service(s) {', '.join(running_services)} are running and would handle "
        "this notebook's commands too: stop them with `rtml services down` first."
    )
apply(settings)  # the topic catalogue (card-commands, card-events, cards.dlq, ...)
register_all(settings)  # the Avro schemas of commands and events

# Everything this run creates has the run's id in its name: consumer groups, card ids.
RUN = uuid.uuid4().hex[:6]
GROUPS: list[str] = []  # deleted at the end
workdir = Path(tempfile.mkdtemp(prefix=f"week4-{RUN}-"))
card_ids = iter(range(random.randrange(10**9, 2 * 10**9, 10**5), 2 * 10**9 + 10**5))
started_ms = int(time.time() * 1000)  # section 6 replays the card events from here


def group(name: str) -> str:
    """A consumer group of this run (deleted in the clean-up)."""
    GROUPS.append(f"week4-{RUN}-{name}")
    return GROUPS[-1]


# %% [markdown]
# ## 1. The services and their messages
#
# Each box is a process, each cylinder a topic. Nobody calls anybody: a service reads a
# topic and writes another, so any of them can be down for a while and catch up later.
#
# ```mermaid
# flowchart LR
#     P[(predictions)] --> D[decision service]
#     D -->|BlockCard, RaiseAlert| C[(card-commands)]
#     C --> S[card service]
#     S -->|CardBlocked, AlertRaised, ...| E[(card-events)]
#     E --> PR[projection] --> RM[(read model: SQLite)]
#     E --> N[notification service] --> NT[(notifications)]
#     Q[(card-queries)] --> S -->|state now| R[(card-replies)]
#     S -.->|poison| DLQ[(cards.dlq)]
# ```
#
# - A **command** (`card-commands`) asks for something and may be refused: the decision
#   service asks to block the card of a payment scored DECLINE, to raise an alert for a
#   REVIEW.
# - An **event** (`card-events`) is a fact the card service decided: `CardBlocked`,
#   `AlertRaised`, `TransactionDeclined`, `CardUnblocked`, or `CommandRejected` with the
#   reason. Events are never changed, only appended; a card's state is what they add up to.
# - **Read models** are built from events for whoever needs to query them (the control
#   room's Events page reads the projection's SQLite file, never Kafka).
# - **Notifications** react to events; nobody asks the notification service for anything.
# - One **request-reply** exchange (`card-queries` -> `card-replies`) for a caller who
#   must have an answer now.
#
# Every record a service writes carries three trace headers (`rtml/trace.py`): its own
# `rtml.message_id`, the `rtml.correlation_id` of the payment that started it all
# (`tx-<transaction id>`, the same on every hop), and the `rtml.causation_id` of the
# message that caused it. A decision, its command, its event and its notification form a
# chain:

# %%
from rtml.trace import Trace, transaction_correlation  # noqa: E402

prediction = Trace("pred-73522", transaction_correlation(73522), "")
command_trace = prediction.child("BlockCard-73522")
event_trace = command_trace.child("BlockCard-73522#0")
notification_trace = event_trace.child("n-BlockCard-73522#0")
pd.DataFrame(
    [
        {"hop": hop, **{k: v.decode() for k, v in trace.headers()}}
        for hop, trace in [
            ("prediction", prediction),
            ("command", command_trace),
            ("event", event_trace),
            ("notification", notification_trace),
        ]
    ]
)

# %% [markdown]
# **What to notice:** the correlation id never changes along the chain, and each causation
# id is the message id one row up. So "everything about payment 73522" is one lookup by
# correlation id, and the causation ids put the results in order (section 7 does it).
#
# ## 2. Event sourcing and CQRS: the card service
#
# The card service keeps no table of cards. For each command it folds the card's events
# into its state, decides (`rtml.cards.aggregate.decide`: exactly one event per command,
# the command's own or `CommandRejected`), and appends the event. After a restart it
# rebuilds every card's state by folding `card-events` again.
#
# Commands are Avro records (`rtml/schemas/avro/card_command.avsc`), keyed by card id so
# that one card's commands stay in order in one partition. Here are a few for one card,
# two of which must be refused: a second block, and an unblock that names a stale version
# (**optimistic concurrency**: "unblock, if the card is still at version 2").

# %%
from rtml.cards.service import COMMANDS, EVENTS, card_service  # noqa: E402
from rtml.cards.state import card_key  # noqa: E402
from rtml.clients import durable_producer  # noqa: E402
from rtml.schemas.wire import PreparedSerializer, WireDeserializer  # noqa: E402

encode_command = PreparedSerializer.for_topic(settings, COMMANDS)
decode_event = WireDeserializer.for_topic(settings, EVENTS)
producer = durable_producer(settings)  # acks=all, idempotent, murmur2 partitioner


def command(command_id: str, card: int, kind: str, transaction_id: int, **extra) -> dict:
    """A card command as the decision service writes one."""
    return {
        "command_id": command_id,
        "card_id": card,
        "type": kind,
        "expected_version": None,
        "transaction_id": transaction_id,
        "reason": f"{kind} from the week 4 notebook",
        "issued_at": datetime.now(UTC),
        **extra,
    }


def send(commands: list[dict]) -> None:
    """Produce commands keyed by card, each starting its payment's trace; wait for acks."""
    for c in commands:
        tx = c["transaction_id"]
        trace = Trace(f"pred-{tx}", transaction_correlation(tx), "").child(c["command_id"])
        producer.produce(
            COMMANDS, encode_command(c), card_key(c["card_id"]), headers=trace.headers()
        )
        producer.poll(0)
    assert producer.flush(30) == 0, "commands not acknowledged"


card = next(card_ids)
tx0 = card * 10_000  # this card's payments' transaction ids
story = [
    command(f"{RUN}-s1", card, "RaiseAlert", tx0 + 1),
    command(f"{RUN}-s2", card, "BlockCard", tx0 + 2),
    command(f"{RUN}-s3", card, "BlockCard", tx0 + 3),  # already blocked
    command(f"{RUN}-s4", card, "DeclineTransaction", tx0 + 4),
    command(f"{RUN}-s5", card, "UnblockCard", tx0 + 5, expected_version=2),  # it is at 4
    command(f"{RUN}-s6", card, "UnblockCard", tx0 + 6),
]
pd.DataFrame(story)[["command_id", "card_id", "type", "expected_version", "transaction_id"]]

# %% [markdown]
# The card service is a `Stage` (`rtml/stage.py`): one loop shared by every week-4 service
# that consumes, calls a handler per record, produces, and commits. We run an instance in a
# thread of this kernel, in a consumer group of its own. A new group reads a topic from the
# beginning, which would decide every command anyone ever sent again; so before it starts
# we place the group at the end of its topics with the replay tool of section 6.
#
# While it runs we also ask it a question through the request-reply pair of topics
# (`CardQueries.ask`): it answers from the state it holds.

# %%
from rtml.cards.requests import QUERIES, CardQueries  # noqa: E402
from rtml.ops import replay  # noqa: E402
from rtml.ops.replay import Target  # noqa: E402
from rtml.stage import StageOptions  # noqa: E402


@contextmanager
def running(stage):
    """Run `stage` in a thread until the block ends; it is always stopped and joined."""
    ready = threading.Event()
    thread = threading.Thread(target=stage.run, kwargs={"ready": ready.set}, daemon=True)
    thread.start()
    try:
        until(lambda: ready.is_set() or not thread.is_alive(), timeout_s, f"{stage.name} up")
        if not thread.is_alive():
            raise RuntimeError(f"{stage.name} stopped at once: {stage.status.last_error}")
        yield stage
    finally:
        stage.stop()
        thread.join(60)


def until_left(group_id: str) -> None:
    """Wait until `group_id` has no member. A stage joins as a *static* member (its
    `group.instance.id` is group-instance), so a restarted instance gets its partitions back
    at once; the price is that the broker keeps a stopped one for its session timeout."""
    until(lambda: not replay.show(settings, group_id).members, 60, f"{group_id} empty", 1.0)


def start_at_the_end(group_id: str, topics: list[str]) -> None:
    """Commit the current end offsets of `topics` for a group that has not started yet."""
    replay.reset(settings, group_id, Target("latest"), topics=topics)


cards_group = group("cards")
start_at_the_end(cards_group, [COMMANDS, QUERIES])
service = card_service(settings, StageOptions(group=cards_group, instance=41))
queries = CardQueries(settings)
try:
    with running(service):
        send(story)
        until(lambda: service.status.records >= len(story), timeout_s, "the story's events")
        answer = queries.ask(card, timeout=30)
finally:
    queries.close()
print(service.status.line())
print("the card service says:", answer)

# %% [markdown]
# The events it appended, read back from `card-events` with their trace headers (the
# service copies the command's trace: same correlation id, caused by the command):

# %%
from rtml.features.outputs import read_records  # noqa: E402
from rtml.schemas import SchemaError  # noqa: E402


def events_of(cards: set[int]) -> list[dict]:
    """Every committed event of `cards` in log order, with its partition, offset and trace."""
    out = []
    for msg in read_records(settings, EVENTS):
        try:
            event = decode_event(msg.value())
        except SchemaError:
            continue  # a poison record: the projection sends those to projections.dlq
        if event["card_id"] in cards:
            headers = {k: v.decode() for k, v in msg.headers() or []}
            out.append(
                {
                    **event,
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "correlation_id": headers.get("rtml.correlation_id"),
                    "causation_id": headers.get("rtml.causation_id"),
                }
            )
    return out


story_events = events_of({card})
pd.DataFrame(story_events)[
    ["version", "type", "reason", "event_id", "correlation_id", "causation_id", "offset"]
]

# %% [markdown]
# ### Exercise: the fold
#
# The card's state is nothing but its events folded, oldest first, from an empty
# `CardState`. `apply_card_event` in `labs/week4/aggregate.py` is that fold: the card
# service, the projection and this cell all use the implementation you chose above.

# %%
from rtml.cards.state import CardState  # noqa: E402

apply_card_event = exercise("apply_card_event")
state = CardState(card)
states = []
for event in story_events:
    state = apply_card_event(state, event)
    states.append({"after": event["type"], **vars(state)})
assert state == answer  # the service's answer is the fold of its events
pd.DataFrame(states)

# %% [markdown]
# **What to notice:** six commands gave six events, versions 1 to 6 with no gap: a refused
# command is a fact too (`CommandRejected`, with the reason), so the history says *why*
# the card was not blocked twice. The state the service answered with equals the fold.
#
# ### CQRS: a read model built from the events
#
# The write side (commands, the aggregate) answers one question, "may this happen?". The
# questions people ask ("which cards are blocked?", "what happened to card 42?") are
# answered by a **read model**: `rtml.cards.projection` folds `card-events` into SQLite
# tables, with the same fold. Its offsets are stored in the same SQLite transaction as the
# rows they produced, so it is exactly-once without Kafka commits. The lab's projection
# service writes the control room's file; we run the same class into a file of our own,
# reading every partition itself (`subscribe=False`) and leaving poison records to the
# lab's projection (`dead_letter=False`).

# %%
from rtml.cards.projection import Projection, ProjectionOptions, rebuild  # noqa: E402
from rtml.cards.readmodel import ReadModel  # noqa: E402

projection_options = ProjectionOptions(
    db_path=workdir / "cards.sqlite",
    group=f"week4-{RUN}-projection",  # assigns only: nothing is committed for it
    batch_size=50,
    subscribe=False,
    dead_letter=False,
)
print(Projection(settings, projection_options).run_until_caught_up(timeout_s).line())
read_model = ReadModel(workdir / "cards.sqlite")
print(read_model.counts())
read_model.card(card)

# %%
read_model.card_history(card)[["version", "type", "reason", "correlation_id", "occurred_at"]]

# %% [markdown]
# The topic is the source of truth; the SQLite file is a cache of it. `rebuild` replays
# `card-events` from offset 0 into a new file, in batches of 500 instead of 50, and its
# `content_hash` (every card and event in a canonical order, without offsets) must match:

# %%
rebuilt = rebuild(settings, workdir / "rebuilt.sqlite", timeout=timeout_s)
print("projected:", read_model.content_hash())
print("rebuilt:  ", rebuilt.content_hash())
assert rebuilt.content_hash() == read_model.content_hash()

# %% [markdown]
# **What to notice:** the read model holds every card on the topic, not only ours (the
# lab's and other runs' events too), and the rebuild agrees with it hash for hash. Losing
# or corrupting a read model is an inconvenience, never a loss: replay the log. Changing a
# read model (a new column, a new table) is the same operation.
#
# ## 3. Exactly-once against at-least-once, with SIGKILL
#
# The card service commits its progress in one of two ways (`--guarantee`):
#
# - **exactly-once** (the default): each batch of commands is one Kafka transaction holding
#   its events *and* its input offsets. Killed mid-batch, the restarted instance fences the
#   old one (same `transactional.id`), the open transaction is aborted, readers with
#   `isolation.level=read_committed` never see its events, and the commands are decided
#   again: one event per command;
# - **at-least-once**: events are written at once and offsets committed every second.
#   Killed between two commits, the restarted instance decides again what it had handled
#   since the last commit: those commands get a second event, with the same `event_id`.
#
# We run it as a child process (`python -m rtml cards service ...`), send commands at a
# steady rate, kill it with SIGKILL (no clean-up, as a power cut) `kills` times while it
# writes, restart it each time, and count the events each command got.

# %%
from rtml.observe.lag import sample_lag  # noqa: E402
from rtml.patterns.consumer import end_offsets  # noqa: E402
from rtml.stage import read_statuses  # noqa: E402


def written() -> int:
    """Records appended to card-events so far (all partitions, aborted ones included)."""
    return sum(end_offsets(settings, EVENTS).values())


def feed(commands: list[dict], rate: float) -> None:
    """Send `commands` at `rate` per second, in tenths of a second."""
    step = max(1, int(rate / 10))
    for i in range(0, len(commands), step):
        send(commands[i : i + step])
        time.sleep(0.1)  # pacing the load, not synchronisation


def crash_run(guarantee: str, instance: int) -> tuple[list[dict], list[dict]]:
    """Commands and their committed events, with `kills` SIGKILLs of the card service."""
    rng = random.Random(7)
    cards = [next(card_ids) for _ in range(crash_cards)]
    kinds = ("RaiseAlert", "RaiseAlert", "BlockCard", "UnblockCard", "DeclineTransaction")
    commands = [
        command(
            f"{RUN}-{guarantee}-{i}", rng.choice(cards), rng.choice(kinds), cards[0] * 10_000 + i
        )
        for i in range(crash_commands)
    ]
    group_id = group(guarantee)
    start_at_the_end(group_id, [COMMANDS, QUERIES])
    argv = [sys.executable, "-m", "rtml", "cards", "service", "--group", group_id]
    argv += ["--instance", str(instance), "--guarantee", guarantee, "--max-batch", "100"]
    env = {**os.environ, **settings.to_env()}
    log_path = workdir / f"cards-{guarantee}.log"
    base = written()

    def handled_all() -> bool:
        """Every command has an event, and the group has committed all of card-commands:
        the last incarnation is up and has worked off what the one before left."""
        if len({e["command_id"] for e in events_of(set(cards))}) < len(commands):
            return False
        lag = sum(p.lag for p in sample_lag(settings, group_id).partitions if p.topic == COMMANDS)
        return lag == 0 and any(  # its status file says it runs (so it can stop cleanly)
            s.pid == proc.pid and s.state == "running" and s.group == group_id
            for s in read_statuses(settings, "cards")
        )

    with open(log_path, "w") as log, ThreadPoolExecutor(1) as pool:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        sending = pool.submit(feed, commands, crash_rate)
        try:
            for k in range(1, kills + 1):
                due = base + k * len(commands) // (kills + 1)
                until(lambda d=due: written() >= d, timeout_s, f"kill {k}'s moment", 0.05)
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                print(f"{guarantee}: SIGKILL {k} after {written() - base} event records")
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            sending.result()
            until(handled_all, timeout_s, "an event for every command", 1.0)
        except Exception:
            print(log_path.read_text()[-3000:])
            raise
        finally:
            proc.send_signal(signal.SIGINT)  # a clean stop: finish the batch, commit
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return commands, events_of(set(cards))


runs = {g: crash_run(g, 42 + i) for i, g in enumerate(("exactly-once", "at-least-once"))}

# %% [markdown]
# Now the same idempotent-consumer check a reader of `card-events` makes: keep an event the
# first time its `event_id` is seen, drop it after that.
#
# ### Exercise: the idempotent consumer
#
# `first_delivery` in `labs/week4/idempotence.py` remembers the last `window` message ids
# and answers whether one is new. The notification service skips duplicates with it (so a
# card holder is told once); here it deduplicates each run's events.

# %%
first_delivery = exercise("first_delivery")
rows = []
for guarantee, (commands, events) in runs.items():
    per_command = Counter(e["command_id"] for e in events)
    seen: dict[str, None] = {}
    kept = [e for e in events if first_delivery(seen, e["event_id"], 10_000)]
    rows.append(
        {
            "guarantee": guarantee,
            "commands": len(commands),
            "events": len(events),
            "commands with 2+ events": sum(n > 1 for n in per_command.values()),
            "duplicate events": len(events) - len(per_command),
            "after first_delivery": len(kept),
        }
    )
    assert set(per_command) == {c["command_id"] for c in commands}  # nothing lost
    assert len(kept) == len(commands) == len({e["command_id"] for e in kept})
exactly, at_least = rows
assert exactly["duplicate events"] == 0
versions: dict[int, list[int]] = {}
for e in runs["exactly-once"][1]:
    versions.setdefault(e["card_id"], []).append(e["version"])
assert all(v == list(range(1, len(v) + 1)) for v in versions.values())  # no gap, no repeat
pd.DataFrame(rows).set_index("guarantee")

# %% [markdown]
# A duplicate is not always a copy. The at-least-once service decided the command again *on
# a state that already included its first event*: a repeated `BlockCard` is now "already
# blocked" (`CommandRejected`), a repeated alert counts twice. Same `event_id`, different
# content, and a card service whose own state counts both:

# %%
_, alo_events = runs["at-least-once"]
by_id: dict[str, list[dict]] = {}
for e in alo_events:
    by_id.setdefault(e["event_id"], []).append(e)
repeated = [copies for copies in by_id.values() if len(copies) > 1]
print(f"{len(repeated)} event ids written twice or more")
if repeated:
    display(
        pd.DataFrame(repeated[0])[["event_id", "card_id", "version", "type", "reason", "offset"]]
    )

# %% [markdown]
# **What to notice:** exactly-once gives one event per command however the process dies,
# and each card's versions stay 1, 2, 3, ... (its state was rebuilt from committed events
# only). At-least-once loses nothing either, but repeats what it did since its last commit;
# readers that deduplicate by id get the right *set* of events, yet the at-least-once card
# service's own state (it folds every copy) drifts. That is why the card service, which
# keeps state, is exactly-once by default, while stateless readers can be at-least-once
# and idempotent. (How many duplicates a kill makes depends on where it lands between two
# commits, so the number changes from run to run.)
#
# ## 4. Retries and the dead-letter queue
#
# A record a handler cannot process must neither stop the service (every record behind it
# would wait) nor disappear. The stage asks `route_failure` after each failed attempt:
#
# - a **transient** failure (a dependency timed out) is retried with exponential backoff
#   (50 ms, 100 ms, 200 ms by default);
# - anything else, or a transient failure that outlasts its retries, goes **unchanged** to
#   `cards.dlq` with headers that say where it came from, why it failed, and after how many
#   attempts.
#
# ### Exercise: retry or dead-letter?
#
# `route_failure` in `labs/week4/dead_letters.py` makes that call for every week-4 stage.

# %%
from rtml.schemas import SchemaError  # noqa: E402
from rtml.stage import Transient  # noqa: E402

route_failure = exercise("route_failure")
pd.DataFrame(
    [
        {"error": repr(error), "attempts": attempts, "retries": 3, "route": route}
        for error, attempts in [
            (TimeoutError("the case system did not answer"), 1),
            (TimeoutError("the case system did not answer"), 3),
            (TimeoutError("the case system did not answer"), 4),
            (ConnectionRefusedError("registry down"), 2),
            (Transient("the registry did not answer"), 1),
            (SchemaError("not Avro of any known schema"), 1),
            (ValueError("card_id is negative"), 1),
        ]
        for route in [route_failure(error, attempts, 3)]
    ]
)

# %% [markdown]
# Now on the running card service. We pretend its handler needs a case-management system
# that times out for one card (a dependency outage), and send three records:
#
# 1. a command for that card: it times out, is retried 3 times, and is dead-lettered after
#    its 4th attempt;
# 2. a record that is not a command at all (bytes that are not Avro): poison, dead-lettered
#    at once;
# 3. a healthy command for another card: handled as usual, not held up by the others.

# %%
from rtml.dlq import dlq_topic  # noqa: E402
from rtml.ops import dlq  # noqa: E402

flaky_card, healthy_card = next(card_ids), next(card_ids)
case_system_down = threading.Event()


def with_case_system(handle):
    """The handler, with a call to a case system that times out for `flaky_card`."""

    def handle_or_time_out(msg):
        if case_system_down.is_set() and msg.key() == card_key(flaky_card):
            raise TimeoutError(f"the case system did not answer about card {flaky_card}")
        return handle(msg)

    return handle_or_time_out


dlq_group = group("cards-dlq")
start_at_the_end(dlq_group, [COMMANDS, QUERIES])
dlq_start = end_offsets(settings, dlq_topic("cards"))
service = card_service(settings, StageOptions(group=dlq_group, instance=44))
service.handler.handle = with_case_system(service.handler.handle)
case_system_down.set()
flaky = command(f"{RUN}-flaky", flaky_card, "RaiseAlert", flaky_card * 10_000)
with running(service):
    send([flaky])
    poison = durable_producer(settings)
    poison.produce(COMMANDS, b"not a command", card_key(healthy_card))
    assert poison.flush(30) == 0
    send([command(f"{RUN}-healthy", healthy_card, "RaiseAlert", healthy_card * 10_000)])
    until(lambda: service.status.records >= 3, timeout_s, "three records handled or DLQ'd")
    print(service.status.line())

    # The dead letters, read with the operator's tool (`rtml dlq show cards`).
    letters = [
        record
        for p, end in end_offsets(settings, dlq_topic("cards")).items()
        if end > dlq_start.get(p, 0)
        for record in dlq.records(settings, "cards", partition=p, offset=dlq_start.get(p, 0))
        if record.origin.get("group") == dlq_group
    ]
    display(
        pd.DataFrame(
            [
                {
                    "dlq partition:offset": f"{r.partition}:{r.offset}",
                    "error": f"{r.origin['error_type']}: {r.origin['error'][:60]}",
                    "attempts": r.origin["attempts"],
                    "origin": f"{r.origin['topic']} {r.origin['partition']}:{r.origin['offset']}",
                    "key": r.key,
                    "value": r.value if r.value_format != "avro" else r.value["command_id"],
                }
                for r in letters
            ]
        )
    )
    assert service.status.retries == 3 and service.status.dlq == 2

    # The outage is over. Redrive the record that failed for a reason now gone, and only
    # that one: the poison would fail again, whatever we do to the service.
    case_system_down.clear()
    timed_out = [r for r in letters if r.origin["error_type"] == "TimeoutError"]
    chosen = [(r.partition, r.offset) for r in timed_out]
    for dry_run in (True, False, False):  # look first; send; a second time sends nothing
        report = dlq.redrive(settings, "cards", chosen, dry_run=dry_run)
        for item in report.items:
            to = f" -> {item.origin_topic}" if item.origin_topic else ""
            print(f"{item.action:<17} {report.topic} {item.partition}:{item.offset}{to}")
        if report.count("sent"):
            until(lambda: service.status.handled >= 2, timeout_s, "the redriven command")
print(service.status.line())
pd.DataFrame(events_of({flaky_card, healthy_card}))[
    ["card_id", "version", "type", "event_id", "causation_id"]
]

# %% [markdown]
# **What to notice:** the healthy command went through while the other two failed: one bad
# record costs one DLQ entry, not an outage. `in == handled + dlq` (3 = 1 + 2, then 4 = 2 +
# 2 with the redrive). The dead letter kept the command's bytes, key and trace headers, so
# once redriven (back to its origin topic, `card-commands`, with a `rtml.redriven_from`
# header) it became the event it should have been, caused by the same command id. Redrive
# runs in a Kafka transaction with its own progress, so a second redrive sends nothing.
# From the shell: `rtml dlq list`, `rtml dlq show cards`, `rtml dlq redrive cards
# --offsets P:O`, and the control room's Events page.
#
# ## 5. Backpressure: a slow downstream becomes lag, not memory
#
# Notifications leave through a gateway (SMS, e-mail) with its own pace. The consumer that
# feeds it (`rtml.cards.delivery`) hands records to a worker through an in-memory queue.
# If it kept fetching while the gateway is slow, the queue would grow until the process
# dies. Instead it **pauses** its partitions when `high` records wait, and **resumes** below
# `low`: the backlog stays in Kafka, as consumer lag, where it costs nothing and survives a
# crash.
#
# `backpressure_demo` runs that on a topic of its own: a producer at `bp_rate` records/s
# and a gateway that is fast, then slow (10 ms per record, at most 100/s), then fast again.

# %%
from rtml.cards.delivery import DeliveryOptions, backpressure_demo  # noqa: E402

delivery = DeliveryOptions(group=group("delivery"), high=200, low=50)
demo = backpressure_demo(settings, rate=bp_rate, phases=bp_phases, options=delivery)
print(
    f"produced {demo.produced:,}, delivered {demo.delivered:,}, paused {demo.pauses} times, "
    f"at most {demo.max_queued} records in memory; the producer waited {demo.producer_waits}"
)
samples = pd.DataFrame([vars(s) for s in demo.samples])

fig = make_subplots(
    rows=2,
    cols=1,
    shared_xaxes=True,
    row_heights=[0.65, 0.35],
    vertical_spacing=0.06,
    specs=[[{}], [{"secondary_y": True}]],
)
fig.add_trace(go.Scatter(x=samples["t"], y=samples["lag"], name="lag (waiting in Kafka)"), 1, 1)
fig.add_trace(
    go.Scatter(x=samples["t"], y=samples["queued"], name="queued (waiting in memory)"), 1, 1
)
fig.add_hline(y=delivery.high, line_dash="dot", annotation_text="high", row=1, col=1)
fig.add_trace(
    go.Scatter(
        x=samples["t"],
        y=samples["paused"].astype(int),
        name="paused",
        line_shape="hv",
        fill="tozeroy",
    ),
    2,
    1,
)
fig.add_trace(
    go.Scatter(x=samples["t"], y=samples["delay_ms"], name="gateway ms/record", line_shape="hv"),
    2,
    1,
    secondary_y=True,
)
fig.update_yaxes(title_text="records", row=1, col=1)
fig.update_yaxes(title_text="paused", tickvals=[0, 1], row=2, col=1)
fig.update_yaxes(title_text="ms per record", row=2, col=1, secondary_y=True)
fig.update_xaxes(title_text="seconds", row=2, col=1)
fig.update_layout(height=520, title="Backpressure: pause at high, resume at low")
assert demo.delivered == demo.produced
assert demo.max_queued <= delivery.high + delivery.max_batch
fig

# %% [markdown]
# **What to notice:** while the gateway is slow, the queue in memory fills up to `high`
# (never more than one fetch beyond it), the consumer pauses until the gateway has worked
# it down to `low`, and meanwhile the lag grows: the backlog waits in Kafka. When the
# gateway is fast again the consumer stays resumed and the lag drains to 0. Nothing was
# lost or delivered twice, and offsets were committed only for what the gateway had sent.
# A consumer lag that grows while the process is healthy is the normal symptom of a slow
# downstream: scale the downstream, or add consumers up to the partition count.
#
# ## 6. Replay: reset a stopped group, get the same output
#
# A consumer group's committed offsets are just numbers, and they can be moved: back to
# reprocess history after fixing a bug, forward to skip it. `rtml replay reset GROUP --to
# earliest|latest|offset:N|time:T` does it (`rtml.ops.replay`), and refuses while the group
# has a live member (it would overwrite the offsets again at its next commit).
#
# We run the notification service on the card events this notebook wrote: its group starts
# at the first event since the notebook started (`time:` target), reads them all, and
# writes one notification per `CardBlocked` or `AlertRaised`. Then we stop it, reset the
# group to the same time, run it again, and compare. (A stopped stage stays a member of
# its group for about 15 s, see `until_left`, so each stop waits that long before the
# group counts as stopped.)

# %%
from rtml.cards.notifications import NOTIFICATIONS, notification_service  # noqa: E402
from rtml.ops.replay import ReplayError  # noqa: E402

notify_group = group("notifications")
since = Target("time", started_ms)
moves = replay.reset(settings, notify_group, since, topics=[EVENTS]).moves
first_offsets = {m.partition: m.after for m in moves}
n_events = sum(
    1
    for msg in read_records(settings, EVENTS)
    if msg.offset() >= first_offsets.get(msg.partition(), 0)
)
print(f"{n_events} committed events on {EVENTS} since the notebook started")


def notifications_run() -> tuple[list[dict], object]:
    """Run the notification service until it has read `n_events`; what it wrote."""
    before = end_offsets(settings, NOTIFICATIONS)
    service = notification_service(settings, StageOptions(group=notify_group, instance=45))
    with running(service):
        until(lambda: service.status.records >= n_events, timeout_s, "every event read")
        try:
            replay.plan(settings, notify_group, since)
        except ReplayError as refused:
            print("while it runs:", refused)
    until_left(notify_group)  # about 15 s: see `until_left`
    written_now = [
        json.loads(msg.value())
        for msg in read_records(settings, NOTIFICATIONS)
        if msg.offset() >= before.get(msg.partition(), 0)
    ]
    return written_now, service


first_notes, first_service = notifications_run()
print(first_service.status.line(), f"({first_service.handler.duplicates} duplicates skipped)")
plan = replay.plan(settings, notify_group, since)
pd.DataFrame([vars(m) | {"lag after": m.lag_after} for m in plan.moves])

# %% [markdown]
# The plan moves every partition back from where the group stopped (`before`) to the first
# event since the notebook started (`after`). Apply it and run the service again:

# %%
replay.apply(settings, plan)
second_notes, second_service = notifications_run()
print(second_service.status.line(), f"({second_service.handler.duplicates} duplicates skipped)")


def by_card(notes: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for note in notes:
        out.setdefault(note["card_id"], []).append(note)
    return out


assert first_notes and by_card(first_notes) == by_card(second_notes)
print(f"{len(first_notes)} notifications, identical in both runs, card by card and in order")
pd.DataFrame(first_notes).head(5)

# %% [markdown]
# **What to notice:** the same events in the same order gave the same notifications, id for
# id (they derive from the event ids, never from a clock). The at-least-once duplicates of
# section 3 were skipped both times by `first_delivery`. But look at what a replay of a
# service with *side effects* means: `notifications` now holds each message twice, and a
# real gateway would text every card holder twice. Before replaying such a service, make
# its readers idempotent (the notification id is there for that), or replay into a new
# output and switch over. The projection of section 2 needs none of this: it keeps its
# offsets with its rows, and a rebuild writes a new file.
#
# ## 7. Monitoring
#
# Every stage instance writes its counters every second to a small status file
# (`rtml cards status` prints them, the control room's Events page shows them). For each,
# `in == handled + dlq` holds whenever a batch is done: nothing a stage read is
# unaccounted for.

# %%
from rtml.stage import status_file  # noqa: E402

statuses = [s for s in read_statuses(settings) if s.group.startswith(f"week4-{RUN}-")]
status_table = pd.DataFrame(
    [
        {
            "stage": s.stage,
            "instance": s.instance,
            "group": s.group.removeprefix(f"week4-{RUN}-"),
            "guarantee": s.guarantee,
            "state": s.state,
            "in": s.records,
            "handled": s.handled,
            "dlq": s.dlq,
            "out": s.outputs,
            "retries": s.retries,
            "balanced": s.records == s.handled + s.dlq,
        }
        for s in statuses
    ]
)
assert status_table["balanced"].all()
status_table

# %% [markdown]
# Each card-service instance of section 3 shows only its last incarnation's counters: the
# file belongs to the instance, and a restarted process starts counting from zero.
#
# **Consumer lag** is the other vital sign (`rtml lag GROUP`, `rtml.observe.lag`): how far
# each group's committed offsets are behind the end of each partition.

# %%
from rtml.observe.lag import list_groups  # noqa: E402

lag_rows = []
known = set(list_groups(settings))
for g in (g for g in GROUPS if g in known):
    for p in sample_lag(settings, g).partitions:
        lag_rows.append({"group": g.removeprefix(f"week4-{RUN}-"), "topic": p.topic, "lag": p.lag})
lag = pd.DataFrame(lag_rows).groupby(["group", "topic"])["lag"].agg(["sum", "max"])
lag

# %% [markdown]
# **What to notice:** two kinds of lag that are not a problem. A stopped group falls
# behind by every record written after it stopped: the card service groups of sections 2
# and 3 never saw the commands of the later sections. That is the alarm for a group that
# should be running, and for one that was retired it is a reason to delete it (which the
# clean-up below does). And a group reading a topic written in transactions can show a
# lag of 1 on some partitions for ever (`card-events`; `card-commands` too, where the
# redrive of section 4 wrote last): a transaction's commit marker takes an offset that no
# consumer is ever given, so the committed offset (after the last record) stays one short
# of the end. Alert on lag that *grows* while the group
# runs, not on lag above zero (`rtml lag GROUP` judges a window of samples that way).
#
# Last, one payment's whole path, found by its correlation id (the control room's Events
# page does the same; `rtml cards show --trace tx-<id>` lists its events): the projection
# catches up with the events written since section 2 (it resumes from the offsets stored
# in its file), and the tracer reads the command, the event and the notification around
# it. There is no prediction: we sent the commands ourselves, in place of the decision
# service. The notification came a minute or more after the event, when section 6 first
# ran the notification service: events wait in their topic for readers that come later.

# %%
from rtml.observe.trace import hop_table, missing, trace_transaction  # noqa: E402

print(Projection(settings, projection_options).run_until_caught_up(timeout_s).line())
hops = trace_transaction(settings, tx0 + 2, read_model)  # the BlockCard of section 2
for line in missing(hops):
    print(line)
hop_table(hops)[["step", "hop", "service", "topic", "type", "after (ms)", "what"]]

# %% [markdown]
# ## Clean up
#
# Every service instance has stopped (each ran inside a `with running(...)` block or was
# a child process that was stopped). What is left: this run's consumer groups, the status
# files of its instances, and the work folder with the read models and logs.

# %%
import contextlib  # noqa: E402
import shutil  # noqa: E402

from confluent_kafka import KafkaException  # noqa: E402

from rtml.clients import admin  # noqa: E402

client = admin(settings, timeout=10)
for g in GROUPS:
    with contextlib.suppress(ReplayError):  # a group that never committed does not exist
        until_left(g)
deleted = 0
for future in client.delete_consumer_groups(GROUPS, request_timeout=30).values():
    with contextlib.suppress(KafkaException):  # a group that never committed does not exist
        future.result(timeout=60)
        deleted += 1
removed = 0
for s in read_statuses(settings):
    if s.group.startswith(f"week4-{RUN}-"):  # only the files our own groups wrote
        status_file(settings, s.stage, s.instance, s.group).unlink(missing_ok=True)
        removed += 1
shutil.rmtree(workdir)
print(f"deleted {deleted} consumer groups and {removed} status files; removed {workdir}")

# %% [markdown]
# ## Your grade
# The same checks `rtml grade week4` (and `make grade WEEK=4`) runs.

# %%
from rtml.grade import grade  # noqa: E402

print(grade("week4", impl=impl).render())
