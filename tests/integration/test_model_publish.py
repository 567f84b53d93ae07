"""Publishing versions to `model-updates` and reading back the one a service would load."""

from __future__ import annotations

import pytest

from rtml import topics
from rtml.cli import main
from rtml.model import registry
from rtml.model.build import build
from rtml.model.dataset import training_set
from rtml.model.update import TOPIC, ModelError, Scorer
from rtml.schemas import register_all
from rtml.simulate import SimulationParams, simulate


@pytest.fixture(scope="module")
def trained():
    sim = simulate(SimulationParams(n_customers=150, n_terminals=300, n_days=30, seed=4))
    frame = training_set(sim)
    return build(frame, {"kind": "simulation", "rows": len(frame)})


def test_the_latest_published_version_is_the_one_read_back(cluster_settings, trained, capsys):
    settings = cluster_settings
    topics.apply(settings)
    register_all(settings)
    before = registry.published(settings)
    first = registry.save(settings, trained, plot=False)
    second = registry.save(settings, trained, plot=False)
    sent = registry.publish(settings, first)
    assert registry.latest_published(settings) == sent
    registry.publish(settings, second)
    live = registry.latest_published(settings)
    assert live is not None and live.version == second
    assert live == registry.load(settings, second)  # bytes, digest, thresholds, metrics
    Scorer.load(live)
    assert [u.version for u in registry.published(settings)][len(before) :] == [first, second]
    # `rtml model list` marks the published one.
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{second}  " in out and out.count("<- published") == 1
    assert next(line for line in out.splitlines() if "<- published" in line).startswith(second)
    # What `make lab` runs: with a version published it trains nothing.
    saved = registry.versions(settings)
    assert main(["model", "train", "--publish", "--if-unpublished"]) == 0
    assert f"{second} is published already" in capsys.readouterr().out
    assert registry.versions(settings) == saved


def test_a_version_that_fails_the_services_checks_is_not_published(cluster_settings, trained):
    settings = cluster_settings
    version = registry.save(settings, trained, plot=False)
    folder = registry.models_dir(settings) / version
    (folder / registry.MODEL_FILE).write_bytes(b"not a model")
    before = registry.published(settings)
    with pytest.raises(ModelError, match="corrupt"):
        registry.publish(settings, version)
    assert registry.published(settings) == before, f"nothing may reach {TOPIC}"
