"""The model card of a version: what it was trained on, how it did, how it decides.

`card.json` holds the numbers (a program reads them); `card.md` says the same for a person,
with a ROC and a precision-recall plot of the test window beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtml.model.build import Trained
from rtml.model.dataset import INPUTS
from rtml.model.export import DECLINE_PRECISION, REVIEW_PRECISION, TOLERANCE
from rtml.model.train import FOREST_DEPTH, FOREST_TREES

PLOT = "curves.png"
METRICS = ("roc_auc", "average_precision", "card_precision_at_100")


def card_data(trained: Trained, version: str) -> dict[str, Any]:
    """The card's facts as JSON-ready data."""
    return {
        "name": "fraud",
        "version": version,
        "created": trained.created.isoformat(),
        "model": trained.chosen.kind,
        "features": list(INPUTS),
        "source": trained.source,
        "windows": trained.split.describe(),
        "train_rows": trained.train_rows,
        "train_fraud_rate": trained.train_fraud_rate,
        "test_rows": trained.test_rows,
        "metrics": trained.metrics,
        "candidates": {
            c.kind: {**c.metrics, "fit_seconds": c.fit_seconds} for c in trained.candidates
        },
        "thresholds": {
            "review": trained.review_threshold,
            "decline": trained.decline_threshold,
            "at_test": trained.at_thresholds,
        },
        "onnx": {"bytes": len(trained.onnx), "max_abs_diff_vs_sklearn": trained.onnx_max_diff},
        "seconds": trained.seconds,
    }


def render(data: dict[str, Any], plot: bool = True) -> str:
    """The card as Markdown, from `card_data`."""
    m, w = data["metrics"], data["windows"]
    lines = [
        f"# Model card: {data['name']} {data['version']}",
        "",
        f"Created {data['created']}. Model: **{data['model']}**, chosen over the other "
        "candidate by average precision on the test window. It scores one transaction's "
        "features from the `features` topic and gives the probability that it is a fraud.",
        "",
        "## Data",
        "",
        f"- Source: {_source(data['source'])}",
        f"- Train window {w['train']} ({data['train_rows']:,} transactions, "
        f"{data['train_fraud_rate']:.2%} fraud); gap {w['gap']} (the label delay: a model "
        f"in service on the first test day knows no later label); test window {w['test']} "
        f"({data['test_rows']:,} transactions, {m['fraud_rate']:.2%} fraud). Dates are UTC, "
        "end exclusive.",
        f"- Inputs, in order: {', '.join(data['features'])}. A missing terminal_distance "
        "(an unknown customer or terminal profile) is imputed with the training median.",
        "",
        "## Results on the test window",
        "",
        "| model | ROC AUC | average precision | card precision@100 | fit (s) |",
        "|---|--:|--:|--:|--:|",
    ]
    for kind, c in data["candidates"].items():
        mark = " (chosen)" if kind == data["model"] else ""
        lines.append(
            f"| {kind}{mark} | {c['roc_auc']:.3f} | {c['average_precision']:.3f} | "
            f"{c['card_precision_at_100']:.3f} | {c['fit_seconds']:.1f} |"
        )
    t = data["thresholds"]
    review, decline = t["at_test"]["review"], t["at_test"]["decline"]
    lines += [
        "",
        f"Chance level: ROC AUC 0.5; average precision {m['fraud_rate']:.3f} (the fraud rate). "
        "Card precision@100: of the 100 cards with the highest score each day, the share that "
        "had a fraud that day, averaged over the test days (detected cards are blocked and "
        "leave later days).",
        "",
        "## Decisions",
        "",
        f"- DECLINE at score >= {t['decline']:.4f}: the lowest score at which at least "
        f"{DECLINE_PRECISION:.0%} of test transactions scoring that high were frauds "
        f"(precision {decline['precision']:.2f}, recall {decline['recall']:.2f}, "
        f"{decline['flagged']:.2%} of transactions).",
        f"- REVIEW at score >= {t['review']:.4f}: at least {REVIEW_PRECISION:.0%} were frauds "
        f"(precision {review['precision']:.2f}, recall {review['recall']:.2f}, "
        f"{review['flagged']:.2%} of transactions, declines included).",
        "- Otherwise APPROVE. The thresholds are chosen on the test window itself, so the "
        "precision and recall at them are optimistic; the metrics table does not depend on "
        "them.",
        "",
        "## Format",
        "",
        f"ONNX, {data['onnx']['bytes']:,} bytes, scored with onnxruntime on one thread. On "
        f"the test rows it matches scikit-learn to {data['onnx']['max_abs_diff_vs_sklearn']:.1e} "
        f"(an export further than {TOLERANCE:g} away is refused). Random forest: "
        f"{FOREST_TREES} trees, depth {FOREST_DEPTH}, class weights balanced per tree sample; "
        "logistic regression on standardised inputs, classes weighted by frequency.",
        "",
        "## Limits",
        "",
        "- Simulated data (the handbook's generator): three fraud scenarios, no drift in "
        "customer behaviour; real fraud changes as soon as a model catches it.",
        "- One test week: the numbers move from week to week; compare versions on the same window.",
    ]
    if plot:
        lines += ["", f"![ROC and precision-recall curves on the test window]({PLOT})"]
    return "\n".join(lines) + "\n"


def plot_curves(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    """ROC and precision-recall curves of each model's test scores, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    for kind, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        roc.plot(fpr, tpr, label=kind)
        precision, recall, _ = precision_recall_curve(y, s)
        pr.plot(recall, precision, label=kind)
    roc.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    pr.axhline(float(np.mean(y)), linestyle=":", color="grey", label="chance (fraud rate)")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    for ax in (roc, pr):
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _source(source: dict[str, Any]) -> str:
    if source.get("kind") == "log":
        since = source.get("since") or "offset 0"
        cutoff = source.get("cutoff") or "the end of the topic at read time"
        return (
            f"the `features` topic from {since} joined with the `labels` topic, labels that "
            f"arrived by {cutoff} ({source.get('rows', 0):,} labelled transactions)."
        )
    params = ", ".join(f"{k}={v}" for k, v in source.get("params", {}).items())
    return (
        f"a simulated history ({params}), features by the batch reference "
        f"({source.get('rows', 0):,} labelled transactions)."
    )
