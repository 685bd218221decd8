"""Would nearest training neighbours, as a third expert, lift the served model? (issue 3)

    python bench/knn_mixture.py                          # the current entry
    python bench/knn_mixture.py --versions 9e5c62,eb47ad  # several entries, paired
    python bench/knn_mixture.py --quick                  # 2,000 training texts per task

For each registry entry: the merged encoder embeds (mean-pooled token states,
as its heads see them) every training, validation and held-out text of the
entry's own split (``make_splits``, the training data and seed). A text's
neighbour distribution is the similarity-weighted vote of its ``k`` nearest
training texts of the same task (cosine similarity, weights
``exp((s - s_max) / tau)``, gold labels). It is mixed geometrically into the
served mixture (calibrated encoder times TF-IDF, as the entry serves it):
``p ~ p_served^v * p_neighbours^(1 - v)``.

``k``, ``tau`` and ``v`` are chosen on validation macro-F1. The entry's served
TF-IDF regression was refitted on training plus validation, so for the choice
its regression is fitted again on training alone (same C, weight, temperature);
held-out then scores the entry exactly as served, with and without the
neighbours. Nothing here changes the entry. Writes bench/results/knn_mixture.json.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from classifier import code_version, hardware, write_result  # noqa: E402

log = logging.getLogger("bench.knn_mixture")

K_GRID = (5, 10, 20, 50)
TAU_GRID = (0.02, 0.05, 0.1, 0.2, 0.5)
WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # v: 1.0 is the served model alone


def embed(model, tokenizer, texts: list[str], max_tokens: int, batch_size: int = 64):
    """Pooled embeddings (n, hidden) and logits per head of ``model`` (merged, eval), fp32."""
    import numpy as np
    import torch

    from models.model import mean_pool

    hidden = model.topic_head.in_features
    pooled_all = np.zeros((len(texts), hidden), np.float32)
    logits = {
        "topic": np.zeros((len(texts), model.topic_head.out_features), np.float32),
        "sentiment": np.zeros((len(texts), model.sentiment_head.out_features), np.float32),
    }
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            )
            states = model.encoder(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
            ).last_hidden_state
            pooled = mean_pool(states, enc["attention_mask"])
            pooled_all[rows] = pooled.numpy()
            logits["topic"][rows] = model.topic_head(pooled).numpy()
            logits["sentiment"][rows] = model.sentiment_head(pooled).numpy()
    return pooled_all, logits


def neighbour_votes(queries, index, labels, k: int):
    """The ``k`` nearest index rows of each query: (similarities, their labels), both (n, k)."""
    import numpy as np

    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    x = index / np.linalg.norm(index, axis=1, keepdims=True)
    sims = q @ x.T
    nearest = np.argpartition(-sims, k, axis=1)[:, :k]
    return np.take_along_axis(sims, nearest, 1), labels[nearest]


def neighbour_probs(sims, votes, n_classes: int, k: int, tau: float):
    """Similarity-weighted class distribution of the ``k`` most similar of the given votes."""
    import numpy as np

    top = np.argsort(-sims, axis=1)[:, :k]
    s, v = np.take_along_axis(sims, top, 1), np.take_along_axis(votes, top, 1)
    weights = np.exp((s - s.max(axis=1, keepdims=True)) / tau)
    probs = np.full((len(s), n_classes), 1e-3, np.float32)  # no class is impossible
    for c in range(n_classes):
        probs[:, c] += (weights * (v == c)).sum(axis=1)
    return probs / probs.sum(axis=1, keepdims=True)


def scores(labels, probs) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = probs.argmax(axis=1)
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro")), 4),
    }


def evaluate_entry(registry, version: str, splits, train_sample: int | None) -> dict:
    from models.inference import merge_lora
    from models.loading import load_entry

    entry = registry.get(version)
    loaded = load_entry(entry, "cpu", base_model_dir=registry.base_model_dir)
    if loaded.lexical is None:
        raise SystemExit(f"{version}: no TF-IDF model to mix with (an entry before 43409ce)")
    model = merge_lora(copy.deepcopy(loaded.model)).eval()
    out: dict = {"version": version}
    for task in ("topic", "sentiment"):
        out[task] = evaluate_task(task, model, loaded, splits, train_sample)
        log.info("%s %s: %s", version, task, out[task])
    return out


def evaluate_task(task: str, model, loaded, splits, train_sample: int | None) -> dict:
    """One head of one entry: served with and without neighbours, ``k``/``tau``/``v``
    chosen on validation."""
    import random

    import numpy as np

    from models.calibration import softmax
    from models.data import label_index, normalise_text
    from models.lexical import _refitted

    started = time.monotonic()
    train = [e for e in splits.train if e.task == task]
    if train_sample is not None:
        train = random.Random(13).sample(train, min(train_sample, len(train)))
    val = [e for e in splits.validation if e.task == task]
    texts = {
        "train": [e.text for e in train],
        "validation": [e.text for e in val],
        "heldout": [normalise_text(r.text) for r in splits.heldout[task]],
    }
    labels = {
        "train": np.array([e.label for e in train]),
        "validation": np.array([e.label for e in val]),
        "heldout": np.array([label_index(task, r.label) for r in splits.heldout[task]]),
    }
    pooled, encoder = {}, {}
    for part, part_texts in texts.items():
        pooled[part], logits = embed(model, loaded.tokenizer, part_texts, loaded.max_length_tokens)
        encoder[part] = softmax(logits[task] / loaded.temperatures.get(task, 1.0))
    served_head = loaded.lexical.heads[task]
    train_only = _refitted(served_head, texts["train"], labels["train"])
    served = {
        "validation": train_only.mixed(
            encoder["validation"], train_only.probabilities(texts["validation"])
        ),
        "heldout": served_head.mixed(encoder["heldout"], served_head.probabilities(texts["heldout"])),
    }
    n_classes = encoder["heldout"].shape[1]
    votes = {
        part: neighbour_votes(pooled[part], pooled["train"], labels["train"], max(K_GRID))
        for part in ("validation", "heldout")
    }

    def mixed(part: str, k: int, tau: float, v: float):
        knn = neighbour_probs(*votes[part], n_classes, k, tau)
        return v * np.log(np.maximum(served[part], 1e-12)) + (1 - v) * np.log(knn)

    chosen = max(
        ((k, tau, v) for k in K_GRID for tau in TAU_GRID for v in WEIGHT_GRID),
        # ties: the larger served weight (the simpler model), then fewer neighbours
        key=lambda c: (scores(labels["validation"], mixed("validation", *c))["macro_f1"], c[2], -c[0]),
    )
    k, tau, v = chosen
    return {
        "n": {part: len(texts[part]) for part in texts},
        "chosen": {"k": k, "tau": tau, "served_weight": v},
        "validation": {
            "served": scores(labels["validation"], served["validation"]),
            "with_neighbours": scores(labels["validation"], mixed("validation", *chosen)),
        },
        "heldout": {
            "encoder_alone": scores(labels["heldout"], encoder["heldout"]),
            "neighbours_alone": scores(
                labels["heldout"], neighbour_probs(*votes["heldout"], n_classes, k, tau)
            ),
            "served": scores(labels["heldout"], served["heldout"]),
            "with_neighbours": scores(labels["heldout"], mixed("heldout", *chosen)),
        },
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2,000 training texts per task as neighbours"
    )
    parser.add_argument(
        "--versions", default=None, help="comma-separated entries or suffixes (default: current)"
    )
    parser.add_argument("--registry", type=Path, default=None, help="registry dir")
    parser.add_argument("--out", type=Path, default=None, help="result file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from models.data import make_splits
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    settings = ModelSettings(**({"registry_dir": args.registry} if args.registry else {}))
    registry = Registry.from_settings(settings)
    known = [e.version for e in registry.entries()]
    wanted = args.versions.split(",") if args.versions else [registry.current_version()]
    versions = []
    for suffix in wanted:
        matches = [v for v in known if v.endswith(suffix)]
        if len(matches) != 1:
            raise SystemExit(f"--versions: {suffix!r} matches {len(matches)} entries of {known}")
        versions.append(matches[0])
    splits = make_splits()
    train_sample = 2000 if args.quick else None
    results = [evaluate_entry(registry, version, splits, train_sample) for version in versions]
    report = {
        "benchmark": "knn_mixture",
        "quick": args.quick,
        "grid": {"k": K_GRID, "tau": TAU_GRID, "served_weight": WEIGHT_GRID},
        "entries": results,
        "hardware": hardware(),
        "code_version": code_version(),
    }
    write_result(report, "knn_mixture", args.quick, args.out)


if __name__ == "__main__":
    main()
