"""The end of a training run: calibrate, score the held-out split, write the entry.

``publish`` fits one temperature per head on the validation logits (ECE before
and after), fits the TF-IDF model mixed into the probabilities where the config
asks for it (``lexical_mixture``; models/lexical.py), scores the held-out split
with the model as served, writes the evaluation report (JSON and
confusion-matrix PNGs) into a new registry entry and promotes it unless told
otherwise.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.calibration import expected_calibration_error, fit_temperature, softmax
from models.config import TrainConfig
from models.data import normalise_text
from models.evaluate import classification_metrics, probability_metrics, write_report
from models.labels import label_index
from models.loading import compute_logits
from models.registry import Registry, RegistryEntry

log = logging.getLogger(__name__)


def publish(
    model,
    tokenizer,
    splits,
    config: TrainConfig,
    registry: Registry,
    device: str,
    base_dir: Path,
    state: dict,
    train_seconds: float,
    promote: bool,
    *,
    teacher: dict | None = None,
) -> RegistryEntry:
    """Calibrate on validation, score held-out, write the entry (and promote it).

    ``teacher``: a distilled model's ``SoftLabels.provenance``, kept in ``data.teacher``.
    """
    from models.train import validate

    val = state.get("best_val") or validate(model, tokenizer, splits.validation, config, device)[1]
    model.eval()
    temperatures, calibration = {}, {}
    for task, (labels, logits) in val.items():
        t = fit_temperature(logits, labels)
        temperatures[task] = t
        calibration[task] = {
            "temperature": t,
            "val_ece_before": expected_calibration_error(softmax(logits), labels),
            "val_ece_after": expected_calibration_error(softmax(logits / t), labels),
        }
    lexical, lexical_report = None, None
    if config.lexical_mixture:
        from models.lexical import fit_lexical

        started = time.monotonic()
        lexical, by_task = fit_lexical(
            splits.train,
            splits.validation,
            {task: softmax(logits / temperatures[task]) for task, (_, logits) in val.items()},
        )
        lexical_report = {"tasks": by_task, "fit_seconds": round(time.monotonic() - started, 1)}
    heldout, encoder_heldout = {}, {}
    for task, rows in splits.heldout.items():
        logits = compute_logits(
            model,
            tokenizer,
            [r.text for r in rows],
            max_length_tokens=config.max_length_tokens,
            device=device,
            batch_size=config.eval_batch_size,
        )[task]
        labels = np.array([label_index(task, r.label) for r in rows])
        encoder = classification_metrics(labels, logits, task, temperatures[task])
        encoder["ece_uncalibrated"] = expected_calibration_error(softmax(logits), labels)
        if lexical is None:
            heldout[task] = encoder
            continue
        served = lexical.mix(
            task, softmax(logits / temperatures[task]), [normalise_text(r.text) for r in rows]
        )
        heldout[task] = probability_metrics(labels, served, task)
        heldout[task]["temperature"] = temperatures[task]
        encoder_heldout[task] = {k: encoder[k] for k in ("n", "accuracy", "macro_f1", "ece")}
    metrics: dict[str, Any] = {
        "heldout": {
            t: {k: m[k] for k in ("n", "accuracy", "macro_f1", "ece")} for t, m in heldout.items()
        },
        "validation_macro_f1": state["best"],
        "calibration": calibration,
        **({"heldout_encoder_alone": encoder_heldout, "lexical": lexical_report} if lexical else {}),
        "train_seconds": round(train_seconds, 1),
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    for task, m in metrics["heldout"].items():
        log.info(
            "train: held-out %s accuracy %.4f macro-F1 %.4f", task, m["accuracy"], m["macro_f1"]
        )
    report = {
        "heldout": heldout,
        **({"heldout_encoder_alone": encoder_heldout, "lexical": lexical_report} if lexical else {}),
        "calibration": calibration,
        "history": state["history"],
        "data": splits.stats,
        "train_seconds": round(train_seconds, 1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        write_report(report, Path(tmp))
        entry = registry.add(
            model,
            config=config.to_dict(),
            max_length_tokens=config.max_length_tokens,
            temperatures=temperatures,
            metrics=metrics,
            data={
                "snapshot_hash": splits.snapshot_hash,
                "label_counts": splits.label_counts(),
                "stats": splits.stats,
                **({"teacher": teacher} if teacher else {}),
            },
            parent=registry.current_version(),
            report_dir=Path(tmp),
            base_model_dir=base_dir,
            lexical=lexical,
        )
    if promote:
        registry.promote(entry.version)
    return entry
