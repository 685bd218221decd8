"""Benchmark: the label -> retrain -> gate -> promote loop on a realistic shift.

The shift: analysts label articles from the topics the shipped model is worst
at. The slice comes from the original *validation* split (the encoder never
trained on it; it only chose the checkpoint and the temperatures), taking the
topic classes with the lowest validation F1 until ``--labels`` examples are
reached. ``finsentry train`` fits the served TF-IDF regression on training plus
validation once its settings are chosen, so the slice is not news to that
part: the bench's "before" model is the current entry with its TF-IDF model
refitted without the slice's texts (same encoder, C, w, T), the shipped model
as it would be had analysts labelled news it never saw. The labels go through
the real intake (CSV -> ``read_labels`` -> label store), then one retrain runs
with the default RetrainSettings (CLI overrides below) against a *copy* of the
registry, so the shipped registry is untouched.

Reported, before (current model) and after (candidate): (a) the original
held-out split, (b) the held-out part of the new labels; the retrain time on
this machine, and whether the gate promoted. The "before" column is the
baseline measured in the same run.

    python bench/retrain.py                 # full run, writes bench/results/retrain.json
    python bench/retrain.py --quick --json  # smaller slice and evaluation, ~minutes
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.retrain")


sys.path.insert(0, str(REPO / "bench"))
from classifier import hardware  # noqa: E402,F401  (one definition for every bench)


def copy_registry(settings, target: Path):
    """A registry at ``target`` holding only the current entry of ``settings``' registry."""
    from models.registry import Registry

    source = Registry.from_settings(settings)
    current = source.current()
    (target / "entries").mkdir(parents=True)
    shutil.copytree(current.path, target / "entries" / current.version)
    copy = Registry(target, settings.resolved_base_model_dir())
    copy.promote(current.version)
    return copy, current


def worst_topic_slice(current, settings, splits, n_labels: int) -> tuple[list, list[dict]]:
    """Validation examples of the topics the current model does worst on (by F1)."""
    import numpy as np

    from models.evaluate import classification_metrics
    from models.loading import load_entry

    loaded = load_entry(current, settings.device, base_model_dir=settings.resolved_base_model_dir())
    val = [e for e in splits.validation if e.task == "topic"]
    logits = loaded.logits([e.text for e in val])["topic"]
    metrics = classification_metrics(np.array([e.label for e in val]), logits, "topic")
    per_class = sorted(metrics["per_class"].items(), key=lambda kv: (kv[1]["f1"], kv[0]))
    from models.labels import TOPIC_NAMES

    chosen, classes = [], []
    for name, values in per_class:
        if len(chosen) >= n_labels:
            break
        index = TOPIC_NAMES.index(name)
        members = [e for e in val if e.label == index]
        members = members[: n_labels - len(chosen)]
        chosen += members
        classes.append(
            {"topic": name, "validation_f1": round(values["f1"], 4), "labels": len(members)}
        )
    return chosen, classes


