"""What the control room's Replay page shows about consumer groups and their resets.

The resets themselves are `rtml.ops.replay`'s (`plan`, `reset`, `show`); this module names
the lab's groups and the service that owns each (so the page can offer to stop exactly
that service, by its allow-listed name), builds a `Target` from the page's inputs, and
turns plans and groups into tables.
"""

from __future__ import annotations

import pandas as pd
from confluent_kafka.admin import AdminClient

from rtml.config import Settings
from rtml.observe.lag import list_groups
from rtml.ops.replay import GroupView, ReplayError, ResetPlan, Target, parse_target

# The lab's consumer groups (week 4's first), each with the service (rtml.services) that
# runs its consumers. A test checks these against the modules' own GROUP constants.
LAB_GROUPS: dict[str, str] = {
    "rtml-decisions": "decisions",
    "rtml-cards": "cards",
    "rtml-notifications": "notifications",
    "rtml-projections": "projections",
    "rtml-serve": "serve",
    "rtml-features": "features",
}
# What replaying each lab group does, for a learner about to try it.
NOTES: dict[str, str] = {
    "rtml-features": "The feature app keeps its window state in Kafka (changelog topics): "
    "replaying transactions adds them to windows again.",
    "rtml-serve": "Replaying features scores the transactions again: the same transaction ids "
    "get new predictions, and the decision service new commands with the same ids.",
    "rtml-decisions": "Replaying predictions sends the same commands again, with the same ids "
    "(`<Type>-<transaction id>`): the events they cause have the same event ids, which the "
    "projection counts as duplicates instead of applying them.",
    "rtml-cards": "Commands decided again meet each card's current state: a second BlockCard "
    "is rejected, and every event keeps its command's event id, so the projection drops the "
    "copies as duplicates.",
    "rtml-notifications": "The notification service remembers the event ids it has seen only "
    "while it runs: replayed after a restart, events notify the card holder again.",
    "rtml-projections": "The projection keeps its offsets in the read model, not in Kafka: a "
    "reset here only changes the lag the Flow page shows. Rebuild the projection (below) to "
    "replay card-events.",
}
KIND_LABELS = {
    "earliest": "earliest (replay everything kept)",
    "latest": "latest (skip what is there)",
    "offset": "an offset (in every partition)",
    "time": "a time (the first record at or after it)",
}


def group_choices(settings: Settings, client: AdminClient | None = None) -> list[str]:
    """The lab's groups first (whether or not they exist yet), then every other group the
    cluster lists, sorted."""
    listed = list_groups(settings, client)
    return [*LAB_GROUPS, *(g for g in listed if g not in LAB_GROUPS)]


def owning_service(group: str) -> str | None:
    """The lab service whose consumers form `group`, or None for any other group."""
    return LAB_GROUPS.get(group)


def target_of(kind: str, offset: int | None = None, when: str | None = None) -> Target:
    """The reset target the page's inputs describe; ReplayError with a sentence if they do
    not describe one (an offset that is missing, a time that is not ISO 8601)."""
    if kind in ("earliest", "latest"):
        return Target(kind)
    if kind == "offset":
        if offset is None or offset < 0:
            raise ReplayError("Give the offset to move to: a whole number, 0 or more.")
        return Target("offset", int(offset))
    if kind == "time":
        text = (when or "").strip()
        if not text:
            raise ReplayError("Give the time to move to, e.g. 2026-11-25T05:00 (UTC).")
        return parse_target(f"time:{text}")
    raise ReplayError(f"{kind!r} is not a reset target: use earliest, latest, offset or time.")


def plan_table(reset_plan: ResetPlan) -> pd.DataFrame:
    """One row per partition of a reset: the committed offset before and after, the log's
    range, the lag before and after, and how many records that replays (or skips)."""
    rows = [
        {
            "topic": m.topic,
            "partition": m.partition,
            "before": m.before,
            "after": m.after,
            "start": m.start,
            "end": m.end,
            "lag before": m.lag_before,
            "lag after": m.lag_after,
            "replays": None if m.lag_before is None else m.lag_after - m.lag_before,
        }
        for m in reset_plan.moves
    ]
    columns = ["topic", "partition", "before", "after", "start", "end"]
    columns += ["lag before", "lag after", "replays"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"before": "Int64", "lag before": "Int64", "replays": "Int64"})


def plan_sentence(reset_plan: ResetPlan) -> str:
    """What applying (or having applied) the plan means, in one sentence."""
    moved = [m for m in reset_plan.moves if m.before != m.after]
    replay = sum(max(0, m.lag_after - (m.lag_before or 0)) for m in moved)
    skip = sum(max(0, (m.lag_before or 0) - m.lag_after) for m in moved)
    what = []
    if replay:
        what.append(f"reads {replay:,} record(s) again")
    if skip:
        what.append(f"skips {skip:,} record(s)")
    effect = " and ".join(what) or "changes no position"
    verb = "was reset" if reset_plan.applied else "would move"
    if reset_plan.applied:
        head = f"Group {reset_plan.group} {verb} to {reset_plan.target}"
    else:
        head = f"Resetting {reset_plan.group} to {reset_plan.target} {verb}"
        head += f" {len(moved)} of {len(reset_plan.moves)} partition(s)"
    tail = "; it " + effect + " when it starts again."
    missing = (
        f" Topics it committed to that are gone, left alone: {', '.join(reset_plan.missing)}."
        if reset_plan.missing
        else ""
    )
    return head + tail + missing


def group_tables(view: GroupView) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A group's members (and their partitions) and its committed offsets with lag."""
    members = pd.DataFrame(
        [
            {
                "member": m.member_id,
                "client": m.client_id,
                "host": m.host,
                "partitions": ", ".join(f"{t}[{p}]" for t, p in m.partitions),
            }
            for m in view.members
        ],
        columns=["member", "client", "host", "partitions"],
    )
    offsets = pd.DataFrame(
        [
            {
                "topic": c.topic,
                "partition": c.partition,
                "committed": c.offset,
                "start": c.start,
                "end": c.end,
                "lag": c.lag,
            }
            for c in view.offsets
        ],
        columns=["topic", "partition", "committed", "start", "end", "lag"],
    )
    return members, offsets
