"""Versions on disk: ids, files, the card, and loading a version back as it was built."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from rtml.config import Settings
from rtml.model import registry
from rtml.model.build import build
from rtml.model.card import METRICS
from rtml.model.cli import metrics_table
from rtml.model.dataset import INPUTS, training_set
from rtml.model.update import ModelError, ModelUpdate, Scorer
from rtml.schemas import SCHEMAS, load_schema
from rtml.simulate import SimulationParams, simulate


@pytest.fixture(scope="module")
def trained():
    sim = simulate(SimulationParams(n_customers=150, n_terminals=300, n_days=30, seed=2))
    frame = training_set(sim)
    return build(frame, {"kind": "simulation", "params": {"days": 30}, "rows": len(frame)})


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


def test_versions_are_numbered_in_order_and_never_reused(settings, trained) -> None:
    assert registry.versions(settings) == []
    first = registry.save(settings, trained, plot=False)
    # A folder claimed by a run still training (no card yet) is skipped, not shared.
    (registry.models_dir(settings) / "v0002").mkdir()
    second = registry.save(settings, trained, plot=False)
    assert (first, second) == ("v0001", "v0003")
    assert registry.versions(settings) == ["v0001", "v0002", "v0003"]
    with pytest.raises(ModelError, match="did not finish"):
        registry.card(settings, "v0002")


def test_a_saved_version_loads_back_as_the_update_it_was(settings, trained) -> None:
    version = registry.save(settings, trained)
    folder = registry.models_dir(settings) / version
    assert sorted(p.name for p in folder.iterdir()) == [
        "card.json",
        "card.md",
        "curves.png",
        "model.onnx",
    ]
    assert (folder / "curves.png").read_bytes()[:4] == b"\x89PNG"
    loaded = registry.load(settings, version)
    assert loaded == trained.update(version)
    Scorer.load(loaded)
    data = json.loads((folder / "card.json").read_text())
    assert data["features"] == list(INPUTS)
    assert data["train_rows"] == trained.train_rows > 0
    assert set(METRICS) <= set(data["metrics"])
    assert set(data["candidates"]) == {"logistic_regression", "random_forest"}
    assert data["windows"] == trained.split.describe()
    text = (folder / "card.md").read_text()
    assert f"{data['metrics']['roc_auc']:.3f}" in text
    assert data["windows"]["test"] in text and "curves.png" in text
    table = metrics_table(data)
    assert f"{data['metrics']['average_precision']:.3f}" in table


def test_an_unknown_version_lists_the_known_ones(settings, trained) -> None:
    with pytest.raises(ModelError, match="none yet"):
        registry.load(settings, "v0001")
    registry.save(settings, trained, plot=False)
    with pytest.raises(ModelError, match=r"no model version '../x'.*v0001"):
        registry.load(settings, "../x")


def test_a_saved_version_survives_the_avro_round_trip_unchanged(settings, trained) -> None:
    """What a service reads from `model-updates` equals what was saved (times to the ms)."""
    schema = parse_schema(json.loads(load_schema(SCHEMAS["model-updates"])))
    update = registry.load(settings, registry.save(settings, trained, plot=False))
    body = io.BytesIO()
    schemaless_writer(body, schema, update.to_record())
    body.seek(0)
    assert ModelUpdate.from_record(schemaless_reader(body, schema, schema)) == update