def parent_without_slice(registry, current, splits, examples, base_dir: Path):
    """A copy of ``current`` whose TF-IDF model never saw the slice's texts, promoted in
    ``registry``; ``current`` itself when its TF-IDF model was fitted on training only."""
    from models.data import dedup_key
    from models.loading import build_model_for_entry, load_lexical

    lexical = load_lexical(current)
    fitted_on = {
        t: meta.get("fitted_on", "train")
        for t, meta in current.metrics.get("lexical", {}).get("tasks", {}).items()
    }
    if lexical is None or set(fitted_on.values()) <= {"train"}:
        return current
    in_slice = {dedup_key(e.text) for e in examples}
    rows = [e for e in splits.train + splits.validation if dedup_key(e.text) not in in_slice]
    entry = registry.add(
        build_model_for_entry(current, base_dir),
        config=current.config,
        max_length_tokens=current.max_length_tokens,
        temperatures=current.temperatures,
        metrics={**current.metrics, "bench": "TF-IDF refitted without the retrain slice"},
        data=current.manifest["data"],
        parent=current.version,
        base_model_dir=base_dir,
        lexical=lexical.refit(rows),
    )
    registry.promote(entry.version)
    log.info("bench: parent %s: %s's TF-IDF model without the slice's %d texts",
             entry.version, current.version, len(in_slice))
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--labels", type=int, default=300, help="labels imported (default 300)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="original held-out examples per task (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="150 labels, 1 epoch, 400 eval/task")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retrain.json")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from models.data import DATA_DIR, make_splits
    from models.feedback.intake import read_labels
    from models.feedback.retrain import Retrainer, format_scores
    from models.feedback.store import LabelStore
    from models.labels import TOPIC_NAMES
    from models.registry import code_version
    from pipeline.settings import ModelSettings, RetrainSettings

    n_labels = 150 if args.quick else args.labels
    overrides = {}
    if args.quick:
        overrides.update(epochs=1, eval_limit_per_task=400)
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.eval_limit:
        overrides["eval_limit_per_task"] = args.eval_limit
    retrain_settings = RetrainSettings(**overrides)
    settings = ModelSettings()
    with tempfile.TemporaryDirectory(prefix="finsentry-bench-retrain-") as tmp:
        tmp = Path(tmp)
        registry, current = copy_registry(settings, tmp / "registry")
        bench_settings = settings.model_copy(update={"registry_dir": tmp / "registry"})
        cfg = current.config
        splits = make_splits(
            Path(cfg.get("data_dir") or DATA_DIR),
            heldout_fraction=cfg.get("heldout_fraction", 0.15),
            validation_fraction=cfg.get("validation_fraction", 0.10),
            seed=cfg.get("seed", 13),
        )
        started = time.monotonic()
        examples, classes = worst_topic_slice(current, bench_settings, splits, n_labels)
        slice_seconds = time.monotonic() - started
        parent = parent_without_slice(
            registry, current, splits, examples, settings.resolved_base_model_dir()
        )
        labels_csv = tmp / "shift_labels.csv"
        with labels_csv.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["text", "topic", "labeller", "labelled_at"])
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for e in examples:
                writer.writerow([e.text, TOPIC_NAMES[e.label], "bench-analyst", now])
        report_import = read_labels(labels_csv, labeller="bench-analyst")
        store = LabelStore(f"sqlite:///{tmp / 'labels.db'}")
        added = store.add(report_import.labels).added
        log.info(
            "bench: %d labels from %d worst topics imported (%d rejected rows)",
            added,
            len(classes),
            len(report_import.errors),
        )
        retrainer = Retrainer(store, bench_settings, retrain_settings)
        started = time.monotonic()
        report = retrainer.run()
        retrain_seconds = time.monotonic() - started

    scores = report["scores"]
    result = {
        "benchmark": "retrain",
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "code_version": code_version(),
        "hardware": hardware(),
        "config": {
            "labels": n_labels,
            "quick": args.quick,
            "retrain_settings": retrain_settings.model_dump(mode="json"),
            "parent": parent.version,
            "shipped": current.version,
        },
        "shift": {
            "kind": "worst validation topics",
            "classes": classes,
            "labels_imported": added,
            "rejected_rows": len(report_import.errors),
            "slice_seconds": round(slice_seconds, 1),
        },
        "outcome": report["outcome"],
        "promoted": report["outcome"] == "promoted",
        "gate": report["gate"],
        "before": scores["current"],
        "after": scores["candidate"],
        "data": {k: v for k, v in report["data"].items() if k != "label_counts"},
        "training": report["training"],
        "retrain_seconds": round(retrain_seconds, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(
            f"shift: {added} labels from the {len(classes)} worst topics "
            f"({', '.join(c['topic'] for c in classes)})"
        )
        print(format_scores(scores["current"], scores["candidate"]))
        print(
            f"retrain: {retrain_seconds:.0f}s total ({report['training']['train_seconds']:.0f}s "
            f"training) -> {report['outcome']}; {report['gate']['reasons']}"
        )
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
