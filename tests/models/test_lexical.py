"""The TF-IDF model mixed with the encoder (models/lexical.py): fitting, storage, serving."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from models.feedback.finetune import WeightedExample as Ex
from models.labels import SENTIMENT_NAMES, TOPIC_NAMES
from models.lexical import LexicalError, LexicalModel, fit_lexical, log_mixture

N_CLASSES = {"topic": len(TOPIC_NAMES), "sentiment": len(SENTIMENT_NAMES)}


def examples(seed: int, per_class: int = 8) -> list[Ex]:
    """Each class has its own cue word among shared filler words."""
    rng = random.Random(seed)
    filler = ["markets", "shares", "today", "report", "analysts", "says", "week", "trading"]
    out = []
    for task, n in N_CLASSES.items():
        for label in range(n):
            for _ in range(per_class):
                words = rng.sample(filler, 4) + [f"cue{task[0]}{label}"]
                rng.shuffle(words)
                out.append(Ex(" ".join(words), task, label))
    return out


def uniform(val, task):
    n = sum(e.task == task for e in val)
    return np.full((n, N_CLASSES[task]), 1.0 / N_CLASSES[task], np.float32)


def one_hot(val, task, shift=0):
    """Confident encoder probabilities: right (shift 0) or always the next class."""
    labels = [(e.label + shift) % N_CLASSES[task] for e in val if e.task == task]
    return np.eye(N_CLASSES[task], dtype=np.float32)[labels]


@pytest.fixture(scope="module")
def data():
    return examples(1), examples(2, per_class=3)


@pytest.fixture(scope="module")
def fitted(data):
    train, val = data
    return fit_lexical(
        train, val, {t: one_hot(val, t, shift=1) for t in N_CLASSES},
        c_grid=(1.0, 10.0),
    )


def test_a_wrong_encoder_gets_little_weight_and_the_mixture_learns_the_cues(data, fitted):
    _, val = data
    model, report = fitted
    for task in N_CLASSES:
        assert model.heads[task].model_weight < 0.5
        assert model.heads[task].temperature > 0
        assert set(report[task]["validation_macro_f1_by_C"]) == {"1.0", "10.0"}
        rows = [e for e in val if e.task == task]
        mixed = model.mix(task, one_hot(val, task, shift=1), [e.text for e in rows])
        assert (mixed.argmax(axis=1) == [e.label for e in rows]).mean() > 0.9
        assert np.allclose(mixed.sum(axis=1), 1.0, atol=1e-5)


def test_choices_come_from_training_alone_then_validation_joins_the_fit(data, fitted):
    train, val = data
    model, report = fitted
    # Words that only validation holds (twice each, the vocabulary's minimum).
    novel = [Ex(f"{e.text} fresh{e.label}", e.task, e.label) for e in val]
    encoder = {t: one_hot(novel, t, shift=1) for t in N_CLASSES}
    kept, kept_report = fit_lexical(train, novel, encoder, c_grid=(1.0, 10.0),
                                    refit_on_validation=False)
    joined, joined_report = fit_lexical(train, novel, encoder, c_grid=(1.0, 10.0))
    for task in N_CLASSES:
        a, b = kept.heads[task], joined.heads[task]
        assert (a.c, a.model_weight, a.temperature) == (b.c, b.model_weight, b.temperature)
        assert kept_report[task]["fitted_on"] == "train"
        assert joined_report[task]["fitted_on"] == report[task]["fitted_on"] == "train+validation"
        assert "fresh0" not in a.vectorizers["words"].vocabulary_
        assert "fresh0" in b.vectorizers["words"].vocabulary_
        assert b.n_features > a.n_features


def test_a_perfect_encoder_keeps_all_the_weight(data):
    train, val = data
    model, _ = fit_lexical(train, val, {"sentiment": one_hot(val, "sentiment")},
                           c_grid=(1.0,))
    assert set(model.heads) == {"sentiment"}
    assert model.heads["sentiment"].model_weight == 1.0
    encoder = uniform(val, "topic")
    assert model.mix("topic", encoder, ["x"] * len(encoder)) is encoder  # no topic head


def test_saved_model_serves_the_same_probabilities_from_plain_arrays(data, fitted, tmp_path):
    _, val = data
    model, _ = fitted
    model.save(tmp_path / "lexical")
    names = sorted(p.name for p in (tmp_path / "lexical").iterdir())
    assert names == ["sentiment.safetensors", "sentiment.vocab.json",
                     "topic.safetensors", "topic.vocab.json"]
    loaded = LexicalModel.load(tmp_path / "lexical", model.describe())
    texts = [e.text for e in val] + ["an unseen headline about nothing", ""]
    for task in N_CLASSES:
        assert loaded.heads[task].model_weight == model.heads[task].model_weight
        np.testing.assert_allclose(loaded.heads[task].probabilities(texts),
                                   model.heads[task].probabilities(texts), atol=1e-6)


def test_a_damaged_lexical_model_is_refused_with_the_task_named(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path)
    vocab = json.loads((tmp_path / "topic.vocab.json").read_text())
    vocab["words"] = vocab["words"][:-1]
    (tmp_path / "topic.vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(LexicalError, match="lexical model for topic: .*vocabulary"):
        LexicalModel.load(tmp_path, model.describe())
    (tmp_path / "sentiment.safetensors").write_bytes(b"not safetensors")
    description = model.describe()
    del description["tasks"]["topic"]
    with pytest.raises(LexicalError, match="lexical model for sentiment: unreadable"):
        LexicalModel.load(tmp_path, description)


def test_refit_keeps_c_and_weight_and_learns_new_labels(data, fitted):
    train, _ = data
    model, _ = fitted
    # Analysts say the sentiment cue "cues0" means positive (2), heavily weighted.
    relabelled = [Ex(f"cues0 new item {i}", "sentiment", 2, 5.0) for i in range(10)]
    refitted = model.refit(list(train) + relabelled)
    for task in N_CLASSES:
        assert refitted.heads[task].c == model.heads[task].c
        assert refitted.heads[task].model_weight == model.heads[task].model_weight
    assert refitted.heads["sentiment"].probabilities(["cues0 new item"]).argmax() == 2


def test_a_task_with_two_classes_in_training_still_scores_all_three():
    train = [Ex(f"up{i} gains rally", "sentiment", 2) for i in range(6)]
    train += [Ex(f"down{i} losses slump", "sentiment", 0) for i in range(6)]
    val = [Ex("gains rally", "sentiment", 2), Ex("losses slump", "sentiment", 0)]
    model, _ = fit_lexical(train, val, {"sentiment": uniform(val, "sentiment")},
                           c_grid=(10.0,))
    probs = model.heads["sentiment"].probabilities(["gains rally", "losses slump"])
    assert probs.shape == (2, 3)
    assert list(probs.argmax(axis=1)) == [2, 0]
    assert probs[:, 1].max() < 1e-6  # neutral never seen


def test_registry_entry_serves_the_mixture_in_the_engine_and_in_evaluate(fitted, tiny_root):
    from models.inference import EngineOptions, engine_from_registry
    from models.loading import load_current
    from models.registry import Registry
    from models.testing import make_tiny_entry, tiny_base_dir, tiny_settings

    model, _ = fitted
    entry = make_tiny_entry(tiny_root, lexical=model)
    assert entry.manifest["lexical"]["tasks"]["topic"]["classes"] == 20
    assert any(name.startswith("lexical/") for name in entry.manifest["files"])
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    options = EngineOptions(device="cpu", precision="fp32")
    texts = ["cuet3 markets today", "cues2 shares report", "nothing to see"]
    mixed = engine_from_registry(registry, options=options).probabilities(texts)
    alone = engine_from_registry(registry, options=options, lexical=False).probabilities(texts)
    for i, task in enumerate(("topic", "sentiment")):
        head = model.heads[task]
        w, t = head.model_weight, head.temperature
        assert head.mixing == "geometric"
        lexical = head.probabilities(texts)
        expected = np.exp((w * np.log(alone[i]) + (1 - w) * np.log(lexical)) / t)
        np.testing.assert_allclose(mixed[i], expected / expected.sum(axis=1, keepdims=True),
                                   atol=1e-5)
    assert mixed[0][0].argmax() == 3 and mixed[1][1].argmax() == 2
    loaded = load_current(tiny_settings(tiny_root))
    np.testing.assert_allclose(loaded.predict_proba(texts)["topic"], mixed[0], atol=1e-4)


def test_entry_whose_lexical_files_changed_is_refused(fitted, tiny_root):
    from models.registry import Registry, RegistryError
    from models.testing import make_tiny_entry, tiny_base_dir

    model, _ = fitted
    entry = make_tiny_entry(tiny_root, lexical=model)
    path = entry.path / "lexical" / "topic.vocab.json"
    path.write_text(path.read_text().replace("cue", "cve"))
    with pytest.raises(RegistryError, match="lexical/topic.vocab.json is corrupt"):
        Registry(tiny_root, tiny_base_dir(tiny_root)).get(entry.version)


def test_the_mixture_temperature_is_fitted_on_validation_and_changes_no_label(data, fitted):
    import dataclasses

    _, val = data
    model, report = fitted
    for task in N_CLASSES:
        head = model.heads[task]
        assert head.temperature != 1.0
        assert report[task]["validation_ece_after_temperature"] <= report[task]["validation_ece_mixed"]
        rows = [e.text for e in val if e.task == task]
        encoder = one_hot(val, task, shift=1)
        untempered = dataclasses.replace(head, temperature=1.0).mix(encoder, rows)
        tempered = head.mix(encoder, rows)
        assert (tempered.argmax(axis=1) == untempered.argmax(axis=1)).all()
        assert not np.allclose(tempered, untempered)


def noisy(val, task, seed=5):
    """An encoder that is right on about half of the examples, unsure otherwise."""
    rng = np.random.default_rng(seed)
    probs = uniform(val, task) + 0.0
    labels = [e.label for e in val if e.task == task]
    for i, label in enumerate(labels):
        if rng.random() < 0.5:
            probs[i, label] += 0.5
    return probs / probs.sum(axis=1, keepdims=True)


def test_c_and_weight_are_chosen_together_on_the_mixture(data):
    train, val = data
    encoder = {"topic": noisy(val, "topic")}
    best_per_c = {}
    for c in (0.1, 1.0, 10.0):
        _, report = fit_lexical(train, val, encoder, c_grid=(c,))
        best_per_c[c] = max(report["topic"]["validation_macro_f1_by_weight"].values())
    model, report = fit_lexical(train, val, encoder, c_grid=(0.1, 1.0, 10.0))
    chosen = report["topic"]
    assert chosen["validation_macro_f1_by_weight"][str(chosen["model_weight"])] == max(
        best_per_c.values()
    )
    assert best_per_c[chosen["C"]] == max(best_per_c.values())


def test_geometric_and_arithmetic_mixing(data):
    train, val = data
    encoder = noisy(val, "sentiment")
    texts = [e.text for e in val if e.task == "sentiment"]
    for mixing in ("geometric", "arithmetic"):
        model, report = fit_lexical(train, val, {"sentiment": encoder}, c_grid=(1.0,),
                                    mixing=mixing)
        head = model.heads["sentiment"]
        assert head.mixing == report["sentiment"]["mixing"] == mixing
        assert model.describe()["tasks"]["sentiment"]["mixing"] == mixing
        w, lexical = head.model_weight, head.probabilities(texts)
        if mixing == "geometric":
            expected = encoder**w * lexical ** (1 - w)
        else:
            expected = w * encoder + (1 - w) * lexical
        expected = expected / expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(
            np.exp(log_mixture(encoder, lexical, w, mixing))
            / np.exp(log_mixture(encoder, lexical, w, mixing)).sum(axis=1, keepdims=True),
            expected, rtol=1e-5,
        )
    with pytest.raises(LexicalError, match="mixing must be one of"):
        fit_lexical(train, val, {"sentiment": encoder}, mixing="harmonic")


def test_entries_from_before_the_mixing_key_are_served_arithmetically(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path)
    description = model.describe()
    for task in description["tasks"].values():
        del task["mixing"]
    old = LexicalModel.load(tmp_path, description)
    assert {h.mixing for h in old.heads.values()} == {"arithmetic"}
    description["tasks"]["topic"]["mixing"] = "harmonic"
    with pytest.raises(LexicalError, match="lexical model for topic: unknown mixing 'harmonic'"):
        LexicalModel.load(tmp_path, description)
