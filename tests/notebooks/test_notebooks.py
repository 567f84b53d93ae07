"""Every course notebook runs top to bottom on the live cluster (papermill), small and fast."""

import json
from pathlib import Path

import jupytext
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("week*.ipynb"))
# Small sizes for CI; learners run the defaults in the notebooks' parameters cells.
PARAMETERS = {
    "week1_kafka_fundamentals": {
        "n_records": 4000,
        "n_customers": 300,
        "n_terminals": 600,
        "n_days": 30,
        "n_lag": 1200,
    },
    "week2_stream_processing": {
        "n_customers": 40,
        "n_terminals": 80,
        "n_days": 35,
        "n_late_per_customer": 30,
    },
    "week3_event_driven_ml": {
        "n_customers": 100,
        "n_terminals": 200,
        "n_days": 30,
        "live_seconds": 10.0,
        "batch_sizes": [1, 10, 100],
        "min_seconds": 0.1,
        "n_requests": 100,
    },
    "week4_production_patterns": {
        "crash_commands": 300,
        "crash_rate": 60.0,
        "bp_rate": 300.0,
        "bp_phases": [[0.0, 2.0], [10.0, 5.0], [0.0, 2.0]],
    },
    "week5_beyond_kafka": {
        "peer_customers": 20,
        "peer_terminals": 40,
        "peer_days": 10,
        "messages": 1000,
        "kill_after": 100,
    },
}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_parameters(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        f"{path.name} has outputs: strip them (jupyter nbconvert --clear-output)"
    )
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_paired_script_matches(path):
    """The jupytext percent script beside each notebook holds the same cells (readable diffs)."""
    script = path.with_suffix(".py")
    assert script.is_file(), f"{script.name} is missing: jupytext --set-formats ipynb,py:percent"
    a, b = jupytext.read(path), jupytext.read(script)
    assert [c.source for c in a.cells] == [c.source for c in b.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, cluster_settings, tmp_path):
    params = {"impl": "solutions", **PARAMETERS.get(path.stem, {})}
    pm.execute_notebook(
        str(path),
        str(tmp_path / path.name),
        parameters=params,
        kernel_name="python3",
        cwd=str(path.parent),
        progress_bar=False,
        execution_timeout=600,
    )
