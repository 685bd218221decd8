"""What a retrain fits on (models/feedback/dataset.py)."""

from __future__ import annotations

from types import SimpleNamespace

from models.data import Example, Row, Splits
from models.feedback.dataset import assemble, is_heldout
from models.feedback.store import ResolvedLabel

SETTINGS = SimpleNamespace(
    new_label_heldout_fraction=0.3, label_weight=3.0, replay_fraction=0.5,
    min_replay_per_label=1, seed=7,
)


def splits() -> Splits:
    train = [Example(f"train headline {i}", "sentiment", i % 3) for i in range(12)]
    validation = [Example(f"validation headline {i}", "sentiment", i % 3) for i in range(4)]
    heldout = {"sentiment": [Row("heldout headline", 1)]}
    return Splits(train, validation, heldout, {}, "sha256:test")


def label(article_id: str, text: str) -> ResolvedLabel:
    return ResolvedLabel(article_id, "sentiment", "positive", text, 1, False, 1)


def test_the_lexical_model_refits_on_training_and_validation_without_relabelled_texts():
    ids = [f"a{i}" for i in range(40)]
    trained_id = next(i for i in ids if not is_heldout(i, SETTINGS.new_label_heldout_fraction))
    heldout_id = next(i for i in ids if is_heldout(i, SETTINGS.new_label_heldout_fraction))
    labels = [
        label(trained_id, "validation headline 0"),  # relabels a validation text
        label(heldout_id, "train headline 1"),  # relabels a training text, held out
    ]
    data = assemble(labels, splits(), SETTINGS)
    texts = [e.text for e in data.lexical_train]
    assert texts.count("validation headline 0") == 1  # only as the new label
    new = next(e for e in data.lexical_train if e.text == "validation headline 0")
    assert (new.label, new.weight) == (2, 3.0)
    assert {f"validation headline {i}" for i in (1, 2, 3)} <= set(texts)
    assert "train headline 1" not in texts  # a held-out new label is never fitted on
    assert {f"train headline {i}" for i in range(12) if i != 1} <= set(texts)
    assert "heldout headline" not in texts
