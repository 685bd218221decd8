"""How much does the TF-IDF + logistic-regression mixture (models/lexical.py) add to the encoder?

Issue 3 quotes TF-IDF + logistic regression at 0.85 topic and 0.84 sentiment
accuracy, level with the shipped model, and the two err differently (bag of words
against a sentence encoder). This measures, on the training run's own splits
(``models.data.make_splits`` with the default config's seed and fractions, so the
held-out split is the one in docs/model.md):

- the registry entry's encoder alone (calibrated probabilities, engine fp32, its
  own lexical model switched off);
- TF-IDF (word 1-2 grams and character 2-5 grams) + logistic regression, fitted
  on the training split only by ``models.lexical.fit_lexical`` (what ``finsentry
  train`` ships), its C chosen on validation;
- their mixture ``w * p_encoder + (1 - w) * p_tfidf`` with ``w`` chosen on
  validation (macro-F1); ``w = 1`` is the encoder alone, so validation may keep it.

The fitted model is saved and loaded again before the held-out split is scored,
so the figures are those of what a registry entry serves. Prints one JSON object
and writes ``bench/results/tfidf_ensemble.json``.

    python bench/tfidf_ensemble.py [--registry DIR] [--version V]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("bench.tfidf_ensemble")



def scores(labels, probs) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = probs.argmax(axis=1)
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro")), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=None, help="registry dir")
    parser.add_argument("--version", default=None, help="registry entry (default: current)")
    parser.add_argument("--quick", action="store_true",
                        help="one C (10) instead of the grid: about a third of the time")
    parser.add_argument("--c-grid", default=None,
                        help="regularisation strengths to try, comma-separated "
                             "(default: models.lexical.C_GRID)")
    parser.add_argument("--out", type=Path, default=None, help="result file")
    args = parser.parse_args()
    out = args.out or REPO / "bench" / "results" / (
        "tfidf_ensemble.quick.json" if args.quick else "tfidf_ensemble.json")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)

    import numpy as np

    from models.config import TrainConfig
    from models.data import make_splits, normalise_text
    from models.inference import EngineOptions, engine_from_registry
    from models.labels import TASKS, label_index
    from models.lexical import C_GRID, LexicalModel, fit_lexical
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    began = time.monotonic()
    config = TrainConfig.from_file(REPO / "models" / "configs" / "default.yaml")
    splits = make_splits(heldout_fraction=config.heldout_fraction,
                         validation_fraction=config.validation_fraction, seed=config.seed)
    settings = ModelSettings(**({"registry_dir": args.registry} if args.registry else {}))
    registry = Registry.from_settings(settings)
    engine = engine_from_registry(registry, args.version, lexical=False,
                                  options=EngineOptions(device="cpu", precision="fp32"))
    result: dict = {"benchmark": "tfidf_ensemble", "model_version": engine.version,
                    "load_average_1m": round(os.getloadavg()[0], 2)}
    validation = {t: [e for e in splits.validation if e.task == t] for t in TASKS}
    encoder_val = {
        t: engine.probabilities([e.text for e in validation[t]])[TASKS.index(t)] for t in TASKS
    }
    c_grid = C_GRID
    if args.c_grid:
        c_grid = tuple(float(c) for c in args.c_grid.split(","))
    elif args.quick:
        c_grid = (10.0,)
    fitted, report = fit_lexical(splits.train, splits.validation, encoder_val, c_grid=c_grid)
    result["quick"] = args.quick
    result["c_grid"] = list(c_grid)
    with tempfile.TemporaryDirectory() as tmp:
        fitted.save(Path(tmp))
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        lexical = LexicalModel.load(Path(tmp), fitted.describe())
    result["saved_bytes"] = size
    for task in TASKS:
        head = lexical.heads[task]
        held_texts = [normalise_text(r.text) for r in splits.heldout[task]]
        held_labels = np.array([label_index(task, r.label) for r in splits.heldout[task]])
        encoder_held = engine.probabilities(held_texts)[TASKS.index(task)]
        result[task] = {
            "rows": {
                "train": sum(e.task == task for e in splits.train),
                "validation": len(validation[task]),
                "heldout": len(held_labels),
            },
            **report[task],
            "heldout": {
                "model": scores(held_labels, encoder_held),
                "tfidf": scores(held_labels, head.probabilities(held_texts)),
                "ensemble": scores(held_labels, head.mix(encoder_held, held_texts)),
            },
        }
        log.info("%s: %s", task, json.dumps(result[task]["heldout"]))
    result["seconds"] = round(time.monotonic() - began, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
