"""`rtml model train` offline: progress, a saved version, the metrics, clear errors."""

from __future__ import annotations

from rtml.cli import main
from rtml.config import Settings
from rtml.model import registry


def test_train_saves_a_version_and_prints_its_metrics(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    args = ["model", "train", "--customers", "150", "--terminals", "300", "--days", "30"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Simulating 30 days" in out and "Saved version v0001" in out
    assert "logistic_regression" in out and "random_forest" in out and "DECLINE >=" in out
    settings = Settings.from_env()
    assert registry.versions(settings) == ["v0001"]
    card = registry.card(settings, "v0001")
    assert card["source"]["params"]["customers"] == 150
    assert f"{card['metrics']['roc_auc']:.3f}" in out


def test_too_short_a_history_is_one_sentence(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("RTML_HOME", str(tmp_path))
    assert main(["model", "train", "--customers", "50", "--terminals", "100", "--days", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtml: The labelled history covers 10 day(s)")
    assert len(err.splitlines()) == 1
    assert registry.versions(Settings.from_env()) == []
