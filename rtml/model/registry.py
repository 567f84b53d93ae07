"""Model versions on disk, and publishing one to the compacted `model-updates` topic.

A version lives in `<cluster dir>/models/<name>/<version>/`: `model.onnx`, `card.json`
(its numbers: metrics, data windows, features, thresholds, rows, timing), `card.md` and
the card's plot. Ids are `v0001`, `v0002`, ...: they sort in creation order, and each is
claimed by creating its folder, which fails if another run claimed it first, so two runs
at once never share one.

Publishing writes the version's `ModelUpdate` to `model-updates` keyed by the model name
and waits for the acknowledgement of every in-sync replica. The topic is compacted, so it
keeps the latest version of each model: what a starting service reads, and what
`latest_published` returns.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException

from rtml.clients import durable_producer
from rtml.config import Settings
from rtml.model import log
from rtml.model.build import Trained
from rtml.model.card import PLOT, card_data, plot_curves, render
from rtml.model.update import MODEL_NAME, TOPIC, ModelError, ModelUpdate, Scorer
from rtml.schemas import SchemaError
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.topics import MODEL_MAX_BYTES

_VERSION = re.compile(r"^v(\d{4,})$")
MODEL_FILE = "model.onnx"


def models_dir(settings: Settings, name: str = MODEL_NAME) -> Path:
    """Where the versions of model `name` are kept."""
    return settings.cluster_dir / "models" / name


def versions(settings: Settings, name: str = MODEL_NAME) -> list[str]:
    """The saved versions of `name`, oldest first."""
    folder = models_dir(settings, name)
    if not folder.is_dir():
        return []
    found = [p.name for p in folder.iterdir() if _VERSION.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda v: int(v[1:]))


def save(settings: Settings, trained: Trained, plot: bool = True) -> str:
    """Store `trained` as the next version of the fraud model; return its id."""
    folder = models_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    version, path = _claim(folder)
    update = trained.update(version)
    (path / MODEL_FILE).write_bytes(update.onnx)
    data = card_data(trained, version)
    data["sha256"] = update.sha256
    if plot:
        scores = {c.kind: c.scores for c in trained.candidates}
        plot_curves(trained.test_labels, scores, path / PLOT)
    (path / "card.md").write_text(render(data, plot=plot))
    # Written last: a folder without card.json is a version whose save did not finish.
    (path / "card.json").write_text(json.dumps(data, indent=2) + "\n")
    return version


def card(settings: Settings, version: str) -> dict:
    """The numbers of a saved version (its card.json)."""
    path = _folder(settings, version) / "card.json"
    if not path.is_file():
        raise ModelError(
            f"Version {version} has no card.json: its training did not finish. Delete "
            f"{path.parent.name} or train again."
        )
    return json.loads(path.read_text())


def load(settings: Settings, version: str) -> ModelUpdate:
    """A saved version as the `ModelUpdate` that publishing sends."""
    data = card(settings, version)
    onnx = (_folder(settings, version) / MODEL_FILE).read_bytes()
    return ModelUpdate(
        name=data["name"],
        version=version,
        features=tuple(data["features"]),
        review_threshold=data["thresholds"]["review"],
        decline_threshold=data["thresholds"]["decline"],
        onnx=onnx,
        metrics=data["metrics"],
        created=dt.datetime.fromisoformat(data["created"]),
        sha256=data["sha256"],
    )


def publish(settings: Settings, version: str, timeout: float = 60.0) -> ModelUpdate:
    """Check `version` as a service would (`Scorer.load`), then write it to `model-updates`
    and return once every in-sync replica has it."""
    update = load(settings, version)
    Scorer.load(update)  # refuse to publish what a service would refuse to load
    value = PreparedSerializer.for_topic(settings, TOPIC)(update.to_record())
    if len(value) > MODEL_MAX_BYTES - 1024:  # leave room for the batch and record headers
        raise ModelError(
            f"Version {version} is {len(value):,} bytes serialized; {TOPIC} takes records up "
            f"to {MODEL_MAX_BYTES:,}: train a smaller model (fewer or shallower trees)."
        )
    producer = durable_producer(settings, quiet=True, message_max_bytes=MODEL_MAX_BYTES)
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    producer.produce(TOPIC, value, update.name.encode(), on_delivery=delivered)
    if producer.flush(timeout) != 0:
        raise ModelError(
            f"Version {version} was not acknowledged by {settings.bootstrap} within "
            f"{timeout:g} s: is the cluster up (`rtml cluster status`)?"
        )
    if errors:
        raise ModelError(f"Publishing version {version} to {TOPIC} failed: {errors[0].str()}.")
    return update


def published(settings: Settings, name: str = MODEL_NAME) -> list[ModelUpdate]:
    """Every version of `name` still in `model-updates`, oldest first (compaction keeps at
    least the latest)."""
    try:
        _, records = log.read(settings, TOPIC, timeout=60)
    except KafkaException as exc:
        raise ModelError(f"Cannot read {TOPIC}: {exc}") from exc
    decode = WireDeserializer.for_topic(settings, TOPIC)
    out = []
    for record in records:
        if record.value is None:
            continue  # a tombstone: a model withdrawn
        try:
            update = ModelUpdate.from_record(decode(record.value))
        except SchemaError:
            continue  # not a model update; the service skips it too
        if update.name == name:
            out.append(update)
    return out


def latest_published(settings: Settings, name: str = MODEL_NAME) -> ModelUpdate | None:
    """The version of `name` a service starting now would load, or None if none was."""
    found = published(settings, name)
    return found[-1] if found else None


def _claim(folder: Path) -> tuple[str, Path]:
    """The next free version id, its folder created (atomically: first come, first served)."""
    taken = [int(p.name[1:]) for p in folder.iterdir() if _VERSION.match(p.name)]
    n = max(taken, default=0) + 1
    while True:
        version = f"v{n:04d}"
        path = folder / version
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        return version, path


def _folder(settings: Settings, version: str) -> Path:
    path = models_dir(settings) / version
    if not _VERSION.match(version) or not path.is_dir():
        known = ", ".join(versions(settings)) or "none yet (run `rtml model train`)"
        raise ModelError(f"There is no model version {version!r}; the versions are: {known}.")
    return path
