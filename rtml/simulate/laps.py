"""Which laps of the simulated history the live simulator has used, so ids never repeat.

The live simulator loops over the simulated history; lap n gives transaction `i` the id
`i + n * ids_per_lap`. A restarted simulator (after `rtml services kill simulator`, say)
that began again at lap 0 would reuse ids already in the topics: its predictions, commands
and card events would share ids with earlier ones, and every idempotent reader downstream
would drop them as duplicates. So each lap is marked used before its first record is
sent, in a small file beside the cluster's data, and a new run starts at the next free lap.
A run killed mid-lap leaves the rest of that lap unused, never reused.
"""

from __future__ import annotations

from pathlib import Path

from rtml.config import Settings
from rtml.simulate.errors import SimulatorError


def laps_file(settings: Settings) -> Path:
    """Where the next free lap of the cluster's live simulator is kept."""
    return settings.cluster_dir / "simulator" / "next-lap"


def next_free(settings: Settings) -> int:
    """The first lap no live run on this cluster has used (0 on a new cluster)."""
    path = laps_file(settings)
    if not path.is_file():
        return 0
    text = path.read_text().strip()
    if not text.isdigit():
        raise SimulatorError(f"{path} should hold a lap number, not {text!r}: delete it.")
    return int(text)


def mark_used(settings: Settings, lap: int) -> None:
    """Record that `lap` is in use, atomically (a reader never sees half a number)."""
    path = laps_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{max(lap + 1, next_free(settings))}\n")
    tmp.replace(path)
