"""Would a TF-IDF + logistic-regression model beside the encoder raise held-out quality?

Issue 3 quotes TF-IDF + logistic regression at 0.85 topic and 0.84 sentiment
accuracy, level with the shipped model, and the two err differently (bag of words
against a sentence encoder). This measures, on the training run's own splits
(``models.data.make_splits`` with the default config's seed and fractions, so the
held-out split is the one in docs/model.md):

- the registry's model alone (calibrated probabilities, engine fp32);
- TF-IDF (word 1-2 grams and character 2-5 grams) + logistic regression, trained on
  the training split only, its C chosen on validation;
- their mixture ``w * p_model + (1 - w) * p_tfidf`` with ``w`` chosen on validation
  (macro-F1); ``w = 1`` is the model alone, so validation may keep it.

Nothing here is shipped: it tells the next step whether the lexical model earns a
place in the engine. Prints one JSON object and writes ``bench/results/tfidf_ensemble.json``.

    python bench/tfidf_ensemble.py [--registry DIR] [--version V]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("bench.tfidf_ensemble")

C_GRID = (1.0, 3.0, 10.0, 30.0)
W_GRID = tuple(i / 10 for i in range(11))


def scores(labels, probs) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = probs.argmax(axis=1)
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro")), 4),
    }


def lexical_model(train_texts, train_labels, val_texts, val_labels):
    """TF-IDF features and the logistic regression whose C scores best on validation."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, lowercase=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)

    def features(texts, fit=False):
        if fit:
            return hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()
        return hstack([words.transform(texts), chars.transform(texts)]).tocsr()

    x_train, x_val = features(train_texts, fit=True), features(val_texts)
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=3000)
        clf.fit(x_train, train_labels)
        f1 = scores(val_labels, clf.predict_proba(x_val))["macro_f1"]
        log.info("tfidf C=%g: validation macro-F1 %.4f", c, f1)
        if best is None or f1 > best[0]:
            best = (f1, c, clf)
    return best[2], best[1], features


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=None, help="registry dir")
    parser.add_argument("--version", default=None, help="registry entry (default: current)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tfidf_ensemble.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)

    import numpy as np

    from models.config import TrainConfig
    from models.data import make_splits, normalise_text
    from models.inference import EngineOptions, engine_from_registry
    from models.labels import TASKS, label_index
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    began = time.monotonic()
    config = TrainConfig.from_file(REPO / "models" / "configs" / "default.yaml")
    splits = make_splits(heldout_fraction=config.heldout_fraction,
                         validation_fraction=config.validation_fraction, seed=config.seed)
    settings = ModelSettings(**({"registry_dir": args.registry} if args.registry else {}))
    registry = Registry.from_settings(settings)
    engine = engine_from_registry(registry, args.version,
                                  options=EngineOptions(device="cpu", precision="fp32"))
    result: dict = {"benchmark": "tfidf_ensemble", "model_version": engine.version,
                    "load_average_1m": round(os.getloadavg()[0], 2)}
    for task in TASKS:
        train = [e for e in splits.train if e.task == task]
        val = [e for e in splits.validation if e.task == task]
        held_texts = [normalise_text(r.text) for r in splits.heldout[task]]
        held_labels = np.array([label_index(task, r.label) for r in splits.heldout[task]])
        val_texts, val_labels = [e.text for e in val], np.array([e.label for e in val])

        clf, c, features = lexical_model([e.text for e in train], [e.label for e in train],
                                         val_texts, val_labels)
        lex_val = clf.predict_proba(features(val_texts))
        lex_held = clf.predict_proba(features(held_texts))
        model_val = engine.probabilities(val_texts)[TASKS.index(task)]
        model_held = engine.probabilities(held_texts)[TASKS.index(task)]

        def mix(w, model_p, lex_p):
            return w * model_p + (1 - w) * lex_p

        by_weight = {w: scores(val_labels, mix(w, model_val, lex_val))["macro_f1"] for w in W_GRID}
        w = max(W_GRID, key=lambda k: (by_weight[k], k))
        result[task] = {
            "rows": {"train": len(train), "validation": len(val), "heldout": len(held_labels)},
            "tfidf_C": c, "model_weight": w,
            "validation_macro_f1_by_weight": by_weight,
            "heldout": {
                "model": scores(held_labels, model_held),
                "tfidf": scores(held_labels, lex_held),
                "ensemble": scores(held_labels, mix(w, model_held, lex_held)),
            },
        }
        log.info("%s: %s", task, json.dumps(result[task]["heldout"]))
    result["seconds"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
