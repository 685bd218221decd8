"""A tiny world for retrain tests: synthetic data, a tiny encoder, a trained current entry.

The data are template sentences whose sentiment is carried by the verb, so the
tiny random encoder learns them in seconds; a "shift" is a set of verbs the
current model never saw.
"""

from __future__ import annotations

import csv
import itertools
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.feedback.dataset import is_heldout
from models.feedback.store import Label, LabelStore

COMPANIES = [f"Company{c}" for c in "ABCDEFGHIJKLMNOPQRST"]
TAILS = ["today", "after earnings", "in early trade", "on the news", "this week", "again"]
UP, DOWN, FLAT = ["rise", "gain", "climb"], ["fall", "drop", "slide"], ["hold", "steady", "flat"]
NEW_UP, NEW_DOWN, NEW_FLAT = (
    ["soar", "rocket", "surge"],
    ["plunge", "tumble", "crater"],
    ["unchanged", "idle", "stalled"],
)
TOPIC_WORDS = [f"topicword{k}" for k in range(20)]
# dataset integers: 0 Bearish, 1 Bullish, 2 Neutral
SENTIMENT_OF = {
    **dict.fromkeys(UP + NEW_UP, 1),
    **dict.fromkeys(DOWN + NEW_DOWN, 0),
    **dict.fromkeys(FLAT + NEW_FLAT, 2),
}
NAME = {0: "negative", 1: "positive", 2: "neutral"}


def sentences(verbs):
    for company, verb, tail in itertools.product(COMPANIES, verbs, TAILS):
        yield f"{company} shares {verb} {tail}", SENTIMENT_OF[verb]


def write_data(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    rows = list(sentences(UP + DOWN + FLAT))[::2]
    with (data_dir / "twitter_sentiment_train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    with (data_dir / "twitter_topic_train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for k, word in enumerate(TOPIC_WORDS):
            for company in COMPANIES:
                writer.writerow([f"{company} {word} report", k])
    return data_dir


def shift_labels(*, flip_train: bool = False, n_per_verb: int = 14) -> list[Label]:
    """Labels on the unseen verbs; ``flip_train`` gives the trained part wrong labels."""
    t0 = datetime(2026, 11, 28, 12, tzinfo=UTC)
    out = []
    for i, (text, value) in enumerate(
        x for verb in NEW_UP + NEW_DOWN + NEW_FLAT for x in list(sentences([verb]))[:n_per_verb]
    ):
        article = f"art-{i}"
        label = NAME[value]
        if flip_train and not is_heldout(article, 0.25):
            label = {"positive": "negative", "negative": "positive", "neutral": "positive"}[label]
        out.append(
            Label(article, "sentiment", label, text, "ann", t0 + timedelta(seconds=i), "csv")
        )
    return out


def _train_current(root: Path, data_dir: Path) -> None:
    from transformers import AutoTokenizer

    from models.data import make_splits
    from models.feedback.finetune import FinetuneOptions, WeightedExample, finetune
    from models.registry import Registry
    from models.testing import make_tiny_base, make_tiny_model, tiny_base_dir

    base = make_tiny_base(tiny_base_dir(root))
    model = make_tiny_model(base, seed=0)
    splits = make_splits(data_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    examples = [WeightedExample(e.text, e.task, e.label) for e in splits.train]
    finetune(
        model,
        tokenizer,
        examples,
        FinetuneOptions(
            epochs=12,
            batch_size=16,
            learning_rate=5e-3,
            head_learning_rate=2e-2,
            max_length_tokens=32,
        ),
    )
    # A TF-IDF model mixed in half and half, as the shipped default has one (with its
    # weight chosen on validation): retrains refit it and score the mixture.
    from models.calibration import softmax
    from models.labels import TASKS
    from models.lexical import fit_lexical
    from models.loading import compute_logits

    val = splits.validation
    logits = compute_logits(model.eval(), tokenizer, [e.text for e in val],
                            max_length_tokens=32, device="cpu")
    probs = {t: softmax(logits[t][[i for i, e in enumerate(val) if e.task == t]]) for t in TASKS}
    lexical, lexical_report = fit_lexical(splits.train, val, probs, c_grid=(10.0,))
    for head in lexical.heads.values():
        head.model_weight = 0.5
    registry = Registry(root, base)
    entry = registry.add(
        model,
        config={
            "adapter": {
                "method": "lora",
                "rank": 4,
                "alpha": 8,
                "target_modules": ["query", "value"],
            },
            "head_dropout": 0.0,
            "data_dir": str(data_dir),
            "seed": 13,
        },
        max_length_tokens=32,
        temperatures={"topic": 1.0, "sentiment": 1.0},
        metrics={"tiny": True, "lexical": {"tasks": lexical_report}},
        data={"snapshot_hash": splits.snapshot_hash, "label_counts": {}},
        version="v1-tiny",
        lexical=lexical,
    )
    registry.promote(entry.version)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Two shared cores: one thread per process avoids oversubscription (25x slower here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_world_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-world")
    data_dir = write_data(root / "data")
    _train_current(root / "registry", data_dir)
    return root


@pytest.fixture
def tiny_world(tiny_world_template, tmp_path):
    """(registry root, ModelSettings, data dir, LabelStore), fresh per test."""
    from models.testing import tiny_settings

    root = tmp_path / "world"
    shutil.copytree(tiny_world_template, root)
    registry_root = root / "registry"
    store = LabelStore(f"sqlite:///{tmp_path / 'labels.db'}")
    return registry_root, tiny_settings(registry_root, torch_threads=1), root / "data", store
