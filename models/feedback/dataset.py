"""What a retrain trains and is judged on.

- New labels (after the conflict rule) are split by a hash of the article id:
  ``new_label_heldout_fraction`` of articles are held out to judge candidates
  (both tasks of an article fall on the same side, and an article stays on its
  side in every later retrain, so a held-out label is never trained on).
- New labels whose text (up to case, links and whitespace) is in the original
  held-out split are never trained on either: (a) must stay a fair test.
- Replay: a seeded sample of the original training split, ``replay_fraction`` of
  it but at least ``min_replay_per_label`` per new training label, weight 1;
  new training labels weigh ``label_weight``.
- Validation for the temperatures: the original validation split, without the
  texts of new labels, at most ``VALIDATION_LIMIT`` examples.
- The lexical model (TF-IDF, where the parent has one) is cheap to refit in full:
  ``lexical_train`` is the whole original training and validation splits (what
  ``finsentry train`` fits it on once C, w and T are chosen) without the texts of
  new labels, plus the new training labels at ``label_weight``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from models.data import Example, Row, Splits, dedup_key, normalise_text
from models.feedback.finetune import WeightedExample
from models.feedback.store import ResolvedLabel
from models.feedback.vocab import class_index
from models.labels import TASKS, class_names, label_index

VALIDATION_LIMIT = 1000


def is_heldout(article_id: str, fraction: float) -> bool:
    """Stable membership of an article in the held-out part of the new labels."""
    digest = hashlib.sha256(f"finsentry-heldout\x1f{article_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass
class RetrainData:
    train: list[WeightedExample]
    new_train: list[ResolvedLabel]
    new_heldout: list[ResolvedLabel]
    original_heldout: dict[str, list[Row]]
    validation: list[Example]
    stats: dict[str, Any] = field(default_factory=dict)
    lexical_train: list[WeightedExample] = field(default_factory=list)

    def heldout_new(self, task: str) -> tuple[list[str], list[int]]:
        items = [x for x in self.new_heldout if x.task == task]
        return [x.text for x in items], [class_index(task, x.label) for x in items]

    def heldout_original(
        self, task: str, limit: int | None = None, seed: int = 13
    ) -> tuple[list[str], list[int]]:
        rows = list(self.original_heldout.get(task, []))
        if limit is not None and len(rows) > limit:
            rows = random.Random(f"{seed}:{task}").sample(rows, limit)
        return [r.text for r in rows], [label_index(task, r.label) for r in rows]


def _counts(items) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {t: {} for t in TASKS}
    for x in items:
        out[x.task][x.label] = out[x.task].get(x.label, 0) + 1
    return out


def assemble(labels: list[ResolvedLabel], splits: Splits, settings) -> RetrainData:
    """Build the retrain data from resolved labels and the parent's original splits."""
    heldout_keys = {dedup_key(r.text) for rows in splits.heldout.values() for r in rows}
    new_heldout, new_train, overlap = [], [], 0
    for item in labels:
        if is_heldout(item.article_id, settings.new_label_heldout_fraction):
            new_heldout.append(item)
        elif dedup_key(item.text) in heldout_keys:
            overlap += 1
        else:
            new_train.append(item)
    new_keys = {dedup_key(x.text) for x in labels}
    new_weighted = [
        WeightedExample(
            normalise_text(x.text), x.task, class_index(x.task, x.label), settings.label_weight
        )
        for x in new_train
    ]
    train = list(new_weighted)
    pool = [e for e in splits.train if dedup_key(e.text) not in new_keys]
    wanted = max(
        round(settings.replay_fraction * len(pool)),
        round(settings.min_replay_per_label * len(new_train)),
    )
    replay = random.Random(settings.seed).sample(pool, min(wanted, len(pool)))
    train += [WeightedExample(e.text, e.task, e.label, 1.0) for e in replay]
    unlabelled_validation = [e for e in splits.validation if dedup_key(e.text) not in new_keys]
    validation = unlabelled_validation
    if len(validation) > VALIDATION_LIMIT:
        validation = random.Random(settings.seed + 1).sample(validation, VALIDATION_LIMIT)
    replay_counts = {t: {} for t in TASKS}
    for e in replay:
        name = class_names(e.task)[e.label]
        replay_counts[e.task][name] = replay_counts[e.task].get(name, 0) + 1
    stats = {
        "new_labels": len(labels),
        "new_train": len(new_train),
        "new_heldout": len(new_heldout),
        "new_excluded_original_heldout_overlap": overlap,
        "replay": len(replay),
        "original_train": len(splits.train),
        "validation": len(validation),
        "label_counts": {
            "new_train": _counts(new_train),
            "new_heldout": _counts(new_heldout),
            "replay": replay_counts,
        },
    }
    lexical_train = new_weighted + [
        WeightedExample(e.text, e.task, e.label, 1.0) for e in pool + unlabelled_validation
    ]
    return RetrainData(
        train, new_train, new_heldout, splits.heldout, validation, stats, lexical_train
    )
