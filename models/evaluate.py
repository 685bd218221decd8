"""Evaluation: accuracy, macro-F1, per-class P/R/F1, confusion-matrix PNG, calibration.

Works on logits (numpy), so the same code scores a model during training, a
registry entry from ``finsentry evaluate``, and the report stored with an entry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import brier_score, expected_calibration_error, softmax
from models.labels import class_names

log = logging.getLogger(__name__)


def classification_metrics(
    labels: np.ndarray, logits: np.ndarray, task: str, temperature: float = 1.0
) -> dict[str, Any]:
    """Metrics of ``task`` for head-index ``labels`` and raw ``logits`` (N, classes).

    ``ece`` is computed on softmax(logits / temperature): pass the entry's
    temperature for calibrated confidences, 1.0 for raw ones.
    """
    metrics = probability_metrics(labels, softmax(logits / temperature), task)
    metrics["temperature"] = float(temperature)
    return metrics


def probability_metrics(labels: np.ndarray, probs: np.ndarray, task: str) -> dict[str, Any]:
    """Metrics of ``task`` for head-index ``labels`` and probabilities ``probs`` (N, classes)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    names = class_names(task)
    classes = list(range(len(names)))
    labels = np.asarray(labels)
    preds = probs.argmax(axis=1)
    p, r, f, support = precision_recall_fscore_support(
        labels, preds, labels=classes, zero_division=0
    )
    return {
        "task": task,
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, preds)),
        # sklearn's convention: macro over the classes present in labels or predictions,
        # so a small file is not scored on classes that appear in neither
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "ece": expected_calibration_error(probs, labels),
        "brier": brier_score(probs, labels),
        "per_class": {
            names[c]: {
                "precision": float(p[c]),
                "recall": float(r[c]),
                "f1": float(f[c]),
                "support": int(support[c]),
            }
            for c in classes
        },
        "confusion_matrix": confusion_matrix(labels, preds, labels=classes).tolist(),
    }


def save_confusion_png(metrics: dict[str, Any], path: Path) -> Path:
    """Row-normalised confusion matrix (true rows, predicted columns) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = class_names(metrics["task"])
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    norm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
    size = 4 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"{metrics['task']}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], report_dir: Path) -> Path:
    """``report.json`` plus one ``confusion_<task>.png`` per task under ``report_dir``."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    for task, metrics in report.get("heldout", {}).items():
        save_confusion_png(metrics, report_dir / f"confusion_{task}.png")
    path = report_dir / "report.json"
    path.write_text(json.dumps(report, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    return path


def evaluate_file(loaded, path: Path, task: str) -> dict[str, Any]:
    """Score ``loaded`` (a LoadedModel) on a ``text,label`` CSV; raises DataError on bad rows."""
    from models.data import read_labelled_csv

    rows = read_labelled_csv(path, task)
    probs = loaded.predict_proba([text for text, _ in rows])[task]
    labels = np.array([label for _, label in rows])
    metrics = probability_metrics(labels, probs, task)
    metrics["temperature"] = loaded.temperatures.get(task, 1.0)
    metrics["lexical_mixed"] = loaded.lexical is not None and task in loaded.lexical.heads
    metrics["model_version"] = loaded.version
    metrics["data"] = str(path)
    return metrics
