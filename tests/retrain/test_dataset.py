"""What a retrain fits on (models/feedback/dataset.py)."""

from __future__ import annotations

from pathlib import Path
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


def test_the_retrain_benchmark_parent_never_saw_the_slice(tiny_world):
    """bench/retrain.py takes its slice from validation, which the served TF-IDF model
    learns from; its "before" model is the current entry refitted without the slice."""
    import importlib.util

    import numpy as np

    from models.data import make_splits
    from models.loading import load_lexical
    from models.registry import Registry

    path = Path(__file__).resolve().parents[2] / "bench" / "retrain.py"
    spec = importlib.util.spec_from_file_location("bench_retrain", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    root, settings, data_dir, _ = tiny_world
    registry = Registry(root, settings.resolved_base_model_dir())
    current = registry.current()
    splits = make_splits(data_dir)
    slice_ = [e for e in splits.validation if e.task == "sentiment"]
    parent = bench.parent_without_slice(
        registry, current, splits, slice_, settings.resolved_base_model_dir()
    )
    assert parent.version != current.version and parent.parent == current.version
    assert registry.current_version() == parent.version
    rest = splits.train + [e for e in splits.validation if e.task == "topic"]
    expected = load_lexical(current).refit(rest)
    served = load_lexical(parent)
    texts = [e.text for e in slice_]
    for task in ("topic", "sentiment"):
        np.testing.assert_allclose(
            served.heads[task].probabilities(texts),
            expected.heads[task].probabilities(texts), atol=1e-6,
        )
        assert served.heads[task].model_weight == 0.5
